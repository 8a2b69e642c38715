"""``create_model``: name -> card -> verified weights -> the source adapter builds and loads.

>>> import omnizoo
>>> model = omnizoo.create_model("timm:resnet18", num_classes=10)   # doctest: +SKIP
>>> model.omnizoo_card.name, model.omnizoo_load_report.summary()    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, NoPretrainedWeightsError
from ..loading.report import LoadReport
from ..loading.request import CreateRequest
from .card import ModelCard
from .index import get_adapter
from .registry import get_card

__all__ = ["create_model"]


def create_model(
    name: str | ModelCard,
    pretrained: bool = False,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: Any = None,
    checkpoint_path: str | Path | None = None,
    device: Any = None,
    dtype: Any = None,
    strict: bool = True,
    lock: str | Path | Any = None,
    **kwargs: Any,
) -> Any:
    """Build a model by name, optionally with verified pretrained weights.

    * ``pretrained=True`` downloads (or finds in the cache) the card's weights file, verified
      by hash, and loads it safely (safetensors or ``torch.load(weights_only=True)``);
    * ``checkpoint_path`` loads a local file instead (your fine-tuned checkpoint or an
      air-gapped copy; ``module.``/``_orig_mod.`` prefixes and ``state_dict``/``model``/EMA
      wrappers are handled; its head size is used when ``num_classes`` is not given);
    * ``num_classes`` gives a head of that size: a checkpoint's head of that size is kept,
      another is re-initialised; ``in_chans`` adapts the pretrained stem (sum for 1 channel,
      repeat-and-scale for more);
    * ``strict`` (default True): missing or unexpected checkpoint keys raise
      :class:`~omnizoo.errors.CheckpointError`; ``strict=False`` loads what fits and lists the
      rest in ``model.omnizoo_load_report``, as timm's ``load_checkpoint`` does;
    * ``features_only``/``out_indices`` return a model whose forward gives a list of feature
      maps, with timm's meaning of ``out_indices`` (an int n: the last n levels) and a
      ``feature_info`` with timm's API, for every source that has feature maps;
    * ``lock``: a weights lock file (path, or a :class:`~omnizoo.weights.lockfile.WeightsLock`)
      the pretrained download must match; None uses ``OMNIZOO_LOCK``, False none;
    * ``device``/``dtype`` are honoured while building (``device="meta"`` builds the
      architecture only, at once); ``kwargs`` go to the source's builder with upstream's
      meaning (timm's ``pretrained_cfg_overlay``, torchvision's ``weights``/``weights_backbone``).

    The model comes back in the mode upstream returns it (train), and carries ``omnizoo_card``
    (so ``get_card(model)`` works) and ``omnizoo_load_report`` (a
    :class:`~omnizoo.loading.report.LoadReport`).
    """
    card = get_card(name)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0
    ):
        raise ConfigurationError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if in_chans is not None and (
        isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1
    ):
        raise ConfigurationError(f"in_chans must be an int >= 1, got {in_chans!r}")
    if out_indices is not None and not features_only:
        raise ConfigurationError("out_indices is only meaningful with features_only=True")
    request = CreateRequest(
        pretrained=bool(pretrained),
        weights_path=Path(checkpoint_path).expanduser() if checkpoint_path is not None else None,
        user_checkpoint=checkpoint_path is not None,
        num_classes=num_classes,
        in_chans=in_chans,
        features_only=bool(features_only),
        out_indices=_out_indices(out_indices),
        strict=bool(strict),
        device=device,
        dtype=_dtype(dtype),
        kwargs=dict(kwargs),
    )
    adapter = get_adapter(card.source)
    resolved, request = adapter.resolve(card, request)
    card = get_card(resolved) if isinstance(resolved, str) else resolved
    adapter.check_request(card, request)  # fail before downloading, not after
    on_meta = device is not None and str(device) == "meta"
    if request.pretrained and not request.has_weights and not on_meta:
        if card.weights is None:
            raise NoPretrainedWeightsError(
                f"{card.name} has no pretrained weights; "
                f"`omnizoo list '{card.arch}*' --pretrained` shows which do"
            )
        from ..weights.download import fetch_verified

        # The card's declared format is enforced by the fetch; only bytes that matched a
        # sha256 known in advance (pinned, origin, prefix) count as verified for unpickling.
        fetched = fetch_verified(card.weights, name=card.name, lock=lock)
        request = dataclasses.replace(
            request, weights_path=Path(fetched.path), verified=fetched.verified
        )
    model, report = adapter.create(card, request)
    if on_meta and request.dtype is not None:
        model = _move(model, None, request.dtype)  # free on meta; timm already built it so
    elif not on_meta and (device is not None or request.dtype is not None):
        model = _move(model, device, request.dtype)
    _attach(model, _derived_card(card, model, request), report)
    return model


def _out_indices(value: Any) -> Any:
    """timm's out_indices: None, an int (the last n levels) or a sequence of level indices."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        indices = tuple(int(i) for i in value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"out_indices must be an int (the last n levels) or a sequence of ints, got {value!r}"
        ) from None
    return indices


def _dtype(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    import torch

    resolved = getattr(torch, value.removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigurationError(f"dtype={value!r} is not a torch dtype, e.g. 'float16'")
    return resolved


def _move(model: Any, device: Any, dtype: Any) -> Any:
    to = getattr(model, "to", None)
    if to is None:
        raise ConfigurationError(f"{type(model).__name__} cannot be moved to {device}/{dtype}")
    kwargs: dict[str, Any] = {}
    if device is not None:
        kwargs["device"] = device
    if dtype is not None:
        kwargs["dtype"] = dtype
    return to(**kwargs)


def _derived_card(card: ModelCard, model: Any, request: CreateRequest) -> ModelCard:
    """The card, with num_classes / in_chans changes the user asked for."""
    changes: dict[str, Any] = {}
    n = request.num_classes
    if n is None and request.user_checkpoint:
        n = getattr(model, "num_classes", None)
        n = n if isinstance(n, int) else None
    if n is not None and n != card.num_classes and not request.features_only:
        changes.update(
            num_classes=n,
            label_set=None,
            categories=None,
            label_offset=0,
            top1=None,
            top5=None,
            metrics_dataset=None,
        )
    if request.in_chans is not None and request.in_chans != card.data.input_size[0]:
        c = request.in_chans
        mean = (
            card.data.mean
            if len(card.data.mean) in (1, c)
            else (sum(card.data.mean) / len(card.data.mean),)
        )
        std = (
            card.data.std
            if len(card.data.std) in (1, c)
            else (sum(card.data.std) / len(card.data.std),)
        )
        changes["data"] = card.data.replace(
            input_size=(c, *card.data.input_size[1:]), mean=mean, std=std
        )
    if request.user_checkpoint:
        changes["notes"] = (*card.notes, "weights from a local checkpoint_path")
    return dataclasses.replace(card, **changes) if changes else card


def _attach(model: Any, card: ModelCard, report: LoadReport) -> None:
    try:
        model.omnizoo_card = card
        model.omnizoo_load_report = report
    except AttributeError:  # pragma: no cover - an object refusing attributes
        pass
