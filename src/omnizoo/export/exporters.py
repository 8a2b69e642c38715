"""Running the ONNX exporters: the preprocessing wrapper, export mode, and the TorchScript- or
torch.export-based exporter with its chatter kept out of the user's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, ExportError
from ..values.data_config import DataConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "INPUT_NAME",
    "export_input_size",
    "export_mode",
    "first_line",
    "flatten",
    "param_device",
    "param_dtype",
    "preprocess_module",
    "quiet_fds",
    "run_exporter",
]

log = logging.getLogger("omnizoo.export.onnx")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


INPUT_NAME = "input"


def preprocess_module(model: nn.Module, data: DataConfig) -> nn.Module:
    """A module taking uint8 0-255 NCHW RGB and feeding ``model`` what it was trained on."""
    import torch
    from torch import nn

    channels = int(data.input_size[0])

    def _per_channel(values: Sequence[float]) -> torch.Tensor:
        vals = list(values) if len(values) == channels else list(values) * channels
        return torch.tensor(vals, dtype=torch.float32).view(1, channels, 1, 1)

    class FoldedPreprocessing(nn.Module):
        mean: torch.Tensor
        std: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.scale = 1.0 / 255.0 if tuple(data.value_range) == (0.0, 1.0) else 1.0
            self.bgr = data.color_order == "BGR" and channels == 3
            self.register_buffer("mean", _per_channel(data.mean), persistent=False)
            self.register_buffer("std", _per_channel(data.std), persistent=False)

        def forward(self, image: torch.Tensor) -> Any:
            x = image.to(torch.float32) * self.scale
            if self.bgr:
                x = x.flip(1)
            x = (x - self.mean) / self.std
            return self.model(x.to(param_dtype(self.model)))

    # eval mode: torch.onnx.export restores the wrapper's mode (and so its child's) afterwards
    return FoldedPreprocessing().eval()


def param_dtype(model: nn.Module) -> torch.dtype:
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def param_device(model: nn.Module) -> torch.device:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def flatten(out: Any) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        flat: list[Any] = []
        for item in out:
            flat.extend(flatten(item))
        return flat
    if isinstance(out, dict):
        return flatten(list(out.values()))
    raise ExportError(
        f"the model returns a {type(out).__name__}; only tensors (or lists/tuples/dicts of "
        "tensors) can be exported to ONNX"
    )


@contextlib.contextmanager
def export_mode(model: nn.Module) -> Iterator[None]:
    """eval mode, plain swish for lukemelas EfficientNet; both restored afterwards."""
    was_training = model.training
    restore_swish = False
    swish = getattr(model, "_swish", None)
    if callable(getattr(model, "set_swish", None)) and type(swish).__name__.startswith("Memory"):
        model.set_swish(memory_efficient=False)  # type: ignore[operator]
        restore_swish = True
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
        if restore_swish:
            model.set_swish(memory_efficient=True)  # type: ignore[operator]


def export_input_size(data: DataConfig, input_size: Any) -> tuple[int, int, int]:
    if input_size is None:
        c, h, w = data.input_size
    elif isinstance(input_size, int):
        c, h, w = data.input_size[0], input_size, input_size
    elif len(input_size) == 2:
        c, (h, w) = data.input_size[0], input_size
    elif len(input_size) == 3:
        c, h, w = input_size
    else:
        raise ConfigurationError(
            f"input_size={input_size!r}; give an int, (height, width) or (channels, h, w)"
        )
    return int(c), int(h), int(w)


def first_line(exc: BaseException) -> str:
    """The informative line of an exporter error (the dynamo exporter's first line is generic)."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).strip().splitlines() if ln.strip()]
    best = lines[0] if lines else ""
    if "Exception summary" in str(exc):
        for ln in lines:
            if ln.startswith("<class") and ("Error" in ln or "error" in ln):
                best = ln.split(">:", 1)[-1].strip()
                break
    return f"{type(exc).__name__}: {best[:400]}"


@contextlib.contextmanager
def no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention's inference fast path (torchvision ViT) has no ONNX symbolic."""
    import torch

    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):  # pragma: no cover - old torch
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _require(module: str, what: str) -> None:
    """An :class:`ExportError` (the fallback chain goes on) naming the extra to install."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        from ..errors import pip_install

        raise ExportError(f"{what} needs {module}, which is not installed: {pip_install('export')}")


def run_exporter(
    module: nn.Module,
    example: torch.Tensor,
    target: Path,
    *,
    exporter: str,
    opset: int,
    output_names: list[str],
    dynamic_batch: bool,
) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad(), no_mha_fastpath():
        warnings.simplefilter("ignore")  # TracerWarnings and the exporter's deprecation notes
        if exporter == "torchscript":
            axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]}
            torch.onnx.export(
                module,
                (example,),
                str(target),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_axes=axes if dynamic_batch else None,
                do_constant_folding=True,
            )
        else:
            _require("onnxscript", "the dynamo exporter")
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            # A sink with isatty(): torch 2.5's exporter asks sys.stdout.isatty() (None has none).
            with contextlib.redirect_stdout(io.StringIO()):
                program = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=output_names,
                    dynamic_shapes=shapes,
                    optimize=True,
                    verbose=False,
                )
            if program is None:  # pragma: no cover - torch always returns a program here
                raise ExportError("the dynamo exporter returned no program")
            program.save(str(target), external_data=False)


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Capture what the exporter prints at the file-descriptor level (the TorchScript exporter
    dumps its whole IR graph to stderr on failure); it goes to the DEBUG log instead."""
    import sys

    saved: list[tuple[int, int]] = []
    capture = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 - closed in finally
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError, ValueError):
                (sys.stdout if fd == 1 else sys.stderr).flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(capture.fileno(), fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
        capture.close()
        if text.strip():
            log.debug("exporter output:\n%s", text[-20000:])
