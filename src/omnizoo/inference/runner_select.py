"""Which runner a Predictor uses: the backend (torch, onnxruntime, ``"auto"``) times the
precision (fp32, autocast, CPU bf16/int8 behind the accuracy guard), and why.

One decision in one place: :func:`select_runner` is called once by ``Predictor.__init__``;
the ``auto`` measurement lives in :mod:`.backend_choice`, reduced precision on the CPU in
:mod:`.precision`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import ConfigurationError, UnsupportedError
from ..values.card import is_classification
from .backend_choice import BackendChoice
from .open_model import is_module

__all__ = ["select_runner"]


def select_runner(
    p: Any,
    backend: str,
    *,
    precision: str,
    channels_last: bool,
    fold_bn: bool,
    calibration: Any = None,
    min_agreement: float = 0.99,
) -> tuple[Any, BackendChoice]:
    """``(runner, choice)`` for the Predictor ``p`` (its model, task, data_config, device,
    batch_size, num_threads and per-image preprocessing are read from it)."""
    from .backends import OrtRunner, TorchRunner, is_onnx_model
    from .device import autocast_dtype
    from .precision import PRECISIONS, REDUCED, fp32_reason

    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision={precision!r}; use one of {', '.join(PRECISIONS)}")
    model, device, task = p.model, p.device, p.task
    reduced_cpu = precision in REDUCED and device.type == "cpu"
    if precision.startswith("int8") and device.type != "cpu":
        raise UnsupportedError(
            f"precision={precision!r} quantizes for onnxruntime on the CPU; on {device} use "
            "precision='auto' (bf16/fp16 autocast) or device='cpu'"
        )
    if is_onnx_model(model):
        if not is_classification(task):
            raise UnsupportedError("the Predictor runs ONNX graphs as classifiers only")
        if reduced_cpu:
            raise UnsupportedError(
                f"precision={precision!r} applies to torch models (their export is quantized "
                "and cached); this is an ONNX graph already: quantize it with "
                "onnxruntime.quantization, or use precision='fp32'"
            )
        return OrtRunner(model, device), BackendChoice("onnxruntime", "an ONNX graph")
    classifier = is_classification(task)
    nchw = p.data_config.layout == "NCHW"
    if reduced_cpu and (not classifier or task == "quantized_classification"):
        raise UnsupportedError(
            f"precision={precision!r} on the CPU is guarded by the top-1 agreement with fp32 "
            f"on calibration images, so it is for classifiers; {task} models run in fp32"
        )
    if reduced_cpu:
        from .precision import refuse_early

        refuse_early(precision, backend)
    if reduced_cpu and not (nchw and is_module(model)):
        raise UnsupportedError(
            f"precision={precision!r} needs a torch module with an NCHW data_config"
        )
    if backend == "onnxruntime" and not classifier:
        raise UnsupportedError(
            f"backend='onnxruntime' runs classifiers; {task} models run on torch "
            "(backend='auto' or 'torch')"
        )
    cpu_note = fp32_reason(precision) if device.type == "cpu" and not reduced_cpu else None
    if backend == "onnxruntime" and not reduced_cpu:
        from ..export.cached import cached_export

        if not nchw:
            raise ConfigurationError("exporting a torch model needs an NCHW data_config")
        model.eval()
        export = cached_export(model, p.data_config)
        runner = OrtRunner(export.path, device, threads=p.num_threads)
        choice = BackendChoice(
            "onnxruntime", "asked for", export=export.describe(), precision_reason=cpu_note
        )
        return runner, choice
    probe_size: tuple[int, ...] | None = None
    if task == "segmentation":
        probe_size = (p.data_config.input_size[0], 96, 96)
    elif classifier and nchw:
        probe_size = tuple(p.data_config.input_size)
    amp = None if reduced_cpu else autocast_dtype(device, precision)
    torch_runner = TorchRunner(
        model,
        device,
        autocast=amp,
        channels_last=channels_last and task != "detection" and task != "keypoints",
        fold_bn=fold_bn,
        input_size=probe_size,
    )
    if reduced_cpu:
        from .calibration import calibration_set
        from .precision import reduced_cpu_runner

        return reduced_cpu_runner(
            model,
            torch_runner,
            p.data_config,
            device,
            precision=precision,
            backend=backend,
            calibration=calibration_set(calibration, p._task.prepare),
            min_agreement=min_agreement,
            threads=p.num_threads,
        )
    amp_name = str(amp).replace("torch.", "") if amp is not None else "fp32"
    amp_name = {"bfloat16": "bf16", "float16": "fp16"}.get(amp_name, amp_name)
    runner, choice = _fp_runner(p, backend, torch_runner, amp_name)
    return runner, replace(choice, precision=amp_name, precision_reason=cpu_note)


def _fp_runner(p: Any, backend: str, torch_runner: Any, amp_name: str) -> tuple[Any, BackendChoice]:
    """The torch runner, or on the CPU ``auto``'s measured choice (no reduced precision)."""
    from .backend_choice import choose_cpu_backend

    model, device, task = p.model, p.device, p.task
    if backend == "torch":
        return torch_runner, BackendChoice("torch", "asked for")
    if device.type == "cuda":
        layout = "channels_last and " if torch_runner.channels_last else ""
        return torch_runner, BackendChoice(
            "torch", f"on CUDA: torch with {layout}{amp_name} autocast"
        )
    if device.type != "cpu":
        return torch_runner, BackendChoice("torch", f"on {device.type}: torch")
    if not is_classification(task) or task == "quantized_classification":
        return torch_runner, BackendChoice("torch", f"{task.replace('_', ' ')} models run on torch")
    if p.data_config.layout != "NCHW" or not is_module(model):
        return torch_runner, BackendChoice("torch", "not an NCHW torch module: not exported")
    if torch_runner.autocast is not None:  # fp16 autocast on the CPU: torch only
        return torch_runner, BackendChoice("torch", f"{amp_name} autocast runs on torch")
    return choose_cpu_backend(
        model,
        torch_runner,
        p.data_config,
        device,
        batch_size=p.batch_size,
        threads=p.num_threads,
    )
