"""Terminal progress: one redrawn bar on a terminal, sparse plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """A single-line progress bar that redraws in place when the output is a terminal."""

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.label = label
        self.total = max(1, total)
        self.stream = stream or sys.stdout
        self.width = width
        self.tty = self.stream.isatty()
        self._last_plain = -1
        self._started = time.monotonic()

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(1, total)
        fraction = min(1.0, done / self.total)
        if self.tty:
            filled = int(fraction * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            secs = time.monotonic() - self._started
            self.stream.write(f"\r  {self.label:<12} [{bar}] {done}/{self.total}  {secs:5.1f}s")
            self.stream.flush()
        else:
            decile = int(fraction * 10)
            if decile != self._last_plain:
                self._last_plain = decile
                self.stream.write(f"  {self.label}: {done}/{self.total}\n")
                self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def step(part: str, detail: str, seconds: float, stream: TextIO | None = None) -> None:
    """One line of a start-up report: a part, where it is, how long it took."""
    out = stream or sys.stdout
    out.write(f"  ok  {part:<11} {detail}  ({seconds:.1f}s)\n")
    out.flush()


def bar(fraction: float, width: int = 20) -> str:
    filled = int(min(1.0, max(0.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class StatusLine:
    """One status line redrawn in place on a terminal; elsewhere (CI logs, pipes) it is
    printed every `plain_every_s` seconds so a log shows progress without flooding."""

    def __init__(self, stream: TextIO | None = None, plain_every_s: float = 15.0) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.plain_every_s = plain_every_s
        self._last_plain = float("-inf")
        self._width = 0

    def update(self, text: str) -> None:
        if self.tty:
            pad = " " * max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write(f"\r{text}{pad}")
            self.stream.flush()
        elif time.monotonic() - self._last_plain >= self.plain_every_s:
            self._last_plain = time.monotonic()
            self.stream.write(text + "\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        """A line that stays (an event), printed above the status line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def report_refused(errors: list[tuple[int, str]], rejected: int, shown: int = 20) -> None:
    """The first refused lines of an import, by line number, and how many more."""
    for line, message in sorted(errors)[:shown]:
        print(f"  line {line}: {message}")
    if rejected > shown:
        print(f"  ... and {rejected - shown} more")
