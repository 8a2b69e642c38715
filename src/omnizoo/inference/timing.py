"""How omnizoo times code and reads the machine's state: shared by ``omnizoo benchmark``
(:mod:`.benchmark`) and the scripts in ``benchmarks/``.

* :func:`timed_runs`: wall and CPU seconds of each of ``repeats`` calls after ``warmup``
  untimed ones (the first calls pay for lazy initialisation, allocator growth, oneDNN kernel
  selection: they are not the speed a user sees afterwards);
* :func:`median_iqr`: the median and the interquartile range of a sample (robust against the
  odd slow call a shared machine produces, unlike the mean and the standard deviation);
* :func:`load_average`: the 1, 5 and 15 minute load averages, as ``uptime`` prints them (on a
  shared machine every timing also measures the neighbours: print it beside the figures);
* :class:`PeakMemory`: the peak resident memory a block of code added to the process.

>>> median_iqr([1.0, 2.0, 3.0, 4.0, 100.0])
(3.0, 2.0)
>>> len(timed_runs(lambda: None, repeats=3, warmup=1))
3
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PeakMemory", "load_average", "median_iqr", "timed_runs"]


def timed_runs(
    fn: Callable[[], Any], *, repeats: int, warmup: int = 0
) -> list[tuple[float, float]]:
    """``(wall seconds, CPU seconds of this process)`` of each of ``repeats`` calls of ``fn``,
    after ``warmup`` calls that are not timed."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    return runs


def _quantile(ordered: Sequence[float], q: float) -> float:
    # linear interpolation between the closest ranks (numpy's default, the "type 7" rule)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median_iqr(values: Sequence[float]) -> tuple[float, float]:
    """``(median, interquartile range)`` of ``values`` (at least one)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median_iqr needs at least one value")
    return _quantile(ordered, 0.5), _quantile(ordered, 0.75) - _quantile(ordered, 0.25)


def load_average() -> str:
    """``"load average 1.02, 0.87, 0.80"`` (1, 5, 15 min), or ``"load average unknown"``."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return "load average unknown"
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def _status_kb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _maxrss_kb() -> float | None:
    try:
        import resource
        import sys
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


class PeakMemory:
    """The peak resident memory (MB) the ``with`` block added to this process: ``mb``.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``, value
    5: it resets only that mark) and read on exit (``VmHWM``), less the resident memory on
    entry; elsewhere the growth of ``getrusage``'s peak (0 when the process had already been
    that large). Memory that the allocator kept from earlier work and reuses is not counted
    again, so the figure is approximate: what the block cost beyond what the process held.
    ``None`` where neither is available.

    >>> with PeakMemory() as peak:
    ...     block = bytearray(64 << 20)
    >>> peak.mb is None or peak.mb >= 0
    True
    """

    def __init__(self) -> None:
        self.mb: float | None = None
        self._start: float | None = None
        self._reset = False

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self._reset = True
            self._start = _status_kb("VmRSS")
        except OSError:
            self._start = _maxrss_kb()
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_kb("VmHWM") if self._reset else _maxrss_kb()
        if peak is not None and self._start is not None:
            self.mb = max(0.0, peak - self._start) / 1024
