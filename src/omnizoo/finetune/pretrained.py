"""``save_pretrained``: a fine-tuned model saved with its card, so that ``create_model(folder)``
rebuilds it exactly, with its labels and preprocessing.

>>> import tempfile, torch, omnizoo
>>> model = omnizoo.create_model("torchvision:resnet18", num_classes=3,
...                              labels=["cat", "dog", "fox"])
>>> folder = save_pretrained(model, tempfile.mkdtemp())
>>> sorted(p.name for p in folder.iterdir())
['card.json', 'model.safetensors']
>>> again = omnizoo.create_model(folder)
>>> omnizoo.get_labels(again)
['cat', 'dog', 'fox']
>>> torch.equal(again.fc.weight, model.fc.weight)
True

The folder layout and ``card.json`` are described in :mod:`omnizoo.saved.folder`. Before
anything is written, the model's architecture is rebuilt on the meta device from what the card
records and compared key by key with the model's state dict: a model that ``create_model`` could
not rebuild (a head replaced by a ``Sequential`` by hand, a layer added) is refused with the
keys that differ, instead of being saved and failing to load later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, UnsupportedError
from ..registry.derive import saved_card
from ..saved.writer import write_folder
from ..values.card import ModelCard
from ..values.relabel import with_labels
from .heads import unwrap_model

if TYPE_CHECKING:
    from torch import nn

__all__ = ["save_pretrained"]


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` to ``folder`` as ``model.safetensors`` + ``card.json``; returns the
    folder (created if needed; other files in it are left alone).

    ``model`` must come from :func:`omnizoo.create_model` (it carries the card and the build
    arguments; DDP/``torch.compile`` wrappers are unwrapped). ``labels`` names the classes
    (else the card's labels are kept: given to ``create_model``/``reset_classifier``, or
    ``class_0 .. class_{n-1}``). ``card.json`` records the architecture and source, the head
    size, the labels, the DataConfig, the base weights' name and sha256 and the omnizoo
    version. ``create_model(folder)`` (or ``"local:<folder>"``) rebuilds the model strictly.

    >>> import omnizoo
    >>> model = omnizoo.create_model("timm:resnet18", num_classes=3)        # doctest: +SKIP
    >>> omnizoo.save_pretrained(model, "runs/ft", labels=["a", "b", "c"])  # doctest: +SKIP
    PosixPath('runs/ft')

    Raises:
        ConfigurationError: a model not made by ``create_model``, or ``labels`` of another
            count than the classes.
        UnsupportedError: an ONNX model, a tensor that cannot be written (meta, quantized,
            not a tensor), or build arguments card.json cannot hold.
    """
    import torch

    inner = unwrap_model(model)
    if not isinstance(inner, torch.nn.Module):
        raise UnsupportedError(
            f"{type(inner).__name__} is not a torch nn.Module; an ONNX model is saved by "
            "copying its .onnx file"
        )
    build = getattr(inner, "omnizoo_build", None)
    if not isinstance(build, dict) or not isinstance(build.get("base"), ModelCard):
        raise ConfigurationError(
            f"save_pretrained needs a model made by omnizoo.create_model (this "
            f"{type(inner).__name__} does not say how it was built); for another model save "
            "its state_dict() and load it with create_model(name, checkpoint_path=...)"
        )
    target = Path(folder).expanduser()
    own = getattr(inner, "omnizoo_card", None)
    # the card of the model as it is now (a head replaced by hand, weights trained in place),
    # named for the folder: a saved fine-tune is not the model it started from
    card = saved_card(own if isinstance(own, ModelCard) else build["base"], inner, _name(target))
    if labels is not None:
        if isinstance(labels, str) or len(labels) != card.num_classes:
            raise ConfigurationError(
                f"labels: {len(labels)} name(s) for {card.num_classes} classes; one per class"
            )
        card = with_labels(
            card, card.num_classes, labels, why="labels given to save_pretrained", new_head=False
        )
    base: ModelCard = build["base"]
    kwargs = dict(build.get("kwargs") or {})
    _json_ready(kwargs, base.name)
    state = _tensors(inner)
    dtype = _dtype_of(state)
    features_only = bool(build.get("features_only"))
    record = {
        "num_classes": None if features_only else int(card.num_classes),
        "in_chans": build.get("in_chans"),
        "features_only": features_only,
        "out_indices": _plain(build.get("out_indices")),
        "kwargs": kwargs,
        "dtype": dtype,
    }
    _check_rebuildable(base, record, state)
    write_folder(target, state, card, base, record, _labels(card), build.get("lineage"))
    return target


def _name(folder: Path) -> str:
    """The name a saved model goes by (``local:<name>``): its folder's name."""
    return folder.resolve().name or "saved"


def _labels(card: ModelCard) -> list[str] | None:
    from ..data.labels import get_labels

    try:
        return get_labels(card)
    except Exception:  # a label set that cannot be loaded here: the card still names it
        return None


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _json_ready(kwargs: dict[str, Any], name: str) -> None:
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError) as exc:
        raise UnsupportedError(
            f"{name} was built with arguments that cannot be written to card.json "
            f"({sorted(kwargs)}: {exc}); build it with JSON values (numbers, strings, lists) "
            "to save it with save_pretrained"
        ) from exc


def _tensors(model: nn.Module) -> dict[str, Any]:
    """The state dict as contiguous CPU tensors, each with storage of its own (safetensors
    refuses shared storage; a tied pair is written twice and stays equal on load)."""
    import torch

    out: dict[str, Any] = {}
    seen: dict[tuple[int, Any], str] = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise UnsupportedError(
                f"{key} is a {type(value).__name__}, not a tensor (a quantized or scripted "
                "module?); save_pretrained writes plain tensors only"
            )
        if value.is_meta:
            raise UnsupportedError(f"{key} is on the meta device: load weights before saving")
        if value.is_quantized:
            raise UnsupportedError(f"{key} is a quantized tensor; save_pretrained cannot write it")
        tensor = value.detach().to("cpu").contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and ident in seen:
            tensor = tensor.clone()
        elif tensor.numel():
            seen[ident] = key
        out[key] = tensor
    return out


def _dtype_of(state: dict[str, Any]) -> str:
    for tensor in state.values():
        if tensor.is_floating_point():
            return str(tensor.dtype).removeprefix("torch.")
    return "float32"


def _check_rebuildable(base: ModelCard, record: dict[str, Any], state: dict[str, Any]) -> None:
    """Build the recorded architecture on the meta device and compare it with ``state``."""
    from ..loading.request import CreateRequest
    from ..registry.adapters import get_adapter

    request = CreateRequest(
        num_classes=record["num_classes"],
        in_chans=record["in_chans"],
        features_only=record["features_only"],
        out_indices=tuple(record["out_indices"])
        if isinstance(record["out_indices"], list)
        else record["out_indices"],
        device="meta",
        kwargs=dict(record["kwargs"]),
    )
    try:
        meta, _ = get_adapter(base.source).create(base, request)
    except UnsupportedError:
        return  # no meta build for this model (e.g. torchvision features_only): checked on load
    want = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want == have:
        return
    extra = sorted(set(have) - set(want))
    missing = sorted(set(want) - set(have))
    shapes = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    parts = [
        f"{label}: {', '.join(keys[:5])}" + (f" (+{len(keys) - 5})" if len(keys) > 5 else "")
        for label, keys in (("not in the architecture", extra), ("missing", missing))
        if keys
    ]
    parts += [f"{k}: model {have[k]} vs architecture {want[k]}" for k in shapes[:5]]
    raise UnsupportedError(
        f"{base.name} rebuilt with num_classes={record['num_classes']} does not have this "
        f"model's layers ({'; '.join(parts)}), so create_model(folder) could not load it: a "
        "layer was replaced or added by hand. Use omnizoo.reset_classifier to change the head, "
        "or save the state_dict() yourself"
    )
