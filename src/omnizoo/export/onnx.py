"""ONNX export with the preprocessing recorded (or folded in) and the result verified.

:func:`export_onnx` turns any omnizoo/torchvision/timm/Cadene/EfficientNet classification model
into an ``.onnx`` file and, by default, proves the file right: it runs the file in onnxruntime on
the same random inputs as the torch model and raises :class:`~omnizoo.errors.ExportError` (with
the largest absolute difference) when an output differs by more than
``atol + rtol * max|torch output|`` (the tolerance scales with the output's magnitude, as float32
rounding error does: a randomly initialised Inception v3 gives logits of 1e12).

Decisions (see docs/export.md):

* **Exporter** (``exporter="auto"``, the default): the TorchScript-based exporter
  (``torch.onnx.export(..., dynamo=False)``) first. On torch 2.14 it is offline, 2-10x faster
  than the ``torch.export``-based exporter on these CNNs/ViTs (swin_t: 3 s vs 26 s) and handles
  every torchvision classification model. When it fails or its file does not verify (e.g.
  Cadene's DPN, whose test-time pooling uses the input size as a kernel size), the
  ``torch.export``-based exporter (``dynamo=True``, via onnxscript) is tried next; only when
  both fail is :class:`~omnizoo.errors.ExportError` raised, naming both reasons.
  ``exporter="torchscript"`` or ``"dynamo"`` picks one. What an exporter prints (the
  TorchScript exporter dumps its whole IR graph on failure) goes to the DEBUG log.
* **Opset**: 17 for the TorchScript exporter, 18 for dynamo (its lowest well-tested opset),
  unless ``opset`` is given.
* **Batch**: dynamic (axis 0 named ``batch``) unless ``dynamic_batch=False``; the verification
  then runs a *different* batch size than the export trace, so a batch size baked into the graph
  is caught.
* **Metadata** (``metadata_props``, all strings): ``omnizoo.card`` (the card name, or the class
  name for a model built outside omnizoo), ``omnizoo.data_config`` (the DataConfig as JSON),
  ``omnizoo.label_set``, ``omnizoo.categories`` (JSON, when the card has inline labels),
  ``omnizoo.label_offset``, ``omnizoo.num_classes``, ``omnizoo.output`` (logits/probabilities),
  ``omnizoo.weights`` (the weights file name, or "none (random init)", for create_model models),
  ``omnizoo.preprocessing_folded`` (0/1), ``omnizoo.input`` (a sentence saying what the input
  is), ``omnizoo.version`` and ``omnizoo.exporter``.
* **Folded preprocessing** (``fold_preprocessing=True``): the graph takes ``uint8`` NCHW RGB
  images already resized/cropped to the input size, and does scale (0-255 -> value range),
  RGB->BGR (Caffe-era weights), ``(x - mean) / std`` itself. Resizing and cropping stay outside.
* **Atomic write**: everything is written to a temporary directory beside ``path`` and renamed
  into place only after verification passed; on any failure nothing is left at ``path`` (and a
  file already there is untouched). Models over 2 GB are saved with one external data file
  ``<name>.data`` next to the ``.onnx`` file.
* lukemelas EfficientNet models are switched to the plain swish for the export
  (``set_swish(memory_efficient=False)``: same outputs, exportable) and switched back after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.config import DataConfig
from ..errors import ConfigurationError, ExportError
from ..finetune.heads import unwrap_model

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["DEFAULT_OPSET", "ExportReport", "export_onnx", "export_onnx_report", "read_metadata"]

log = logging.getLogger(__name__)

#: Default opset per exporter.
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
_TWO_GB = 2**31 - 1
_INPUT_NAME = "input"


@dataclass
class ExportReport:
    """What :func:`export_onnx_report` did."""

    path: Path
    exporter: str
    opset: int
    input_shape: tuple[int, ...]
    input_dtype: str
    output_names: list[str]
    verified: bool
    max_abs_diff: float | None = None
    seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        check = (
            f"verified in onnxruntime, max abs diff {self.max_abs_diff:.3g}"
            if self.verified and self.max_abs_diff is not None
            else "not verified"
        )
        return (
            f"{self.path} ({self.exporter} exporter, opset {self.opset}, input "
            f"{self.input_dtype}{list(self.input_shape)}; {check}; {self.seconds:.1f} s)"
        )


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
            axes = {name: {0: "batch"} for name in [_INPUT_NAME, *output_names]}
            torch.onnx.export(
                module,
                (example,),
                str(target),
                dynamo=False,
                opset_version=opset,
                input_names=[_INPUT_NAME],
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
                    input_names=[_INPUT_NAME],
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


def _exporters(exporter: str) -> tuple[str, ...]:
    if exporter == "auto":
        return ("torchscript", "dynamo")
    if exporter in DEFAULT_OPSET:
        return (exporter,)
    raise ConfigurationError(f"exporter={exporter!r}; use 'auto', 'torchscript' or 'dynamo'")


def _attempt(
    module: nn.Module,
    inner: nn.Module,
    example: torch.Tensor,
    verify_input: torch.Tensor,
    work: Path,
    final_name: str,
    *,
    exporter: str,
    opset: int,
    output_names: list[str],
    dynamic_batch: bool,
    verify: bool,
    atol: float,
    rtol: float,
    name: str,
    metadata: dict[str, str],
) -> tuple[list[Path], dict[str, str], float | None]:
    """One exporter: export, add metadata, verify. Raises ExportError; writes only in ``work``."""
    raw = work / "raw.onnx"
    try:
        with _quiet_fds():
            _run_exporter(
                module,
                example,
                raw,
                exporter=exporter,
                opset=opset,
                output_names=output_names,
                dynamic_batch=dynamic_batch,
            )
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(_first_line(exc)) from None
    doc = f"{name} exported by omnizoo {metadata['omnizoo.version']}"
    try:
        files = _finalise(raw, final_name, metadata, doc)
    except Exception as exc:
        raise ExportError(f"cannot write the ONNX file: {_first_line(exc)}") from None
    max_diff = None
    if verify:
        max_diff = _verify(files[0], module, verify_input, atol=atol, rtol=rtol, name=name)
    return files, metadata, max_diff


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


def export_onnx_report(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    dynamic_batch: bool = True,
    opset: int | None = None,
    input_size: int | Sequence[int] | None = None,
    fold_preprocessing: bool = False,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    exporter: str = "auto",
    data_config: DataConfig | None = None,
    seed: int = 0,
) -> ExportReport:
    """:func:`export_onnx`, returning an :class:`ExportReport` (with the max abs diff)."""
    import torch

    started = time.perf_counter()
    target = Path(path).expanduser()
    _exporters(exporter)  # validates the name
    inner = unwrap_model(model)
    if not isinstance(inner, torch.nn.Module):
        source = getattr(inner, "path", None)
        raise ExportError(
            f"{type(inner).__name__} is not a torch module"
            + (f"; it already is an ONNX file: copy {source}" if source else "")
        )
    card = getattr(inner, "omnizoo_card", None)
    data = data_config or getattr(card, "data", None) or DataConfig()
    shape = _input_size(data, input_size)
    name = getattr(card, "name", None) or type(inner).__name__
    if not target.parent.is_dir():
        raise ExportError(f"cannot write {target}: directory {target.parent} does not exist")

    module: nn.Module = _preprocess_module(inner, data) if fold_preprocessing else inner
    device = _param_device(inner)
    gen = torch.Generator().manual_seed(seed)
    batches = (2, 3) if dynamic_batch else (2, 2)

    def make_input(batch: int) -> torch.Tensor:
        if fold_preprocessing:
            return torch.randint(0, 256, (batch, *shape), generator=gen, dtype=torch.uint8).to(
                device
            )
        x = torch.randn((batch, *shape), generator=gen)
        return x.to(device=device, dtype=_param_dtype(inner))

    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with _export_mode(inner):
            example = make_input(batches[0])
            try:
                with torch.no_grad():
                    outputs = _flatten(module(example))
            except ExportError:
                raise
            except Exception as exc:
                raise ExportError(
                    f"{name} fails on a {list(example.shape)} input before export: "
                    f"{_first_line(exc)}; pass input_size= if it needs another size"
                ) from None
            output_names = (
                ["logits"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
            )
            if len(outputs) == 1 and getattr(card, "task", None) == "features":
                output_names = ["features"]
            verify_input = make_input(batches[1])
            tried = _exporters(exporter)
            errors: list[str] = []
            for attempt, which in enumerate(tried):
                used_opset = int(opset) if opset is not None else DEFAULT_OPSET[which]
                work = tmp_dir / str(attempt)
                work.mkdir()
                try:
                    files, metadata, max_diff = _attempt(
                        module,
                        inner,
                        example,
                        verify_input,
                        work,
                        target.name,
                        exporter=which,
                        opset=used_opset,
                        output_names=output_names,
                        dynamic_batch=dynamic_batch,
                        verify=verify,
                        atol=atol,
                        rtol=rtol,
                        name=name,
                        metadata=_metadata(inner, data, card, fold_preprocessing, which, shape),
                    )
                except ExportError as exc:
                    errors.append(f"{which} exporter (opset {used_opset}): {exc}")
                    log.info("export of %s with the %s exporter failed: %s", name, which, exc)
                    continue
                exporter_used = which
                break
            else:
                raise ExportError(
                    f"cannot export {name} ({type(inner).__name__}) to ONNX; "
                    + "; then ".join(errors)
                )
        # Data file first, then the graph: a reader never sees a graph without its data.
        for made in reversed(files):
            os.replace(made, target.parent / made.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    report = ExportReport(
        path=target,
        exporter=exporter_used,
        opset=used_opset,
        input_shape=(-1 if dynamic_batch else batches[0], *shape),
        input_dtype="uint8" if fold_preprocessing else str(_param_dtype(inner))[len("torch.") :],
        output_names=output_names,
        verified=verify,
        max_abs_diff=max_diff,
        seconds=time.perf_counter() - started,
        metadata=metadata,
    )
    log.info("exported %s", report.summary())
    return report


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    dynamic_batch: bool = True,
    opset: int | None = None,
    input_size: int | Sequence[int] | None = None,
    fold_preprocessing: bool = False,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    exporter: str = "auto",
    data_config: DataConfig | None = None,
) -> Path:
    """Export ``model`` to ``path`` as ONNX; returns the path (see the module docstring).

    ``input_size``: an int, (h, w) or (c, h, w); default the model card's DataConfig input size
    (224x224 for a model without a card). ``verify`` runs the file in onnxruntime and raises
    :class:`~omnizoo.errors.ExportError` when an output differs by more than
    ``atol + rtol * max|torch output|`` (the message gives the max abs diff; it is logged at INFO
    level on success, and :func:`export_onnx_report` returns it). ``data_config`` overrides the
    card's preprocessing (recorded in the metadata and used when folding).

    >>> import torchvision, tempfile, os
    >>> out = export_onnx(torchvision.models.resnet18(), os.path.join(tempfile.mkdtemp(), "r.onnx"))
    >>> read_metadata(out)["omnizoo.preprocessing_folded"]
    '0'
    """
    return export_onnx_report(
        model,
        path,
        verify=verify,
        dynamic_batch=dynamic_batch,
        opset=opset,
        input_size=input_size,
        fold_preprocessing=fold_preprocessing,
        atol=atol,
        rtol=rtol,
        exporter=exporter,
        data_config=data_config,
    ).path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
