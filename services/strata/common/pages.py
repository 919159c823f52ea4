"""Helpers for the self-contained HTML pages the product writes (reports): figures as
PNG bytes, embedded images, table cells."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def png(fig: Figure) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def fmt(value: Any) -> str:
    """A table cell: floats to three places, missing as a dash, text escaped."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def embedded_image(name: str, data: bytes) -> str:
    """An <img> carrying its PNG as a data URI (`strata report` writes these back out)."""
    encoded = base64.b64encode(data).decode()
    return f"<p><img alt='{name}' src='data:image/png;base64,{encoded}'></p>"
