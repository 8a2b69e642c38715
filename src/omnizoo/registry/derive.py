"""The card of a model in hand: the one place a card is made true to the model it describes.

A registry card describes published weights. The model in hand may be something else: a new
head, random init, a local checkpoint, a saved fine-tune, parameters trained in place after
``create_model``. Every card a model carries is made here: :func:`derive_card` when
``create_model`` builds it, :func:`current_card` whenever its card is asked for (``get_card``,
``get_labels``, export), :func:`saved_card` for ``save_pretrained``. The rules:

* **identity**: the published name only while the weights are exactly the published file with
  its head; otherwise ``source:arch`` (no tag), and ``local:<folder name>`` for a saved model;
* **weights**: the file that holds exactly these weights, with where it is
  (``WeightsFile.origin``: published / local / saved) and how it was checked
  (``WeightsFile.verification``: the download's state, "unverified" for a user's file,
  "recorded" for a saved folder's file); None when no file does (random init, a new head,
  weights trained in memory);
* **num_params**: counted from the model (the sum of its parameters' ``numel``);
* **gflops**: dropped when the head or the stem changed;
* **metrics** (top-1/5 and the others): only on the published weights with their own head;
* **labels**: a new head of width n keeps the data config and has ``class_0 .. class_{n-1}``
  (``label_set="generic"``, named by ``omnizoo.data.labels.generic_labels``) unless labels
  are given;
* **lineage** (``ModelCard.lineage``): ``from`` (the name it was built from: published
  weights, an architecture, a file), ``start`` (published / random / local / saved / memory),
  ``new_head`` (the width of a re-initialised head), ``trained`` (parameters changed in place
  since the build), ``summary`` (one sentence), and facts such as ``base_sha256``
  (:mod:`omnizoo.values.lineage`: the :class:`~omnizoo.values.lineage.Start` a build
  records, the lineage a card implies, its summary).

"Trained in place" is told from the parameters' version counters, recorded at the build
(:func:`mark_built`): every in-place update (an optimizer step, ``load_state_dict``) bumps
them, while ``.to()``/``.eval()``/inference do not. A deep copy counts as changed: the card
then says less, never more.

>>> import torch
>>> from omnizoo.values.card import ModelCard, WeightsFile
>>> model = torch.nn.Sequential()
>>> model.add_module("fc", torch.nn.Linear(8, 3))
>>> w = WeightsFile(urls=("https://x/w.pth",), filename="w.pth")
>>> card = ModelCard(source="torchvision", arch="x", tag="V1", weights=w, num_classes=1000,
...                  label_set="imagenet-1k", classifier=("fc",), top1=70.0)
>>> head_size(model, card)
3
>>> fixed = current_card(model, card)
>>> fixed.name, fixed.num_classes, fixed.label_set, fixed.weights, fixed.top1, fixed.num_params
('torchvision:x', 3, 'generic', None, None, 27)
>>> fixed.lineage["summary"]
'weights from torchvision:x.V1, with a new 3-class head'
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

from ..loading.heads import classifier_width
from ..values.card import ModelCard, is_classification
from ..values.lineage import SAVED, Start, lineage_of
from ..values.relabel import check_label_count, strip_claims, with_labels

__all__ = [
    "count_params",
    "current_card",
    "derive_card",
    "head_size",
    "mark_built",
    "saved_card",
]

_COUNTED = "counted from the model in hand (sum of its parameters' numel)"
_VERSIONS = "_omnizoo_param_versions"


def head_size(model: Any, card: ModelCard) -> int | None:
    """The number of outputs of the model's classifier (the last of ``card.classifier`` that
    the model has; 0 for an ``Identity``), or None when it cannot be told."""
    return classifier_width(model, card.classifier)


def count_params(model: Any) -> int | None:
    """The number of parameters of ``model`` (tied ones once), or None for an object without
    ``parameters()`` (an ONNX-backed model)."""
    params = getattr(model, "parameters", None)
    if not callable(params):
        return None
    try:
        return int(sum(p.numel() for p in params()))
    except (TypeError, AttributeError):
        return None


def _versions(model: Any) -> tuple[int, ...] | None:
    params = getattr(model, "parameters", None)
    if not callable(params):
        return None
    try:
        return tuple(int(p._version) for p in params())
    except (TypeError, AttributeError):
        return None


def mark_built(model: Any) -> None:
    """Record the parameters' version counters: :func:`current_card` compares them to tell
    weights trained in place since the build."""
    versions = _versions(model)
    if versions is not None:
        with contextlib.suppress(AttributeError):  # an object without a __dict__
            model.__dict__[_VERSIONS] = versions


def _trained(model: Any) -> bool:
    before = getattr(model, _VERSIONS, None)
    return before is not None and _versions(model) != before


def _counted(card: ModelCard, model: Any) -> ModelCard:
    n = count_params(model)
    if n is None or (n == card.num_params and card.cited("num_params") == _COUNTED):
        return card
    provenance = tuple((k, v) for k, v in card.provenance if k != "num_params")
    return dataclasses.replace(
        card, num_params=n, provenance=(*provenance, ("num_params", _COUNTED))
    )


def derive_card(
    base: ModelCard,
    model: Any,
    start: Start,
    *,
    complete: bool = True,
    num_classes: int | None = None,
    labels: Sequence[str] | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    carried: ModelCard | None = None,
) -> ModelCard:
    """The card of a model ``create_model`` just built from ``base`` with weights ``start``.

    ``complete``: every tensor came from ``start``'s file as it is (the load report shows
    nothing re-initialised, adapted or missing). ``num_classes``/``labels``/``in_chans``/
    ``features_only`` are the build's arguments; ``carried`` is the card a checkpoint written
    by ``save_pretrained`` brings (its labels and preprocessing)."""
    card = base
    n = num_classes
    if n is None and start.kind in ("local", "memory") and is_classification(card.task):
        n = head_size(model, card)
        if n is None:  # a model whose head the card does not name: its own count, if any
            own = getattr(model, "num_classes", None)
            n = own if isinstance(own, int) and not isinstance(own, bool) else None
    if carried is not None and (n is None or n == carried.num_classes) and labels is None:
        card = dataclasses.replace(
            card,
            num_classes=carried.num_classes,
            label_set=carried.label_set,
            categories=carried.categories,
            label_offset=carried.label_offset,
            data=carried.data,
            notes=(*card.notes, "labels and preprocessing from the checkpoint's omnizoo card"),
        )
        n = None
    if labels is not None:
        count = card.num_classes if n is None else n
        check_label_count(labels, count)
        card = with_labels(card, count, labels, why="labels given", new_head=False)
    elif n is not None and n != card.num_classes and not features_only:
        why = f"num_classes={n}" if num_classes is not None else f"the checkpoint's head has {n}"
        card = with_labels(card, n, why=why, new_head=False)
    stem = in_chans is not None and in_chans != card.data.input_size[0]
    if stem:
        card = dataclasses.replace(card, data=_data_for_channels(card, int(in_chans or 0)))
    if start.kind == "local":
        card = dataclasses.replace(card, notes=(*card.notes, "weights from a local checkpoint"))
    fresh_head = start.kind in ("published", "random") and card.num_classes != base.num_classes
    fresh_head = fresh_head or (not complete and num_classes is not None)
    if start.kind == "published" and complete and not (fresh_head or stem or features_only):
        return _counted(dataclasses.replace(card, weights=start.file), model)
    if start.kind == "saved":
        lineage = dict(base.lineage) or {"from": start.name, "start": "saved"}
    else:
        lineage = {"from": start.name, "start": start.kind, **start.facts}
    if fresh_head:
        lineage["new_head"] = int(card.num_classes)
    if stem:
        lineage["in_chans"] = int(in_chans or 0)
    if features_only:
        lineage["features_only"] = True
    whole = complete and start.kind != "published"  # the file holds exactly this model
    return _counted(strip_claims(card, start.file if whole else None, lineage), model)


def _data_for_channels(card: ModelCard, c: int) -> Any:
    d = card.data
    mean = d.mean if len(d.mean) in (1, c) else (sum(d.mean) / len(d.mean),)
    std = d.std if len(d.std) in (1, c) else (sum(d.std) / len(d.std),)
    return d.replace(input_size=(c, *d.input_size[1:]), mean=mean, std=std)


def current_card(model: Any, card: ModelCard) -> ModelCard:
    """``card`` made true to ``model`` as it is now: a classifier of another width than the
    card's (replaced by hand) gets unnamed classes and a ``new_head`` lineage; parameters
    trained in place since the build drop the weights file, the tag and the metrics
    (lineage ``trained``); ``num_params`` is counted."""
    if is_classification(card.task):
        n = head_size(model, card)
        if n is not None and n != card.num_classes:
            card = with_labels(card, n, why="the classifier was replaced after the card was made")
    if _trained(model) and (card.weights is not None or not card.lineage.get("trained")):
        if card.weights is not None and card.weights.origin == SAVED:
            # a saved model trained further: its parent is the saved one
            lineage: dict[str, Any] = {
                "from": card.name,
                "start": "saved",
                "parent": dict(card.lineage),
            }
        else:
            lineage = lineage_of(card)
        lineage["trained"] = True
        card = strip_claims(card, None, lineage)
    return _counted(card, model)


def saved_card(card: ModelCard, model: Any, name: str) -> ModelCard:
    """The card ``save_pretrained`` writes for ``model`` (whose card is ``card``) in a folder
    called ``name``: identity ``local:<name>``, the lineage of the model in hand, no published
    metrics. Its weights file (with its sha256) is added by
    :func:`omnizoo.values.relabel.with_saved_file`."""
    now = current_card(model, card)
    stripped = strip_claims(now, None, lineage_of(now))
    return dataclasses.replace(stripped, source="local", arch=name or "saved")
