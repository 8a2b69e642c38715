"""Partial checkpoint loading: load what fits, report the rest.

The usual fine-tuning situations — a checkpoint trained for another number of classes, one saved
from a DDP/``torch.compile`` wrapper, a backbone-only file, a training checkpoint with an
optimizer and an EMA copy inside — all come down to "copy every tensor whose name and shape match,
and tell me about everything else". :func:`load_partial` does exactly that and returns a
:class:`~omnizoo.sources.base.LoadReport`:

* ``loaded``: copied into the model;
* ``reinitialized``: classifier-head keys whose shape differs (a head for other classes): the
  model keeps its own (fresh) head, which is what fine-tuning wants;
* ``missing``: model keys the checkpoint lacks, or has with another shape outside the head
  (each shape mismatch is also described in ``notes``);
* ``unexpected``: checkpoint keys the model has no place for.

Files are read with :func:`omnizoo.loading.state_dict_files.load_checkpoint` (safetensors, or
``torch.load(weights_only=True)``: no arbitrary unpickling; the wrapper keys ``state_dict_ema``,
``model``, ``state_dict``, ... are looked into and ``module.`` / ``_orig_mod.`` prefixes
stripped).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, UnsupportedError
from ..loading.heads import find_classifier, unwrap_model
from ..loading.report import LoadReport

if TYPE_CHECKING:
    from torch import nn

__all__ = ["load_partial"]


def _under_any(key: str, prefixes: list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def load_partial(
    model: nn.Module,
    checkpoint: str | Path | Mapping[str, Any],
    *,
    strict: bool = False,
    strip_prefix: str | None = None,
    use_ema: bool = True,
    trusted: bool = False,
) -> LoadReport:
    """Copy every tensor of ``checkpoint`` whose name and shape fit ``model``; report the rest.

    ``checkpoint`` is a file path (safetensors / torch / .npz) or an already loaded state dict
    (or training checkpoint dict). ``strip_prefix`` removes a prefix from every checkpoint key
    first (e.g. ``"backbone."``). ``use_ema`` prefers an EMA copy inside a training checkpoint.
    ``strict=True`` raises :class:`~omnizoo.errors.CheckpointError` *before* changing the model
    if anything would be missing, unexpected or mismatched outside the head. ``trusted=True``
    lets ``OMNIZOO_TRUST_PICKLE=1`` apply to this (unverified) file; otherwise a file that needs
    arbitrary unpickling is refused.

    Tensors are copied in place (the model's parameters stay the same objects, so an optimizer
    built before the call stays valid) and cast to the model's dtype/device.

    >>> import torchvision
    >>> from omnizoo.finetune.heads import reset_classifier
    >>> model = reset_classifier(torchvision.models.resnet18(), 3)
    >>> report = load_partial(model, torchvision.models.resnet18().state_dict())
    >>> report.summary()
    '120 loaded, 0 adapted, 2 re-initialised, 0 missing, 0 unexpected'
    """
    import torch

    from ..loading.state_dict_files import load_checkpoint
    from ..loading.unwrap import clean_state_dict, unwrap_checkpoint

    inner = unwrap_model(model)
    if not isinstance(inner, torch.nn.Module):
        raise UnsupportedError(
            f"{type(inner).__name__} is not a torch nn.Module; checkpoints cannot be loaded"
        )
    source_file: str | None = None
    if isinstance(checkpoint, (str, Path)):
        source_file = str(checkpoint)
        state = load_checkpoint(checkpoint, verified=trusted, use_ema=use_ema)
    elif isinstance(checkpoint, Mapping):
        state = clean_state_dict(unwrap_checkpoint(dict(checkpoint), use_ema=use_ema))
    else:
        raise CheckpointError(
            f"checkpoint must be a path or a state dict, not {type(checkpoint).__name__}"
        )
    if strip_prefix:
        state = {
            (k[len(strip_prefix) :] if k.startswith(strip_prefix) else k): v
            for k, v in state.items()
        }

    try:
        heads = find_classifier(inner)
    except UnsupportedError:
        heads = []
    own = inner.state_dict()
    report = LoadReport(source_file=source_file)
    fit: dict[str, Any] = {}
    mismatches: list[str] = []
    for key, value in state.items():
        target = own.get(key)
        if target is None or not isinstance(value, torch.Tensor):
            report.unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(target.shape):
            desc = f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
            if _under_any(key, heads):
                report.reinitialized.append(key)
                report.notes.append(f"head kept at its own init (shape differs): {desc}")
            else:
                report.missing.append(key)
                mismatches.append(desc)
            continue
        fit[key] = value
    skipped_counters = 0
    for key in own:
        if key in fit or key in report.reinitialized or key in report.missing:
            continue
        if key.endswith("num_batches_tracked"):
            skipped_counters += 1  # absent from older checkpoints; BatchNorm resets it
            continue
        report.missing.append(key)
    if mismatches:
        more = [f"... (+{len(mismatches) - 10})"] if len(mismatches) > 10 else []
        report.notes.extend(f"shape mismatch: {m}" for m in mismatches[:10] + more)
    if skipped_counters:
        report.notes.append(
            f"{skipped_counters} BatchNorm num_batches_tracked counter(s) not in the checkpoint "
            "(harmless: they only count steps)"
        )
    if strict and not report.ok:
        raise CheckpointError(f"checkpoint does not fit the model (strict=True): {report}")
    if not fit:
        report.notes.append("nothing in the checkpoint fits this model; the model is unchanged")
    with torch.no_grad():
        inner.load_state_dict(fit, strict=False)
    report.loaded.extend(fit)
    return report
