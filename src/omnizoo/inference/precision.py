"""Reduced precision on the CPU: opt-in, and only behind an accuracy guard.

``Predictor(..., precision=...)`` on the CPU, for classifiers:

* ``"fp32"``: float32 (what ``"auto"`` means on the CPU: reduced precision is never chosen for
  you; ``backend_choice.precision_reason`` says whether ``"bf16"`` would run natively here);
* ``"bf16"``: torch autocast to bfloat16, only on a CPU that computes bf16 natively
  (:func:`cpu_bf16_support`: torch's CPU capability is AVX-512 or better and the CPU has
  AVX512-BF16 or AMX). Elsewhere bf16 is emulated (slower than fp32) and it is refused with an
  :class:`~omnizoo.errors.UnsupportedError` naming the capability found;
* ``"int8"`` (= ``"int8-static"``) and ``"int8-dynamic"``: the model's cached ONNX export
  quantized by onnxruntime (:mod:`omnizoo.export.quantize`), run on onnxruntime. Static
  quantization calibrates its activation ranges on the calibration images.

**The guard.** Before a reduced path is used, the calibration images
(:mod:`omnizoo.inference.calibration`: ``calibration=`` a folder, else 48 built-in photos),
preprocessed exactly as the Predictor preprocesses, go through the fp32 torch model and the
reduced path; the share whose top-1 class agrees is ``backend_choice.agreement``. Below
``min_agreement`` (default 0.99) the Predictor is not built: an ``UnsupportedError`` names the
measured agreement, the threshold and the ways out. The measurement is recorded under
``OMNIZOO_HOME/exports/agreement-*.json``, keyed by the reduced model (the int8 graph's sha256;
for bf16 the weights' sha256, the architecture, torch's version and the CPU capability) and the
calibration set's digest, so it is measured once; a damaged record (not JSON, out-of-range
numbers, a symlink) counts as missing and is measured again.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, UnsupportedError
from .backend_choice import BackendChoice

if TYPE_CHECKING:
    import torch

    from .calibration import CalibrationSet

__all__ = [
    "PRECISIONS",
    "REDUCED",
    "check_min_agreement",
    "cpu_bf16_support",
    "fp32_reason",
    "reduced_cpu_runner",
    "refuse_early",
]

log = logging.getLogger("omnizoo.predict")

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8", "int8-static", "int8-dynamic")
#: The precisions the guard stands before on the CPU.
REDUCED = ("bf16", "int8", "int8-static", "int8-dynamic")
_NATIVE_CAPABILITIES = ("AVX512", "AVX512_BF16", "AMX", "AVX512_AMX")
_MAX_RECORD_BYTES = 1 << 16


def cpu_bf16_support() -> tuple[bool, str]:
    """``(native, description)``: whether this CPU computes bf16 natively for torch, and the
    facts that decided it (torch's CPU capability, AVX512-BF16, AMX)."""
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    cpu = getattr(torch, "cpu", None)

    def has(check: str) -> bool:
        fn = getattr(cpu, check, None)
        try:
            return bool(fn()) if fn is not None else False
        except Exception:  # an old torch without the probe: not known to be there
            return False

    avx512_bf16 = has("_is_avx512_bf16_supported")
    amx = has("_is_amx_tile_supported")
    native = capability.upper() in _NATIVE_CAPABILITIES and (avx512_bf16 or amx)
    flags = ", ".join(
        f"{name} {'yes' if ok else 'no'}"
        for name, ok in (("AVX512-BF16", avx512_bf16), ("AMX", amx))
    )
    return native, f"torch CPU capability {capability}, {flags}"


def fp32_reason(precision: str) -> str:
    """Why a CPU Predictor computes in float32 (``precision`` is ``"auto"`` or ``"fp32"``)."""
    if precision == "fp32":
        return "asked for"
    native, facts = cpu_bf16_support()
    hint = "precision='bf16' runs natively here" if native else "this CPU has no native bf16"
    return (
        f"precision='auto' is fp32 on the CPU: reduced precision is opt-in ({hint}: {facts}; "
        "precision='int8' quantizes with onnxruntime)"
    )


def check_min_agreement(value: Any) -> float:
    """``min_agreement`` as a float in [0, 1] (a value above 1 refuses every reduced path)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(
            f"min_agreement={value!r}; give the least top-1 agreement with fp32 to accept, "
            "a number from 0 to 1 (default 0.99)"
        )
    return number


def refuse_early(precision: str, backend: str) -> None:
    """Refuse what cannot run, before any calibration image is read: bf16 on a CPU without
    native bf16 or on onnxruntime, int8 on torch."""
    if precision == "bf16":
        if backend == "onnxruntime":
            raise ConfigurationError(
                "precision='bf16' runs on torch (CPU autocast); use backend='auto' or 'torch', "
                "or precision='int8' for onnxruntime"
            )
        native, facts = cpu_bf16_support()
        if not native:
            raise UnsupportedError(
                f"precision='bf16': this CPU has no native bf16 ({facts}); torch would emulate "
                "it, slower than fp32. Use precision='fp32', or 'int8' (onnxruntime)"
            )
    elif backend == "torch":
        raise ConfigurationError(
            f"precision={precision!r} runs the quantized ONNX graph on onnxruntime; use "
            "backend='auto' or 'onnxruntime', or precision='bf16' for torch"
        )


def reduced_cpu_runner(
    model: Any,
    torch_runner: Any,
    data_config: Any,
    device: torch.device,
    *,
    precision: str,
    backend: str,
    calibration: CalibrationSet,
    min_agreement: float,
    threads: int | None = None,
) -> tuple[Any, BackendChoice]:
    """``(runner, choice)`` for a reduced ``precision`` on the CPU, after the guard passed
    (see the module docstring); ``torch_runner`` is the fp32 reference."""
    refuse_early(precision, backend)
    if precision == "bf16":
        import torch

        facts = cpu_bf16_support()[1]

        runner = copy.copy(torch_runner)  # shares the (folded) model; only autocast differs
        runner.autocast = torch.bfloat16
        key = _bf16_key(model, facts, calibration.digest)
        how = f"torch with bfloat16 autocast ({facts})"
        choice = BackendChoice("torch", how, precision="bf16", precision_reason="asked for")
        return _guarded(runner, choice, torch_runner, calibration, key, min_agreement)
    from ..export.cached import cached_export
    from ..export.quantize import cached_quantized
    from .backends import OrtRunner

    mode = "dynamic" if precision == "int8-dynamic" else "static"
    model.eval()
    export = cached_export(model, data_config)
    batches = [b.numpy() for b in calibration.batches] if mode == "static" else []
    quantized = cached_quantized(
        export.path, mode, calibration=batches, calibration_digest=calibration.digest
    )
    runner = OrtRunner(quantized.path, device, threads=threads)
    runner.keepalive = quantized  # a private copy's folder lives as long as the runner
    key = _int8_key(quantized.path, mode, calibration.digest)
    choice = BackendChoice(
        "onnxruntime",
        f"onnxruntime on the {quantized.describe()}",
        export=export.describe(),
        precision=f"int8-{mode}",
        precision_reason="asked for",
    )
    return _guarded(runner, choice, torch_runner, calibration, key, min_agreement)


def _bf16_key(model: Any, facts: str, digest: str) -> str:
    import torch

    from ..export.cached import state_dict_sha256

    parts = [
        "bf16",
        state_dict_sha256(model),
        hashlib.sha256(repr(model).encode()).hexdigest(),
        torch.__version__,
        facts,
        digest,
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _int8_key(path: Path, mode: str, digest: str) -> str:
    from ..weights import fsafe

    graph = path.name if len(path.name) == 64 else fsafe.hash_regular(path)[0]
    return hashlib.sha256(f"int8-{mode}|{graph}|{digest}".encode()).hexdigest()


def _guarded(
    runner: Any,
    choice: BackendChoice,
    reference: Any,
    calibration: CalibrationSet,
    key: str,
    min_agreement: float,
) -> tuple[Any, BackendChoice]:
    """Measure (or read) the top-1 agreement of ``runner`` with ``reference``; refuse it below
    ``min_agreement``."""
    from dataclasses import replace

    from .calibration import top1_agreement

    path = _record_path(key)
    record = _read_record(path, choice.precision)
    if record is None:
        same, total = top1_agreement(reference, runner, calibration.batches)
        record = {"precision": choice.precision, "agree": same, "images": total}
        from .backend_choice import write_record

        write_record(path, {**record, "measured": time.time()})
        how = "measured"
    else:
        how = "measured before"
    same, total = int(record["agree"]), int(record["images"])
    agreement = same / total
    summary = (
        f"top-1 agreement with fp32 {agreement:.1%} ({same} of {total} "
        f"{calibration.description.split(' ', 1)[1]}, {how})"
    )
    if agreement < min_agreement:
        floor = math.floor(agreement * 100) / 100
        raise UnsupportedError(
            f"precision={choice.precision!r}: {summary} is below min_agreement="
            f"{min_agreement:g}. To use it anyway pass min_agreement={floor:g} "
            f"(--min-agreement {floor:g}); to measure on your own images pass calibration=DIR "
            "(--calibration DIR); or use precision='fp32'"
        )
    done = replace(
        choice,
        reason=f"{choice.reason}; {summary}, threshold {min_agreement:g}",
        agreement=agreement,
        calibration=calibration.description,
    )
    log.info("backend: %s", done)
    return runner, done


def _record_path(key: str) -> Path:
    from ..settings import get_settings

    return get_settings().home / "exports" / f"agreement-{key[:40]}.json"


def _read_record(path: Path, precision: str) -> dict[str, Any] | None:
    """The agreement recorded at ``path`` or None (missing or damaged: measured again)."""
    from ..errors import MetadataError
    from ..schema import Fields, parse_json
    from ..weights import fsafe

    try:
        fields = Fields(parse_json(fsafe.read_regular(path, _MAX_RECORD_BYTES), str(path)), path)
        images = fields.integer("images", lo=1, hi=10**7)
        record = {
            "precision": fields.choice("precision", (precision,)),
            "images": images,
            "agree": fields.integer("agree", lo=0, hi=images),
        }
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, MetadataError) as exc:
        log.warning("ignoring the damaged agreement record %s (%s); measuring again", path, exc)
        return None
    return record
