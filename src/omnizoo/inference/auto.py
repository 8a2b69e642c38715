"""``backend="auto"``: the fastest correct way to run a model here, and why it was chosen.

On the CPU, a torch classifier is exported to ONNX once (the graph is kept in the verified
cache, :mod:`omnizoo.export.cached`), and at first use in a process:

1. **parity**: the graph and the torch model (BatchNorm folded, channels_last: what the torch
   backend would run) see the same fixed random probe batch; outputs further apart than
   ``1e-4 + 1e-3 * max|output|`` mean the graph is not used;
2. **speed**: both run the probe batch (``min(batch_size, 8)`` images) twice, alternately,
   after a warm-up; onnxruntime is used when its best time is lower. The measurement is
   recorded under ``OMNIZOO_HOME/exports/`` per graph, machine (CPU model and count, thread
   count, library versions) and probe size, so later processes only check parity.

Everything else has one right answer: ONNX graphs (ONNX-zoo models, ``.onnx`` files) run on
onnxruntime; on CUDA, torch with channels_last and bf16/fp16 autocast; detection and
segmentation models, quantized models, models over 2 GB and models that do not export run on
torch. :class:`BackendChoice` says which and why (``Predictor.backend_choice``, ``omnizoo
predict --verbose``).

>>> str(BackendChoice("torch", "on CUDA: torch with channels_last and bf16 autocast"))
'torch (on CUDA: torch with channels_last and bf16 autocast)'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ExportError, UnsupportedError

if TYPE_CHECKING:
    import torch

    from ..data.config import DataConfig

__all__ = ["BackendChoice", "choose_cpu_backend", "machine_signature"]

log = logging.getLogger("omnizoo.predict")

#: Parity tolerance of the ONNX graph against torch: atol + rtol * max|torch output|.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3
_TIMING_BATCH = 8
_TIMING_ROUNDS = 2


@dataclass(frozen=True)
class BackendChoice:
    """Which backend a Predictor runs (``backend``: ``"torch"`` or ``"onnxruntime"``) and why.

    ``parity``: the largest difference between the ONNX graph's and torch's outputs on the
    probe, relative to the output scale; ``torch_ms`` / ``onnxruntime_ms``: the measured time
    per image on the probe batch; ``export``: how the ONNX graph was obtained.
    """

    backend: str
    reason: str
    export: str | None = None
    parity: float | None = None
    torch_ms: float | None = None
    onnxruntime_ms: float | None = None

    def __str__(self) -> str:
        return f"{self.backend} ({self.reason})"


def machine_signature(threads: int | None = None) -> str:
    """What a speed measurement depends on: CPU model and count, threads, library versions."""
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [
        cpu,
        str(os.cpu_count()),
        str(threads or torch.get_num_threads()),
        torch.__version__,
        onnxruntime.__version__,
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _record_path(key: str, machine: str, batch: int) -> Path:
    from ..settings import get_settings

    return get_settings().home / "exports" / f"{key[:32]}-{machine}-b{batch}.json"


def _read_record(path: Path) -> dict[str, Any] | None:
    from ..weights.records import read_json

    data = read_json(path)
    if data is None or data.get("backend") not in ("torch", "onnxruntime"):
        return None
    return data


def _write_record(path: Path, record: dict[str, Any]) -> None:
    from ..weights import fsafe

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fsafe.write_atomic(path, json.dumps(record, indent=1, sort_keys=True).encode())
    except OSError as exc:  # a read-only home: measured again next time
        log.debug("cannot record the backend measurement in %s: %s", path, exc)


def _parity(a: torch.Tensor, b: torch.Tensor) -> tuple[bool, float]:
    """(outputs agree, max abs difference relative to the output scale)."""
    import torch

    if a.shape != b.shape:
        return False, float("inf")
    scale = float(a.abs().max()) if a.numel() else 0.0
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    ok = bool(torch.isfinite(b).all()) and diff <= PARITY_ATOL + PARITY_RTOL * scale
    return ok, diff / (scale or 1.0)


def _best_times(runners: list[Callable[[Any], Any]], x: torch.Tensor) -> list[float]:
    best = [float("inf")] * len(runners)
    for _ in range(_TIMING_ROUNDS):
        for i, run in enumerate(runners):  # alternating: a burst of load hits both alike
            start = time.perf_counter()
            run(x)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def choose_cpu_backend(
    model: Any,
    torch_runner: Any,
    data_config: DataConfig,
    device: torch.device,
    *,
    batch_size: int,
    threads: int | None = None,
) -> tuple[Any, BackendChoice]:
    """``(runner, choice)`` for a torch classifier on the CPU (see the module docstring).

    ``torch_runner`` is the :class:`~omnizoo.inference.backends.TorchRunner` the torch backend
    would use; it is returned when onnxruntime is not both correct and faster.
    """
    import torch

    from ..export.cached import cached_export
    from .backends import OrtRunner

    try:
        export = cached_export(model, data_config)
    except (ExportError, UnsupportedError) as exc:
        reason = " ".join(str(exc).split())
        if len(reason) > 300:
            reason = reason[:297] + "..."
        return torch_runner, BackendChoice("torch", f"no ONNX graph: {reason}")
    ort = OrtRunner(export.path, device, threads=threads)
    machine = machine_signature(threads)
    batch = max(1, min(int(batch_size), _TIMING_BATCH))
    record_path = _record_path(export.key, machine, batch)
    record = _read_record(record_path)
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn((2 if record else batch, *data_config.input_size), generator=gen)
    expected = torch_runner(probe)
    ok, rel = _parity(expected, ort(probe))
    if not ok:
        log.warning(
            "the ONNX graph of %s differs from the torch model on a probe input (max relative "
            "difference %.3g); running on torch",
            type(model).__name__,
            rel,
        )
        return torch_runner, BackendChoice(
            "torch",
            f"the ONNX graph's outputs differ from torch's (max relative difference {rel:.2g})",
            export=export.describe(),
            parity=rel,
        )
    if record is None:
        t_torch, t_ort = _best_times([torch_runner, ort], probe)
        record = {
            "backend": "onnxruntime" if t_ort < t_torch else "torch",
            "torch_s": t_torch,
            "onnxruntime_s": t_ort,
            "batch": batch,
            "measured": time.time(),
        }
        _write_record(record_path, record)
        how = "measured"
    else:
        how = "measured before on this machine"
    torch_ms = 1000 * float(record["torch_s"]) / batch
    ort_ms = 1000 * float(record["onnxruntime_s"]) / batch
    speed = f"{ort_ms:.1f} vs {torch_ms:.1f} ms per image ({how})"
    if record["backend"] == "onnxruntime":
        reason = (
            f"onnxruntime is {torch_ms / max(ort_ms, 1e-9):.2f}x faster than torch here: {speed}"
        )
        chosen: Any = ort
    else:
        reason = f"torch is not slower than onnxruntime here: {speed}"
        chosen = torch_runner
    choice = BackendChoice(str(record["backend"]), reason, export.describe(), rel, torch_ms, ort_ms)
    log.info("backend: %s", choice)
    return chosen, choice
