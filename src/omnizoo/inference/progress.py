"""Progress of long prediction runs: a bar with images/s and ETA on a terminal or in Jupyter
(``tqdm.auto``: :mod:`omnizoo.weights.progress_bar`), a line per N images otherwise (logs, CI,
a batch scheduler's output file).

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(4, bar=False, every=2, stream=out)
    >>> for _ in range(4):
    ...     p.update()
    >>> p.close()
    >>> out.getvalue().count("images")
    3

Lines look like ``omnizoo: 2000/10000 images (20.0%), 35.1 img/s, ETA 3m48s`` (and a last
line with the total when the run ends).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from ..weights.progress_bar import bar_wanted, make_bar

__all__ = ["PROGRESS_MODES", "Progress", "format_seconds", "make_progress"]

#: How a run shows progress: a bar on a terminal else lines, a bar, lines, or nothing.
PROGRESS_MODES = ("auto", "bar", "lines", "none")

T = TypeVar("T")


def format_seconds(seconds: float) -> str:
    """``3725`` -> ``'1h02m05s'``.

    >>> format_seconds(65.2), format_seconds(3725)
    ('1m05s', '1h02m05s')
    """
    s = round(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class Progress:
    """Counts images as they are done and shows it.

    ``total``: how many images there are (None: unknown, no ETA). ``bar``: True for a tqdm bar,
    False for lines, None for a bar only when ``stream`` is a terminal or a Jupyter kernel's.
    ``every``: images between two lines. ``done``: images already done before this run (a
    resumed run).
    """

    def __init__(
        self,
        total: int | None,
        *,
        bar: bool | None = None,
        every: int = 1000,
        stream: IO[str] | None = None,
        done: int = 0,
        label: str = "images",
    ) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.count = 0
        self.skipped = int(done)
        self.every = max(1, int(every))
        self.label = label
        self.started = time.perf_counter()
        self._next_line = self.every
        self._closed = False
        self._bar: Any = None
        if bar_wanted(self.stream, bar):
            self._bar = make_bar(
                self.stream,
                total=total,
                initial=0,
                unit="img",
                dynamic_ncols=True,
                smoothing=0.1,
                desc="omnizoo",
            )

    @property
    def rate(self) -> float:
        """Images per second since the start."""
        elapsed = time.perf_counter() - self.started
        return self.count / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1) -> None:
        """``n`` more images done."""
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.count >= self._next_line:
            self._line()
            self._next_line = (self.count // self.every + 1) * self.every

    def _line(self, final: bool = False) -> None:
        rate = self.rate
        text = f"omnizoo: {self.count}"
        if self.total is not None:
            text += f"/{self.total} {self.label} ({100 * self.count / max(1, self.total):.1f}%)"
        else:
            text += f" {self.label}"
        text += f", {rate:.1f} img/s"
        if final:
            text += f", done in {format_seconds(time.perf_counter() - self.started)}"
        elif self.total is not None and rate > 0:
            text += f", ETA {format_seconds((self.total - self.count) / rate)}"
        if self.skipped:
            text += f" ({self.skipped} already done before)"
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar, or print the last line (when any line was printed or due)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.count >= self.every or (self.total is not None and self.total >= self.every):
            self._line(final=True)

    def wrap(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, counting each one; closes at the end."""
        try:
            for item in items:
                yield item
                self.update()
        finally:
            self.close()


def make_progress(
    mode: str, total: int | None, *, every: int = 1000, done: int = 0
) -> Progress | None:
    """A :class:`Progress` for a ``mode`` of :data:`PROGRESS_MODES` (None for ``"none"``)."""
    if mode not in PROGRESS_MODES:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"progress={mode!r}; use one of {', '.join(PROGRESS_MODES)}")
    if mode == "none":
        return None
    bar = {"auto": None, "bar": True, "lines": False}[mode]
    return Progress(total, bar=bar, every=every, done=done)
