"""Helpers shared by the cadene / efficientnet / onnx source tests."""

from __future__ import annotations

import re
from typing import Any

from omnizoo.values.card import TASKS, WEIGHT_FORMATS, ModelCard
from omnizoo.values.data_config import DataConfig

_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_card(card: ModelCard) -> None:
    """The schema check: the registry's validate_card when it exists, plus our own asserts."""
    from omnizoo.registry.validate import validate_card

    validate_card(card)
    assert card.source in ("cadene", "efficientnet", "onnx")
    assert _NAME_PART.match(card.arch), card.arch
    assert card.tag is None or re.match(r"^[A-Za-z0-9_]+$", card.tag), card.tag
    assert card.task in TASKS
    assert isinstance(card.data, DataConfig)
    assert card.num_classes > 0
    assert card.output in ("logits", "probabilities")
    assert card.label_offset in (0, 1)
    if card.label_offset:
        assert card.num_classes == 1001
    if card.weights is None:
        assert card.tag is None and card.is_default  # an architecture-only card
    else:
        w = card.weights
        assert card.tag is not None
        assert w.urls and all(u.startswith(("http://", "https://")) for u in w.urls)
        assert w.format in WEIGHT_FORMATS
        assert w.filename == w.urls[0].rsplit("/", 1)[-1]
        assert w.sha256 is not None or w.hash_prefix is not None, card.name
        if w.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", w.sha256)
        if w.hash_prefix is not None:
            assert re.fullmatch(r"[0-9a-f]{8,10}", w.hash_prefix)
            assert f"-{w.hash_prefix}." in w.filename
    # JSON round trip (the on-disk index)
    import json

    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


def one_default_per_arch(cards: list[ModelCard]) -> None:
    from omnizoo.registry.validate import validate_cards

    validate_cards(cards)
    archs: dict[str, list[ModelCard]] = {}
    for c in cards:
        archs.setdefault(c.arch, []).append(c)
    for arch, group in archs.items():
        with_weights = [c for c in group if c.weights is not None]
        if with_weights:
            assert sum(c.is_default for c in with_weights) == 1, arch
            assert all(c.tag is not None for c in group), arch
        else:
            assert len(group) == 1 and group[0].tag is None, arch
    names = [c.name for c in cards]
    assert len(names) == len(set(names))


def random_state_dict(shapes: dict[str, Any]) -> dict[str, Any]:
    """Finite random tensors shaped like ``shapes`` (e.g. a meta-device state dict), scaled so
    activations stay O(1), with random BatchNorm statistics; no ``num_batches_tracked``."""
    import math

    import torch

    g = torch.Generator().manual_seed(0)
    out = {}
    for k, v in shapes.items():
        if k.endswith("num_batches_tracked"):
            continue
        shape = tuple(v.shape)
        if k.endswith("running_mean"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif k.endswith("running_var"):
            t = 1 + 0.1 * torch.rand(shape, generator=g)
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif k.endswith("weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.1 * torch.randn(shape, generator=g)
        out[k] = t.to(v.dtype) if v.dtype.is_floating_point else t
    return out


def forget_timm_model(name: str) -> None:
    """Remove a model a test registered with timm from timm's registry (timm's own
    ``_clear_model_entries`` where it exists; timm < 1.0.12 lacks it: the same tables by hand)."""
    from timm.models import _registry as reg

    clear = getattr(reg, "_clear_model_entries", None)
    if clear is not None:
        clear(name)
    else:
        module = reg._model_to_module.pop(name, None)
        if module is not None:
            reg._module_to_models.get(module, set()).discard(name)
        for key in [*reg._model_with_tags.pop(name, []), name]:
            reg._model_pretrained_cfgs.pop(key, None)
            reg._model_has_pretrained.discard(key)
        reg._model_default_cfgs.pop(name, None)
    reg._model_entrypoints.pop(name, None)
