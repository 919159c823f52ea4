"""Charts drawn on the server as inline SVG (pure): crisp at any size, no script, no
chart library to vendor, and readable without colour (each series is named at its end
and in the figure's accessible description)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

# Colour-blind safe (Okabe-Ito), in the order series are drawn.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "", "6 3", "2 3")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round numbers covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 10)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_format: str = "number",  # number | time (x in POSIX seconds)
    y_range: tuple[float, float] | None = None,
    width: int = 640,
    height: int = 240,
) -> str:
    """An SVG line chart; an empty chart says there is nothing to draw yet."""
    drawn = [s for s in series if s.points]
    left, right, top, bottom = 56, 120, 14, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    description = "; ".join(
        f"{s.name}: from {s.points[0][1]:g} to {s.points[-1][1]:g}" for s in drawn
    )
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}. {escape(description or "no data yet")}" '
        f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>'
    )
    if not drawn:
        # A short strip, not an empty plot's worth of blank space.
        return (
            head.replace(f"0 0 {width} {height}", f"0 0 {width} 40")
            + f'<text x="{width / 2}" y="24" text-anchor="middle" '
            'class="chart-empty">Nothing to draw yet</text></svg>'
        )
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1.0
    y_ticks = nice_ticks(*(y_range or (min(0.0, min(ys)), max(ys))))
    y0, y1 = y_ticks[0], y_ticks[-1]
    if y1 <= y0:
        y1 = y0 + 1.0

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts = [head]
    for t in y_ticks:
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{py(t):.1f}" '
            f'y2="{py(t):.1f}"/><text class="tick" x="{left - 6}" y="{py(t) + 4:.1f}" '
            f'text-anchor="end">{_fmt(t)}</text>'
        )
    span = x1 - x0
    # Seconds when the ticks are under a few minutes apart, days past two days.
    clock = "%H:%M:%S" if span < 1200 else "%H:%M" if span < 2 * 86400 else "%d %b"
    for i in range(5):
        x = x0 + span * i / 4
        label = (
            datetime.fromtimestamp(x, UTC).strftime(clock)
            if x_format == "time"
            else _fmt(round(x, 2))
        )
        parts.append(
            f'<text class="tick" x="{px(x):.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{left + plot_w / 2}" y="{height - 4}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text class="axis" transform="translate(12 {top + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    ends: list[float] = []
    for i, s in enumerate(drawn):
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dashed} points="{path}"/>'
        )
        if len(s.points) == 1:
            x, y = s.points[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        # The series' name at its last point, nudged apart from the names above it.
        end = py(s.points[-1][1])
        while any(abs(end - e) < 13 for e in ends):
            end += 13
        ends.append(end)
        parts.append(
            f'<text class="series" x="{left + plot_w + 6}" y="{end + 4:.1f}" '
            f'fill="{colour}">{escape(s.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def heat_class(value: float | None) -> str:
    """The CSS class of an agreement cell: one of 21 steps from -1 to 1, or undefined
    (classes, not inline styles: the pages' Content-Security-Policy allows no style
    attribute)."""
    if value is None or not math.isfinite(value):
        return "heat-na"
    step = round(max(-1.0, min(1.0, value)) * 10)
    return f"heat-{'m' if step < 0 else 'p'}{abs(step)}"


def heat_css() -> str:
    """The rules app.css carries for heat_class (a test keeps the two equal)."""
    rules = []
    for step in range(-10, 11):
        background, ink = heat_colour(step / 10)
        name = f"heat-{'m' if step < 0 else 'p'}{abs(step)}"
        rules.append(f".{name} {{ background: {background}; color: {ink}; }}")
    background, ink = heat_colour(None)
    rules.append(f".heat-na {{ background: {background}; color: {ink}; }}")
    return "\n".join(rules)


def heat_colour(value: float | None) -> tuple[str, str]:
    """(background, text) for an agreement in [-1, 1]: red through white to blue; grey
    when undefined. The number is always printed too."""
    if value is None or not math.isfinite(value):
        return "#eceff3", "#5b6470"
    v = max(-1.0, min(1.0, value))
    if v >= 0:
        # white -> #1f5fbf
        r, g, b = (round(255 + (t - 255) * v) for t in (31, 95, 191))
    else:
        r, g, b = (round(255 + (t - 255) * -v) for t in (180, 35, 24))
    ink = "#fff" if abs(v) > 0.55 else "#1b1f24"
    return f"#{r:02x}{g:02x}{b:02x}", ink
