"""Schema checks for cards, shared by every source's tests.

>>> from omnizoo.values.card import ModelCard
>>> card_problems(ModelCard(source="timm", arch="resnet50"))
[]
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import ConfigurationError
from ..sources.table import adapter_path
from ..values.card import OUTPUTS, TASKS, WEIGHT_FORMATS, ModelCard
from ..values.data_config import DataConfig
from ..values.names import parse_name, split_body

__all__ = ["card_problems", "validate_card", "validate_cards"]

_HEX = re.compile(r"^[0-9a-f]+$")


def card_problems(card: ModelCard) -> list[str]:
    """Everything wrong with one card (empty list: valid)."""
    p: list[str] = []
    if adapter_path(card.source) is None:
        p.append(f"unknown source {card.source!r}")
    if not card.arch or ":" in card.arch:
        p.append(f"bad arch {card.arch!r}")
    try:
        parsed = parse_name(card.name)
        if parsed.source != card.source or (card.arch, card.tag) not in split_body(parsed.body):
            p.append(f"name {card.name!r} does not parse back to ({card.arch!r}, {card.tag!r})")
    except Exception as exc:
        p.append(f"name {card.name!r} does not parse: {exc}")
    if card.tag is not None and (not card.tag or ":" in card.tag):
        p.append(f"bad tag {card.tag!r}")
    if card.task not in TASKS:
        p.append(f"task {card.task!r} not in {TASKS}")
    w = card.weights
    if (
        card.tag is not None
        and w is None
        and not any("no pretrained weights" in n for n in card.notes)
    ):
        # timm's ``.untrained`` tags: a named configuration without weights, which says so
        p.append("a tagged card without weights must say so in its notes")
    if w is not None:
        if not w.urls or not all(
            isinstance(u, str) and re.match(r"^(https?|file)://", u) for u in w.urls
        ):
            p.append(f"weights urls must be http(s)/file URLs: {w.urls!r}")
        if not w.filename:
            p.append("weights filename is empty")
        if w.format not in WEIGHT_FORMATS:
            p.append(f"weights format {w.format!r} not in {WEIGHT_FORMATS}")
        if w.sha256 is not None and not (len(w.sha256) == 64 and _HEX.match(w.sha256)):
            p.append(f"sha256 {w.sha256!r} is not 64 hex digits")
        if w.hash_prefix is not None and not (
            6 <= len(w.hash_prefix) <= 64 and _HEX.match(w.hash_prefix)
        ):
            p.append(f"hash_prefix {w.hash_prefix!r} is not 6-64 hex digits")
        if w.size is not None and w.size <= 0:
            p.append(f"size {w.size!r} must be positive")
    if not isinstance(card.num_classes, int) or card.num_classes < 0:
        p.append(f"num_classes {card.num_classes!r} must be an int >= 0")
    if card.label_offset not in (0, 1):
        p.append(f"label_offset {card.label_offset!r} must be 0 or 1")
    if (
        card.categories is not None
        and card.num_classes
        and (
            len(card.categories) + card.label_offset not in (card.num_classes, card.num_classes + 1)
        )
    ):
        p.append(f"{len(card.categories)} categories for num_classes={card.num_classes}")
    if not isinstance(card.data, DataConfig):
        p.append("data is not a DataConfig")
    if card.output not in OUTPUTS:
        p.append(f"output {card.output!r} must be 'logits' or 'probabilities'")
    for label, value in (("top1", card.top1), ("top5", card.top5)):
        if value is not None and not 0 <= value <= 100:
            p.append(f"{label}={value} outside [0, 100]")
    if card.top1 is not None and card.top5 is not None and card.top5 < card.top1:
        p.append("top5 < top1")
    if (card.top1 is not None) and not card.metrics_dataset:
        p.append("metrics without metrics_dataset")
    if card.num_params is not None and card.num_params <= 0:
        p.append(f"num_params {card.num_params} must be positive")
    if card.gflops is not None and card.gflops < 0:
        p.append(f"gflops {card.gflops} must be >= 0")
    try:
        ModelCard.from_dict(card.to_dict())
        if ModelCard.from_dict(card.to_dict()) != card:
            p.append("to_dict/from_dict does not round-trip")
    except Exception as exc:
        p.append(f"to_dict/from_dict fails: {exc}")
    return p


def validate_card(card: ModelCard) -> None:
    """Raise :class:`ConfigurationError` listing every problem of ``card``."""
    problems = card_problems(card)
    if problems:
        raise ConfigurationError(f"invalid card {card.name}: " + "; ".join(problems))


def validate_cards(cards: Iterable[ModelCard]) -> None:
    """Each card valid, names unique, and exactly one default card per architecture."""
    cards = list(cards)
    problems: list[str] = []
    seen: set[str] = set()
    defaults: dict[tuple[str, str], int] = {}
    for card in cards:
        problems.extend(f"{card.name}: {x}" for x in card_problems(card))
        if card.name in seen:
            problems.append(f"duplicate card {card.name}")
        seen.add(card.name)
        defaults.setdefault((card.source, card.arch), 0)
        if card.is_default:
            defaults[(card.source, card.arch)] += 1
    problems.extend(
        f"{s}:{a} has {n} default cards (want 1)" for (s, a), n in defaults.items() if n != 1
    )
    if problems:
        raise ConfigurationError(f"{len(problems)} card problem(s): " + "; ".join(problems[:20]))
