"""Where a model's weights came from: the :class:`Start` a build records and the lineage a
derived card carries (``ModelCard.lineage``), with its one-sentence summary.

A :class:`Start` says what the weights were when the model was built (published, random,
local, saved, memory), the name the lineage says it is ``from`` and the file that holds them;
:func:`lineage_of` is the lineage a card has or implies, :func:`summary` its sentence. The
cards themselves are derived in :mod:`omnizoo.registry.derive`.

>>> summary({"from": "torchvision:resnet18.IMAGENET1K_V1", "start": "published", "new_head": 3})
'weights from torchvision:resnet18.IMAGENET1K_V1, with a new 3-class head'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .card import ModelCard, WeightsFile, format_of_name

__all__ = ["LOCAL", "PUBLISHED", "RECORDED", "SAVED", "Start", "lineage_of", "summary"]

#: ``WeightsFile.origin`` values on derived cards.
PUBLISHED, LOCAL, SAVED = "published", "local", "saved"
#: ``WeightsFile.verification`` of a saved folder's file: it matched the sha256 save_pretrained
#: wrote beside it (damage is caught, a forger who edits both files is not).
RECORDED = "recorded"
_UNVERIFIED = "unverified"  # omnizoo.weights.verification.UNVERIFIED: a user's own file


@dataclass(frozen=True)
class Start:
    """What a model's weights were when it was built: ``kind`` (published, random, local,
    saved, memory), the name its lineage says it is ``from``, the file that holds them (None:
    none does) and facts for the lineage (``base_sha256``, ``checkpoint``)."""

    kind: str
    name: str
    file: WeightsFile | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def published(cls, card: ModelCard, sha256: str, verification: str) -> Start:
        """The card's own weights file, downloaded and checked (``verification``)."""
        if card.weights is None:
            raise ValueError(f"{card.name} has no weights file")
        file = dataclasses.replace(
            card.weights, sha256=sha256, origin=PUBLISHED, verification=verification
        )
        return cls("published", card.name, file, {"base_sha256": sha256})

    @classmethod
    def local(cls, path: str | os.PathLike[str]) -> Start:
        """A file the user gave (``checkpoint_path``): no upstream URL, never verified."""
        p = Path(path)
        try:
            size: int | None = p.stat().st_size
        except OSError:
            size = None
        file = WeightsFile(
            urls=(),
            filename=p.name,
            size=size,
            format=format_of_name(p.name),
            origin=LOCAL,
            verification=_UNVERIFIED,
        )
        return cls("local", p.name, file, {"checkpoint": p.name})

    @classmethod
    def saved(cls, card: ModelCard, filename: str, sha256: str | None, size: int | None) -> Start:
        """The weights file of a ``save_pretrained`` folder whose card is ``card``."""
        file = WeightsFile(
            urls=(),
            filename=filename,
            sha256=sha256,
            size=size,
            format="safetensors",
            origin=SAVED,
            verification=RECORDED if sha256 else _UNVERIFIED,
        )
        return cls("saved", card.name, file)

    @classmethod
    def random(cls, card: ModelCard) -> Start:
        """No weights loaded: the architecture's random init."""
        return cls("random", f"{card.source}:{card.arch}")

    @classmethod
    def memory(cls, card: ModelCard) -> Start:
        """Weights handed over in memory (a state dict): no file holds them."""
        return cls("memory", f"{card.source}:{card.arch}")


def lineage_of(card: ModelCard) -> dict[str, Any]:
    """``card.lineage``, or for a registry card (empty lineage) the one it implies."""
    if card.lineage:
        return dict(card.lineage)
    w = card.weights
    if w is None:
        return {"from": f"{card.source}:{card.arch}", "start": "random"}
    facts = {"base_sha256": w.sha256} if w.sha256 else {}
    return {"from": card.name, "start": "published", **facts}


def summary(lineage: Mapping[str, Any]) -> str:
    start, src = lineage.get("start"), lineage.get("from")
    trained = bool(lineage.get("trained"))
    if start == "random":
        text = f"{'trained from ' if trained else ''}random init ({src} architecture)"
    elif start == "local":
        text = (
            f"fine-tuned from the local file {src}"
            if trained
            else f"weights from the local file {src} (not verified)"
        )
    elif start == "memory":
        text = f"{'trained from' if trained else 'weights from'} an in-memory state dict ({src})"
    else:  # published, saved
        text = f"fine-tuned from {src}" if trained else f"weights from {src}"
    head = lineage.get("new_head")
    if isinstance(head, int):
        new = "" if start == "random" else "new "
        text += f", with a {new}{head}-class head" if head else ", with its classifier removed"
    if lineage.get("in_chans"):
        text += f", stem adapted to {lineage['in_chans']} channels"
    if lineage.get("features_only"):
        text += ", feature maps only"
    return text
