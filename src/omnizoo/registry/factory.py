"""``create_model``: name -> card -> verified weights -> the source adapter builds and loads.

>>> import omnizoo
>>> model = omnizoo.create_model("timm:resnet18", num_classes=10)   # doctest: +SKIP
>>> model.omnizoo_card.name, model.omnizoo_load_report.summary()    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigurationError, NoPretrainedWeightsError
from ..sources.base import CreateRequest, LoadReport
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
    **kwargs: Any,
) -> Any:
    """Build a model by name, optionally with verified pretrained weights.

    * ``pretrained=True`` downloads (or finds in the cache) the card's weights file, verified
      by hash, and loads it safely (safetensors or ``torch.load(weights_only=True)``);
    * ``checkpoint_path`` loads a local file instead (your fine-tuned checkpoint or an
      air-gapped copy; ``module.``/``_orig_mod.`` prefixes and ``state_dict``/``model``/EMA
      wrappers are handled; its head size is used when ``num_classes`` is not given);
    * ``num_classes`` re-initialises the head (the rest is loaded); ``in_chans`` adapts the
      pretrained stem (sum for 1 channel, repeat-and-scale for more);
    * ``features_only``/``out_indices`` return a model whose forward gives a list of feature
      maps (timm and torchvision classification backbones);
    * ``device``/``dtype`` move the result; ``kwargs`` go to the source's builder.

    The model is returned in eval mode and carries ``omnizoo_card`` (so ``get_card(model)``
    works) and ``omnizoo_load_report`` (a :class:`~omnizoo.sources.base.LoadReport`).
    """
    card = get_card(name)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 0):
        raise ConfigurationError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if in_chans is not None and (not isinstance(in_chans, int) or in_chans < 1):
        raise ConfigurationError(f"in_chans must be an int >= 1, got {in_chans!r}")
    if out_indices is not None and not features_only:
        raise ConfigurationError("out_indices is only meaningful with features_only=True")
    if isinstance(out_indices, int):
        out_indices = tuple(range(out_indices)) if out_indices > 0 else None
    request = CreateRequest(
        pretrained=bool(pretrained),
        user_checkpoint=checkpoint_path is not None,
        num_classes=num_classes,
        in_chans=in_chans,
        features_only=bool(features_only),
        out_indices=tuple(out_indices) if out_indices is not None else None,
        kwargs=dict(kwargs),
    )
    adapter = get_adapter(card.source)
    adapter.check_request(card, request)  # fail before downloading, not after
    weights_path: Path | None = None
    if checkpoint_path is not None:
        weights_path = Path(checkpoint_path).expanduser()
    elif pretrained:
        if card.weights is None:
            raise NoPretrainedWeightsError(
                f"{card.name} has no pretrained weights; "
                f"`omnizoo list '{card.arch}*' --pretrained` shows which do"
            )
        from ..weights.download import fetch_weights

        weights_path = Path(fetch_weights(card.weights, name=card.name))
    request = dataclasses.replace(request, weights_path=weights_path)
    model, report = adapter.create(card, request)
    if weights_path is not None:
        _check_something_loaded(card, weights_path, report)
    if device is not None or dtype is not None:
        model = _move(model, device, dtype)
    _attach(model, _derived_card(card, model, request), report)
    return model


def _check_something_loaded(card: ModelCard, path: Path, report: LoadReport) -> None:
    """A weights file none of whose tensors found a place is the wrong file, not a load."""
    # Only a tensor load that placed nothing is wrong; an ONNX session loads no tensors and
    # reports none missing or unexpected.
    if report.loaded or report.adapted or not (report.missing or report.unexpected):
        return
    missing = ", ".join(report.missing[:3]) or "-"
    unexpected = ", ".join(report.unexpected[:3]) or "-"
    raise CheckpointError(
        f"no tensor of {path} fits {card.name}: the model wants e.g. {missing}; the file has "
        f"e.g. {unexpected}. Is it a checkpoint of another architecture? Pick the matching "
        "model name, or rename the keys before loading."
    )


def _move(model: Any, device: Any, dtype: Any) -> Any:
    to = getattr(model, "to", None)
    if to is None:
        raise ConfigurationError(f"{type(model).__name__} cannot be moved to {device}/{dtype}")
    if isinstance(dtype, str):
        import torch

        dtype = getattr(torch, dtype)
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
