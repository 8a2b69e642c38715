"""``resolve_data_config``: the DataConfig for a name, card, model or config, with overrides.

>>> from omnizoo.values.data_config import DataConfig
>>> resolve_data_config(DataConfig(), input_size=(3, 256, 256)).crop_size
(256, 256)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from ..values.data_config import DataConfig, data_config_from_timm

__all__ = ["card_of", "resolve_data_config"]


def card_of(obj: Any) -> Any:
    """The :class:`~omnizoo.values.card.ModelCard` behind a name, card or omnizoo model.

    Returns None for objects that carry no card (a plain module, a DataConfig).
    """
    from ..values.card import ModelCard

    if isinstance(obj, ModelCard):
        return obj
    if isinstance(obj, (str, os.PathLike)):  # a name, or a folder save_pretrained wrote
        from ..registry.registry import get_card

        return get_card(obj)
    card = getattr(obj, "omnizoo_card", None)
    if isinstance(card, ModelCard):
        from ..registry.derive import current_card

        return current_card(obj, card)  # a head replaced by hand: no stale label set
    return None


def resolve_data_config(name_or_model: Any, **overrides: Any) -> DataConfig:
    """The input a set of weights expects, as a :class:`DataConfig`.

    ``name_or_model`` is a model name (``"resnet50"``, ``"timm:convnext_tiny.in12k_ft_in1k"``),
    a :class:`~omnizoo.values.card.ModelCard`, a model made by ``create_model`` (it carries
    ``.omnizoo_card``), a timm model (its ``pretrained_cfg``), a DataConfig, or a dict of
    DataConfig fields.

    ``overrides`` are DataConfig fields (``input_size`` may be an int), plus:

    * ``use_test_size=True``: evaluate at the larger ``test_input_size`` the source publishes
      (timm), with its ``test_crop_pct`` where the card records one;
    * ``img_size``: an int or (h, w), shorthand for ``input_size``.

    Changing ``input_size`` on a torchvision-style config (explicit ``resize_size``) keeps the
    resize-to-crop ratio: ``resize_size`` is dropped and ``crop_pct`` set to crop/resize, so a
    256→224 config asked for 288 resizes to 329 (timm's rule), unless ``resize_size`` is given.

    >>> from omnizoo import resolve_data_config
    >>> resolve_data_config("torchvision:resnet18").input_size
    (3, 224, 224)
    >>> resolve_data_config({"input_size": (3, 224, 224)}, img_size=288).input_size
    (3, 288, 288)

    Raises:
        UnknownModelError: a name no model has (see :func:`omnizoo.get_card`).
        ConfigurationError: an object with no card (and no timm ``pretrained_cfg``), or an
            override that is not a valid DataConfig field or value.
    """
    config, card = _base(name_or_model)
    overrides = dict(overrides)
    if overrides.pop("use_test_size", False) and config.test_input_size is not None:
        overrides.setdefault("input_size", config.test_input_size)
        extra = getattr(card, "extra", None) or {}
        test_crop = extra.get("test_crop_pct") if isinstance(extra, Mapping) else None
        if test_crop is not None:
            overrides.setdefault("crop_pct", float(test_crop))
    if "img_size" in overrides:
        size = overrides.pop("img_size")
        if size is not None:
            if isinstance(size, int):
                size = (size, size)
            overrides.setdefault("input_size", (config.input_size[0], *tuple(size)[-2:]))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return config
    if "input_size" in overrides and isinstance(overrides["input_size"], int):
        n = overrides["input_size"]
        overrides["input_size"] = (config.input_size[0], n, n)
    new_size = overrides.get("input_size")
    if (
        new_size is not None
        and config.resize_size is not None
        and "resize_size" not in overrides
        and tuple(new_size) != tuple(config.input_size)
    ):
        crop = min(config.crop_size)
        overrides["resize_size"] = None
        overrides.setdefault("crop_pct", crop / config.resize_size)
    try:
        return config.replace(**overrides)
    except TypeError as exc:  # pragma: no cover - replace() validates field names already
        raise ConfigurationError(str(exc)) from None


def _base(obj: Any) -> tuple[DataConfig, Any]:
    if isinstance(obj, DataConfig):
        return obj, None
    if isinstance(obj, Mapping):
        return DataConfig.from_dict(obj), None
    card = card_of(obj)
    if card is not None:
        return card.data, card
    cfg = getattr(obj, "omnizoo_data_config", None)
    if isinstance(cfg, DataConfig):
        return cfg, None
    pretrained_cfg = getattr(obj, "pretrained_cfg", None)
    if isinstance(pretrained_cfg, Mapping) and "input_size" in pretrained_cfg:
        return data_config_from_timm(pretrained_cfg), None
    raise ConfigurationError(
        f"cannot tell what input a {type(obj).__name__} expects: it has no omnizoo card. "
        "Pass a model name, a model from omnizoo.create_model, or a DataConfig "
        "(e.g. Predictor(model, data_config=resolve_data_config('resnet50')))"
    )


def scale_for(config: DataConfig) -> int:
    """The shorter-side resize of a square centre-crop config (for messages)."""
    size = config.scale_size
    return size if isinstance(size, int) else math.floor(min(size))
