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

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, ExportError
from ..loading.heads import unwrap_model
from ..saved.onnx_metadata import onnx_metadata, write_onnx
from ..values.card import ModelCard
from ..values.data_config import DataConfig
from .exporters import (
    export_input_size,
    export_mode,
    first_line,
    flatten,
    param_device,
    param_dtype,
    preprocess_module,
    quiet_fds,
    run_exporter,
)
from .verify import verify_export

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["DEFAULT_OPSET", "ExportReport", "export_onnx", "export_onnx_report", "read_metadata"]

log = logging.getLogger(__name__)

#: Default opset per exporter.
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}


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
        with quiet_fds():
            run_exporter(
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
        raise ExportError(first_line(exc)) from None
    doc = f"{name} exported by omnizoo {metadata['omnizoo.version']}"
    try:
        files = write_onnx(raw, final_name, metadata, doc)
    except Exception as exc:
        raise ExportError(f"cannot write the ONNX file: {first_line(exc)}") from None
    max_diff = None
    if verify:
        max_diff = verify_export(files[0], module, verify_input, atol=atol, rtol=rtol, name=name)
    return files, metadata, max_diff


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
    _require_export_libraries(verify)
    inner = unwrap_model(model)
    if not isinstance(inner, torch.nn.Module):
        source = getattr(inner, "path", None)
        raise ExportError(
            f"{type(inner).__name__} is not a torch module"
            + (f"; it already is an ONNX file: copy {source}" if source else "")
        )
    card = getattr(inner, "omnizoo_card", None)
    data = data_config or getattr(card, "data", None) or DataConfig()
    shape = export_input_size(data, input_size)
    if tuple(shape) != tuple(data.input_size):
        # The graph takes another size than the card's: the metadata (and so the Predictor
        # reading it back) must say so, with the resize kept in proportion (timm's rule).
        from ..data.resolve import resolve_data_config

        data = resolve_data_config(data, input_size=shape)
    name = getattr(card, "name", None) or type(inner).__name__
    now, label_set = card, None
    if isinstance(card, ModelCard):
        from ..data.labels import label_set_for
        from ..registry.derive import current_card

        now = current_card(inner, card)  # a head replaced by hand: not the old label set
        label_set = label_set_for(now)  # timm cards name none: inferred, as get_labels does
    if not target.parent.is_dir():
        raise ExportError(f"cannot write {target}: directory {target.parent} does not exist")

    module: nn.Module = preprocess_module(inner, data) if fold_preprocessing else inner
    device = param_device(inner)
    gen = torch.Generator().manual_seed(seed)
    batches = (2, 3) if dynamic_batch else (2, 2)

    def make_input(batch: int) -> torch.Tensor:
        if fold_preprocessing:
            return torch.randint(0, 256, (batch, *shape), generator=gen, dtype=torch.uint8).to(
                device
            )
        x = torch.randn((batch, *shape), generator=gen)
        return x.to(device=device, dtype=param_dtype(inner))

    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with export_mode(inner):
            example = make_input(batches[0])
            try:
                with torch.no_grad():
                    outputs = flatten(module(example))
            except ExportError:
                raise
            except Exception as exc:
                raise ExportError(
                    f"{name} fails on a {list(example.shape)} input before export: "
                    f"{first_line(exc)}; pass input_size= if it needs another size"
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
                        metadata=onnx_metadata(
                            inner, data, now, label_set, fold_preprocessing, which, shape
                        ),
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
        input_dtype="uint8" if fold_preprocessing else str(param_dtype(inner))[len("torch.") :],
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

    Raises:
        ExportError: the model is not a torch module, fails on the example input, cannot be
            exported, the file cannot be written, or (``verify=True``) onnxruntime's outputs
            differ from torch's by more than the tolerance.
        ConfigurationError: an unknown ``exporter``.
        DependencyError: onnx / onnxruntime (the ``export`` extra) is not installed.
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


def _require_export_libraries(verify: bool) -> None:
    """:class:`~omnizoo.errors.DependencyError` with the ``[export]`` extra when onnx (or, to
    verify, onnxruntime) is not installed: found before any exporter runs."""
    import importlib.util

    from ..errors import DependencyError, pip_install

    needed = ("onnx", "onnxruntime") if verify else ("onnx",)
    absent = [m for m in needed if importlib.util.find_spec(m) is None]
    if absent:
        raise DependencyError(
            f"ONNX export needs {', '.join(absent)} (not installed): {pip_install('export')}"
        )
