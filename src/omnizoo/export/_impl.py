"""Internals of :mod:`omnizoo.export.onnx`: the preprocessing wrapper, running the exporters,
writing metadata, and checking the file in onnxruntime. See that module for the decisions."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.config import DataConfig
from ..errors import ConfigurationError, ExportError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger("omnizoo.export.onnx")

_TWO_GB = 2**31 - 1
INPUT_NAME = "input"


def _preprocess_module(model: nn.Module, data: DataConfig) -> nn.Module:
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
            return self.model(x.to(_param_dtype(self.model)))

    # eval mode: torch.onnx.export restores the wrapper's mode (and so its child's) afterwards
    return FoldedPreprocessing().eval()


def _param_dtype(model: nn.Module) -> torch.dtype:
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _param_device(model: nn.Module) -> torch.device:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _flatten(out: Any) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        flat: list[Any] = []
        for item in out:
            flat.extend(_flatten(item))
        return flat
    if isinstance(out, dict):
        return _flatten(list(out.values()))
    raise ExportError(
        f"the model returns a {type(out).__name__}; only tensors (or lists/tuples/dicts of "
        "tensors) can be exported to ONNX"
    )


@contextlib.contextmanager
def _export_mode(model: nn.Module) -> Iterator[None]:
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


def _input_size(data: DataConfig, input_size: Any) -> tuple[int, int, int]:
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


def _metadata(
    model: nn.Module, data: DataConfig, card: Any, folded: bool, exporter: str, shape: Any
) -> dict[str, str]:
    from .. import __version__

    name = getattr(card, "name", None) or f"{type(model).__module__}.{type(model).__qualname__}"
    c, h, w = shape
    if folded:
        order = "RGB"
        text = (
            f"uint8 NCHW {order} images, 0-255, already resized and cropped to {h}x{w} as "
            "omnizoo.data_config says; scaling and mean/std normalisation are in the graph"
        )
    else:
        text = (
            f"float32 NCHW tensors of {c}x{h}x{w}, preprocessed exactly as omnizoo.data_config "
            f"says (value range {list(data.value_range)}, {data.color_order}, mean/std applied)"
        )
    meta = {
        "omnizoo.version": __version__,
        "omnizoo.card": str(name),
        "omnizoo.data_config": json.dumps(data.to_dict(), sort_keys=True),
        "omnizoo.label_set": str(getattr(card, "label_set", None) or ""),
        "omnizoo.label_offset": str(getattr(card, "label_offset", 0) or 0),
        "omnizoo.output": str(getattr(card, "output", "logits") or "logits"),
        "omnizoo.preprocessing_folded": "1" if folded else "0",
        "omnizoo.input": text,
        "omnizoo.exporter": exporter,
    }
    report = getattr(model, "omnizoo_load_report", None)
    if report is not None:  # a model from create_model: say where its weights came from
        source = getattr(report, "source_file", None)
        meta["omnizoo.weights"] = Path(source).name if source else "none (random init)"
    num_classes = getattr(card, "num_classes", None)
    if num_classes is not None:
        meta["omnizoo.num_classes"] = str(num_classes)
    categories = getattr(card, "categories", None)
    if categories:
        meta["omnizoo.categories"] = json.dumps(list(categories))
    return meta


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException) -> str:
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
def _no_mha_fastpath() -> Iterator[None]:
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


def _run_exporter(
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

    with warnings.catch_warnings(), torch.no_grad(), _no_mha_fastpath():
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
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            with contextlib.redirect_stdout(None):
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


def _finalise(tmp_file: Path, final_name: str, metadata: dict[str, str], doc: str) -> list[Path]:
    """Add metadata and re-save as one .onnx (+ one .data file when > 2 GB); the files made."""
    import onnx

    proto = onnx.load(str(tmp_file), load_external_data=True)
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    proto.doc_string = doc
    proto.producer_name = proto.producer_name or "pytorch"
    out_dir = tmp_file.parent / "final"
    out_dir.mkdir()
    out = out_dir / final_name
    large = proto.ByteSize() > _TWO_GB if _safe_size(proto) else True
    if large:
        data_name = final_name + ".data"
        onnx.save_model(
            proto,
            str(out),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        return [out, out_dir / data_name]
    onnx.save_model(proto, str(out))
    return [out]


def _safe_size(proto: Any) -> bool:
    try:
        proto.ByteSize()
        return True
    except Exception:  # protobuf refuses to size messages over 2 GB
        return False


def _verify(
    path: Path,
    module: nn.Module,
    example: torch.Tensor,
    *,
    atol: float,
    rtol: float,
    name: str,
) -> float:
    import numpy as np
    import torch

    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a core dependency
        from ..errors import DependencyError

        raise DependencyError("verifying an ONNX export needs onnxruntime") from exc
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        ort_outs = session.run(None, {session.get_inputs()[0].name: example.cpu().numpy()})
    except Exception as exc:
        raise ExportError(
            f"onnxruntime cannot run the export of {name}: {_first_line(exc)}"
        ) from None
    with torch.no_grad():
        ref = [t.detach().float().cpu().numpy() for t in _flatten(module(example))]
    if len(ref) != len(ort_outs):
        raise ExportError(
            f"export of {name}: onnxruntime gives {len(ort_outs)} outputs, torch {len(ref)}"
        )
    worst = 0.0
    for i, (a, b) in enumerate(zip(ort_outs, ref, strict=True)):
        a = np.asarray(a, dtype=np.float32)
        if a.shape != b.shape:
            raise ExportError(
                f"export of {name}: output {i} has shape {a.shape} in onnxruntime but {b.shape} "
                "in torch (a batch size or shape baked into the graph?)"
            )
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        diff = np.where(np.isnan(a) & np.isnan(b), 0.0, diff)
        max_diff = float(diff.max()) if diff.size else 0.0  # NaN if any side alone is NaN
        scale = float(np.nanmax(np.abs(b))) if b.size and not np.isnan(b).all() else 0.0
        limit = atol + rtol * scale
        worst = max_diff if np.isnan(max_diff) else max(worst, max_diff)
        if not max_diff <= limit:  # also true for NaN
            raise ExportError(
                f"export of {name} does not match the torch model: output {i} max abs diff "
                f"{max_diff:.3g} exceeds atol + rtol * max|output| = {atol:g} + {rtol:g} * "
                f"{scale:.3g} = {limit:.3g}; the file was not written"
            )
    return worst


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
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
