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

The default path degrades, it never dies: whatever goes wrong with the export cache (a graph
this onnxruntime cannot load or run, an unwritable or damaged cache, a parity failure) makes
``auto`` run on torch and say why. A timing record is untrusted input (the home may be shared):
it is read without following a symlink, size-capped and validated with
:class:`~omnizoo.schema.Fields`; a damaged one (not JSON, a missing or non-finite time, a FIFO
or symlink in its place) counts as missing, so it is measured again and atomically replaced.

>>> str(BackendChoice("torch", "on CUDA: torch with channels_last and bf16 autocast"))
'torch (on CUDA: torch with channels_last and bf16 autocast)'
"""

from __future__ import annotations

import errno
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

    from ..values.data_config import DataConfig

__all__ = ["BackendChoice", "choose_cpu_backend", "machine_signature", "write_record"]

log = logging.getLogger("omnizoo.predict")

#: Parity tolerance of the ONNX graph against torch: atol + rtol * max|torch output|.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3
_TIMING_BATCH = 8
_TIMING_ROUNDS = 2
#: A timing record is a few hundred bytes; anything bigger is not one.
_MAX_RECORD_BYTES = 1 << 16
#: The longest probe time a record may state (an hour): a larger one is not a measurement.
_MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class BackendChoice:
    """Which backend a Predictor runs (``backend``: ``"torch"`` or ``"onnxruntime"``) and why.

    ``parity``: the largest difference between the ONNX graph's and torch's outputs on the
    probe, relative to the output scale; ``torch_ms`` / ``onnxruntime_ms``: the measured time
    per image on the probe batch; ``export``: how the ONNX graph was obtained.
    ``precision``: what the forward pass computes in (``"fp32"``, ``"bf16"``, ``"int8-static"``,
    ``"int8-dynamic"``, ...) and ``precision_reason`` why; for a reduced precision on the CPU,
    ``agreement`` is the share of ``calibration`` images whose top-1 class is fp32's
    (:mod:`omnizoo.inference.precision`).
    """

    backend: str
    reason: str
    export: str | None = None
    parity: float | None = None
    torch_ms: float | None = None
    onnxruntime_ms: float | None = None
    precision: str = "fp32"
    precision_reason: str | None = None
    agreement: float | None = None
    calibration: str | None = None

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


def _read_record(path: Path, batch: int) -> dict[str, Any] | None:
    """The measurement recorded at ``path``, or None when there is none or it is damaged
    (then it is measured again and replaced)."""
    from ..errors import MetadataError
    from ..schema import Fields, parse_json
    from ..weights import fsafe

    try:
        fields = Fields(parse_json(fsafe.read_regular(path, _MAX_RECORD_BYTES), str(path)), path)
        record = {
            "backend": fields.choice("backend", ("torch", "onnxruntime")),
            "torch_s": fields.number("torch_s", lo=0.0, hi=_MAX_SECONDS),
            "onnxruntime_s": fields.number("onnxruntime_s", lo=0.0, hi=_MAX_SECONDS),
            "batch": fields.integer("batch", lo=batch, hi=batch),
        }
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, MetadataError) as exc:  # a symlink, FIFO, torn or bad record
        log.warning("ignoring the damaged backend measurement %s (%s); measuring again", path, exc)
        return None
    return record


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Atomically replace the JSON record at ``path`` (a measurement omnizoo keeps under
    ``OMNIZOO_HOME/exports/``); a read-only home is not an error: it is measured again."""
    from ..weights import fsafe

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.is_symlink():  # planted in a shared home: never written through
            raise NotADirectoryError(errno.ENOTDIR, "a symlink, not omnizoo's folder", path.parent)
        # A rename replaces whatever is at ``path`` (a FIFO, a symlink: never followed).
        fsafe.write_atomic(path, json.dumps(record, indent=1, sort_keys=True).encode())
    except OSError as exc:  # a read-only home: measured again next time
        log.debug("cannot record the measurement in %s: %s", path, exc)


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
    would use; it is returned when onnxruntime is not both correct and faster, and whenever
    the ONNX graph cannot be had or used (the choice's reason says why). Never raises for a
    problem of the export cache.
    """
    try:
        return _onnx_or_torch(
            model, torch_runner, data_config, device, batch_size=batch_size, threads=threads
        )
    except (ExportError, UnsupportedError) as exc:  # this model does not export
        return torch_runner, BackendChoice("torch", f"no ONNX graph: {_short(exc)}")
    except Exception as exc:  # anything else of the export cache: torch still answers
        why = f"the cached ONNX graph cannot be used here ({type(exc).__name__}: {_short(exc)})"
        log.warning("%s; running on torch", why)
        return torch_runner, BackendChoice("torch", why)


def _short(exc: BaseException) -> str:
    reason = " ".join(str(exc).split())
    return reason[:297] + "..." if len(reason) > 300 else reason


def _onnx_or_torch(
    model: Any,
    torch_runner: Any,
    data_config: DataConfig,
    device: torch.device,
    *,
    batch_size: int,
    threads: int | None,
) -> tuple[Any, BackendChoice]:
    import torch

    from ..export.cached import cached_export
    from .backends import OrtRunner

    export = cached_export(model, data_config)
    ort = OrtRunner(export.path, device, threads=threads)
    machine = machine_signature(threads)
    batch = max(1, min(int(batch_size), _TIMING_BATCH))
    record_path = _record_path(export.key, machine, batch)
    record = _read_record(record_path, batch)
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
        write_record(record_path, record)
        how = "measured"
    else:
        how = "measured before on this machine"
    torch_ms = 1000 * float(record["torch_s"]) / batch
    ort_ms = 1000 * float(record["onnxruntime_s"]) / batch
    speed = f"onnxruntime {ort_ms:.1f} ms vs torch {torch_ms:.1f} ms per image ({how})"
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
