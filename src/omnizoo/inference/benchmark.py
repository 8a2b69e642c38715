"""``omnizoo.benchmark``: how fast each model runs on this machine, per backend, precision,
thread count and device, measured the way the Predictor runs it.

For each model and each configuration (device x backend x precision x threads) a fresh model
is built (``pretrained=False``, seeded so that every run builds the same weights and the ONNX
export cached for it is found again; weights do not change speed. ONNX-zoo graphs are their
weights: those are downloaded), a :class:`~omnizoo.inference.predictor.Predictor` is made for
it (so the runner is exactly the Predictor's: BatchNorm folding, channels_last, autocast, the
cached ONNX export, the quantized graph behind ``int8-*``, ``auto``'s measured choice) and its
runner is called on random input of the card's input size, for each batch size:
``warmup`` untimed calls, then ``repeats`` timed ones (:mod:`.timing`). Reported per batch
size: the median latency of a call and its interquartile range, and the throughput
(batch size / median). Batch 1 is always timed: its median is the **latency**; the batch size
with the highest throughput is the **best batch** (so the best throughput is never below the
batch-1 one). Peak memory: on CUDA, torch's ``max_memory_allocated`` (torch backend); on the
CPU, the peak resident memory the configuration added (:class:`.timing.PeakMemory`).
Reduced precisions run with ``min_agreement=0``: the guard compares random weights, which
says nothing; use ``omnizoo validate`` for what int8 costs in accuracy.

Combinations the Predictor refuses (int8 on torch, bf16 without native bf16, onnxruntime for
a detector) are listed in ``skipped`` with its reason. Each timed configuration is recorded
for this machine (:mod:`.measured`) unless ``record=False``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError, DependencyError, UnsupportedError

__all__ = ["BatchTiming", "BenchmarkReport", "BenchmarkResult", "benchmark", "best_batch"]

BACKENDS = ("torch", "onnxruntime", "auto")


@dataclass(frozen=True)
class BatchTiming:
    """One batch size: median and interquartile range of a call (ms), images per second."""

    batch_size: int
    latency_ms_median: float
    latency_ms_iqr: float
    throughput_ips: float


def best_batch(timings: Sequence[BatchTiming]) -> BatchTiming:
    """The timing with the highest throughput (the smaller batch on a tie).

    >>> best_batch([BatchTiming(1, 10.0, 1.0, 100.0), BatchTiming(8, 40.0, 2.0, 200.0)])
    BatchTiming(batch_size=8, latency_ms_median=40.0, latency_ms_iqr=2.0, throughput_ips=200.0)
    """
    return max(timings, key=lambda t: (t.throughput_ips, -t.batch_size))


@dataclass(frozen=True)
class BenchmarkResult:
    """One configuration of one model. ``backend``: what was asked; ``ran``: what ran (``auto``
    resolved) and ``reason`` why; ``precision``: what the forward pass computes in."""

    model: str
    backend: str
    ran: str
    precision: str
    device: str
    threads: int
    timings: tuple[BatchTiming, ...]
    peak_memory_mb: float | None
    reason: str = ""

    @property
    def latency(self) -> BatchTiming:
        """The batch-1 timing."""
        return next(t for t in self.timings if t.batch_size == 1)

    @property
    def best(self) -> BatchTiming:
        """The timing of the best batch size (highest throughput)."""
        return best_batch(self.timings)

    def row(self) -> dict[str, Any]:
        """A flat row (the keys of ``--format json/csv``)."""
        lat, best = self.latency, self.best
        return {
            "model": self.model,
            "backend": self.backend,
            "ran": self.ran,
            "precision": self.precision,
            "device": self.device,
            "threads": self.threads,
            "latency_ms": round(lat.latency_ms_median, 3),
            "latency_iqr_ms": round(lat.latency_ms_iqr, 3),
            "batch1_ips": round(lat.throughput_ips, 2),
            "best_batch": best.batch_size,
            "throughput_ips": round(best.throughput_ips, 2),
            "throughput_iqr_ms": round(best.latency_ms_iqr, 3),
            "peak_memory_mb": None if self.peak_memory_mb is None else round(self.peak_memory_mb),
        }


@dataclass(frozen=True)
class BenchmarkReport:
    """What :func:`benchmark` measured: ``results``, the configurations ``skipped`` (with
    why), this machine (``fingerprint``, ``machine``), the load averages before and after,
    and the settings it ran with."""

    results: tuple[BenchmarkResult, ...]
    skipped: tuple[tuple[str, str], ...]
    fingerprint: str
    machine: dict[str, str]
    load_before: str
    load_after: str
    warmup: int
    repeats: int
    batch_sizes: tuple[int, ...]
    recorded: bool
    pretrained: bool = False
    notes: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per result, in the order measured."""
        return [r.row() for r in self.results]


def _split(value: Any, what: str) -> tuple[Any, ...]:
    items = (value,) if isinstance(value, (str, int)) or value is None else tuple(value)
    if not items:
        raise ConfigurationError(f"{what}: give at least one value")
    return items


def _batch_sizes(values: Sequence[int]) -> tuple[int, ...]:
    sizes = {1}  # batch 1 is the latency: always timed
    for b in values:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 4096:
            raise ConfigurationError(f"batch size {b!r}: use whole numbers from 1 to 4096")
        sizes.add(b)
    return tuple(sorted(sizes))


def _count(value: int, what: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= 100_000:
        raise ConfigurationError(f"{what}={value!r}: use a whole number from {lo} to 100000")
    return value


@contextlib.contextmanager
def _threads_kept() -> Iterator[None]:
    """The Predictor's ``num_threads`` is process-wide: put torch's back afterwards."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build(name: str, card: Any) -> Any:
    import torch

    from ..registry.factory import create_model

    graph = card.source == "onnx" or (card.weights is not None and card.weights.format == "onnx")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same weights every run: the cached ONNX export is reused
        return create_model(name, pretrained=graph)


def _random_batch(config: Any, batch: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(batch)
    c, h, w = config.input_size
    shape = (batch, h, w, c) if config.layout == "NHWC" else (batch, c, h, w)
    return torch.randn(shape, generator=gen)


def _time_config(
    runner: Callable[[Any], Any],
    config: Any,
    device: Any,
    sizes: Sequence[int],
    warmup: int,
    repeats: int,
) -> tuple[BatchTiming, ...]:
    import torch

    from .timing import median_iqr, timed_runs

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = []
    for b in sizes:
        x = _random_batch(config, b)

        def call(x: Any = x) -> None:
            runner(x)  # the runner hands back CPU tensors: the device's work is done
            sync()

        runs = timed_runs(call, repeats=repeats, warmup=warmup)
        med, iqr = median_iqr([wall for wall, _ in runs])
        out.append(BatchTiming(b, med * 1e3, iqr * 1e3, b / med if med > 0 else float("inf")))
    return tuple(out)


def _one(
    name: str,
    card: Any,
    device: Any,
    backend: str,
    precision: str,
    threads: int | None,
    sizes: Sequence[int],
    warmup: int,
    repeats: int,
) -> BenchmarkResult:
    import torch

    from .predictor import Predictor
    from .timing import PeakMemory

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with PeakMemory() as peak:
        predictor = Predictor(
            _build(name, card),
            device=device,
            backend=backend,
            precision=precision,
            batch_size=max(sizes),
            num_threads=threads,
            min_agreement=0,  # random weights: agreement says nothing, speed does
        )
        choice = predictor.backend_choice
        timings = _time_config(
            predictor._run, predictor.data_config, device, sizes, warmup, repeats
        )
    memory = peak.mb
    if cuda:
        memory = (
            torch.cuda.max_memory_allocated(device) / 2**20 if choice.backend == "torch" else None
        )
    return BenchmarkResult(
        model=card.name,
        backend=backend,
        ran=choice.backend,
        precision=choice.precision,
        device=str(device),
        threads=threads or torch.get_num_threads(),
        timings=timings,
        peak_memory_mb=memory,
        reason=choice.reason,
    )


def _record(result: BenchmarkResult) -> None:
    from .measured import record_speed

    for t in result.timings:
        record_speed(
            result.model,
            backend=result.ran,
            precision=result.precision,
            device=result.device,
            threads=result.threads,
            batch_size=t.batch_size,
            latency_ms_median=t.latency_ms_median,
            latency_ms_iqr=t.latency_ms_iqr,
            throughput_ips=t.throughput_ips,
            peak_memory_mb=result.peak_memory_mb,
        )


def benchmark(
    models: str | Sequence[str],
    *,
    backends: str | Sequence[str] = "auto",
    precisions: str | Sequence[str] = "auto",
    threads: int | Sequence[int | None] | None = None,
    devices: str | Sequence[str] = "auto",
    batch_sizes: Sequence[int] = (1, 8, 32),
    warmup: int = 3,
    repeats: int = 10,
    record: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchmarkReport:
    """Measure latency (batch 1) and throughput (best batch size) of each of ``models`` on this
    machine, for every combination of ``devices``, ``backends`` (``"torch"``,
    ``"onnxruntime"``, ``"auto"``), ``precisions`` (``"auto"``, ``"fp32"``, ``"bf16"``,
    ``"fp16"``, ``"int8-dynamic"``, ``"int8"``...) and ``threads`` (None: the libraries'
    default), on random input (weights do not change speed: nothing is downloaded except ONNX
    graphs). ``warmup`` untimed and ``repeats`` timed calls per batch size; medians with the
    interquartile range. ``record``: keep the figures for this machine, for ``omnizoo
    compare`` and ``omnizoo plot --measured``. ``progress`` is called with a line per
    configuration. See :mod:`omnizoo.inference.benchmark`.

    >>> import omnizoo
    >>> report = omnizoo.benchmark("timm:test_efficientnet", backends="torch",
    ...                            batch_sizes=[1, 4], warmup=1, repeats=3, record=False)
    >>> [(r["model"], r["ran"], r["best_batch"] in (1, 4)) for r in report.rows()]
    [('timm:test_efficientnet.r160_in1k', 'torch', True)]

    Raises:
        UnknownModelError: a name that is not in the registry.
        ConfigurationError: an unknown backend, a device that is not here, a batch size,
            ``warmup`` or ``repeats`` out of range.
        OfflineError: an ONNX-zoo graph (those are their weights) not cached, offline.
        Building a model raises what :func:`omnizoo.create_model` raises.
    """
    from ..registry.registry import get_card
    from .device import resolve_device
    from .measured import machine_fingerprint
    from .precision import PRECISIONS
    from .timing import load_average

    names = _split(models, "models")
    backend_list = _split(backends, "backends")
    for b in backend_list:
        if b not in BACKENDS:
            raise ConfigurationError(f"backend {b!r}: use one of {', '.join(BACKENDS)}")
    precision_list = _split(precisions, "precisions")
    for p in precision_list:
        if p not in PRECISIONS:
            raise ConfigurationError(f"precision {p!r}: use one of {', '.join(PRECISIONS)}")
    thread_list = _split(threads, "threads")
    for t in thread_list:
        if t is not None:
            _count(t, "threads", 1)
    device_list = [resolve_device(d) for d in _split(devices, "devices")]
    sizes = _batch_sizes(batch_sizes)
    warmup, repeats = _count(warmup, "warmup", 0), _count(repeats, "repeats", 1)
    cards = [get_card(n) for n in names]  # every name checked before anything is timed
    fingerprint, machine = machine_fingerprint()
    before = load_average()
    results: list[BenchmarkResult] = []
    skipped: list[tuple[str, str]] = []
    plan = itertools.product(
        zip(names, cards, strict=True), device_list, backend_list, precision_list, thread_list
    )
    with _threads_kept():
        for (name, card), device, backend, precision, t in plan:
            what = f"{card.name} {device} {backend} {precision} threads={t or '-'}"
            try:
                result = _one(name, card, device, backend, precision, t, sizes, warmup, repeats)
            except (UnsupportedError, ConfigurationError, DependencyError) as exc:
                skipped.append((what, str(exc)))
                if progress:
                    progress(f"{what}: skipped ({exc})")
                continue
            results.append(result)
            if record:
                _record(result)
            if progress:
                progress(f"{what}: {result.latency.latency_ms_median:.2f} ms at batch 1")
    return BenchmarkReport(
        results=tuple(results),
        skipped=tuple(skipped),
        fingerprint=fingerprint,
        machine=machine,
        load_before=before,
        load_after=load_average(),
        warmup=warmup,
        repeats=repeats,
        batch_sizes=sizes,
        recorded=record and bool(results),
    )
