"""The one progress display for long work: count, percentage, rate and time left.

Drawn on one line of stderr when stderr is a terminal; silent otherwise, so logs of
scripts and CI stay readable (they get the periodic log lines instead).
"""

import sys
import time


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts finished items of known total and redraws at most ten times a second."""

    def __init__(self, total: int, description: str, unit: str = "images", stream=None, enabled=None):
        self.total = total
        self.done = 0
        self.description = description
        self.unit = unit
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._start = time.monotonic()
        self._last_draw = 0.0

    @property
    def drawing(self) -> bool:
        """Whether the bar is shown (stderr is a terminal, or asked for)."""
        return self._enabled

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self._enabled and (now - self._last_draw >= 0.1 or self.done >= self.total):
            self._last_draw = now
            self._stream.write("\r" + self.line(now - self._start))
            self._stream.flush()

    def line(self, elapsed: float) -> str:
        """The text drawn for the current count after elapsed seconds."""
        rate = self.done / elapsed if elapsed > 0 else 0.0
        percent = 100.0 * self.done / self.total if self.total else 100.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"{self.description}: {self.done}/{self.total} ({percent:3.0f}%) "
            f"{rate:.1f} {self.unit}/s, {_format_seconds(elapsed)} elapsed, "
            f"{_format_seconds(left)} left "
        )

    def close(self) -> None:
        if self._enabled and self.done:
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
