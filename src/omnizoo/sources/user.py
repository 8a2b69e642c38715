"""The ``user`` source: a user's own models, registered in this process with
:func:`register_model`, with cards like any zoo model's (weights URL + sha256 or a local file,
labels, DataConfig), so that ``create_model``, ``list_models``, ``get_card``, the Predictor,
export and the CLI (``omnizoo --import mymodels ...``) treat them alike.

>>> import torch
>>> def tiny(num_classes: int = 3, in_chans: int = 3) -> torch.nn.Module:
...     return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_chans * 4, num_classes))
>>> register_model("tiny_doc", tiny, num_classes=3, labels=["cat", "dog", "fox"],
...                data={"input_size": (3, 2, 2)})
'user:tiny_doc'
>>> import omnizoo
>>> omnizoo.list_models(source="user")
['user:tiny_doc']
>>> omnizoo.get_labels("tiny_doc")
['cat', 'dog', 'fox']
>>> omnizoo.create_model("tiny_doc", num_classes=5)(torch.zeros(1, 3, 2, 2)).shape
torch.Size([1, 5])
>>> unregister_model("tiny_doc")

Registrations live in the process that made them (as timm's ``@register_model`` ones do); a
package makes them at import time, and ``omnizoo --import PACKAGE ...`` imports it for the CLI.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, UnknownModelError, UnsupportedError
from ..loading.build import Upstream, build_model
from ..loading.fit import FitPlan, fit_state_dict
from ..loading.heads import find_last_layer, replace_classifier
from ..loading.meta import materialize_, meta_params
from ..loading.report import LoadReport
from ..loading.request import CreateRequest
from ..values.card import ModelCard
from ..values.data_config import DataConfig
from .base import SourceAdapter
from .table import USER_SOURCE
from .user_cards import arch_of, base_card, default_num_classes, weight_cards

__all__ = ["UserSource", "register_model", "registered_models", "unregister_model"]


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., Any]
    cards: tuple[ModelCard, ...]


_lock = threading.Lock()
_entries: dict[str, _Entry] = {}
_cards: tuple[ModelCard, ...] = ()  # every registered card; a new tuple on every change


def register_model(
    name: str,
    builder: Callable[..., Any],
    weights: Sequence[Mapping[str, Any]] = (),
    *,
    num_classes: int | None = None,
    labels: Sequence[str] | None = None,
    label_set: str | None = None,
    data: DataConfig | Mapping[str, Any] | None = None,
    task: str = "classification",
    classifier: str | Sequence[str] | None = None,
    first_conv: str | None = None,
    license: str | None = None,
    paper: str | None = None,
    origin: str | None = None,
    notes: Sequence[str] = (),
    replace: bool = False,
) -> str:
    """Register a model of your own as ``user:<name>``; returns that name.

    ``builder(num_classes=..., in_chans=..., **kwargs)`` returns the ``nn.Module`` (it is
    passed only the keywords its signature accepts; without ``num_classes`` a head of another
    size is made by replacing the ``classifier`` layer). ``num_classes``: the head size the
    builder makes by default (when not given: the default of its ``num_classes`` parameter,
    else 1000). ``weights``: one mapping per set of
    weights, each a card of its own (``user:<name>.<tag>``):

    * ``tag`` (required), and ``url`` (or ``urls``, a mirror chain) with ``sha256`` (verified
      like any download; without it, a torch.hub file-name hash prefix, else the file is
      ``unverified``), or ``file``: a local checkpoint (read where it is, checked the same way);
    * optional ``labels``, ``label_set``, ``label_offset``, ``num_classes``, ``data`` (a
      :class:`~omnizoo.values.data_config.DataConfig` or a dict of its fields), ``default`` (the
      weights a bare name resolves to; else the first), ``size``, ``format``, ``top1``,
      ``top5``, ``metrics_dataset``, ``license``, ``notes``: each overrides the model-level
      argument of the same name.

    ``classifier``/``first_conv``: the state-dict prefixes of the head and the stem (as timm's
    ``pretrained_cfg`` names them), for ``num_classes``/``in_chans`` with pretrained weights;
    the head is found (the last Linear/Conv2d) when not given. Registering a name again raises
    :class:`~omnizoo.errors.ConfigurationError` unless ``replace=True``.

    >>> import omnizoo, torch
    >>> def tiny(num_classes: int = 10) -> torch.nn.Module:
    ...     return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, num_classes))
    >>> omnizoo.register_model("tiny", tiny)                # doctest: +SKIP
    'user:tiny'

    Raises:
        ConfigurationError: ``builder`` is not callable, the name is registered already
            (without ``replace=True``), the name is not a plain string, or a weights entry
            or card field is invalid.
    """
    arch = arch_of(name)
    if not callable(builder):
        raise ConfigurationError(f"register_model({name!r}): builder must be callable")
    base = base_card(
        arch,
        num_classes=default_num_classes(builder) if num_classes is None else num_classes,
        labels=labels,
        label_set=label_set,
        data=data,
        task=task,
        classifier=classifier,
        first_conv=first_conv,
        license=license,
        paper=paper,
        origin=origin,
        notes=notes,
    )
    cards = weight_cards(base, weights)
    global _cards
    with _lock:
        if arch in _entries and not replace:
            raise ConfigurationError(
                f"user:{arch} is already registered; pass replace=True to register it again"
            )
        _entries[arch] = _Entry(builder, cards)
        _cards = tuple(c for e in _entries.values() for c in e.cards)
    return f"{USER_SOURCE}:{arch}"


def unregister_model(name: str) -> None:
    """Forget a registered model (``name`` with or without ``user:``)."""
    arch = arch_of(name)
    global _cards
    with _lock:
        if _entries.pop(arch, None) is None:
            raise UnknownModelError(
                f"{USER_SOURCE}:{arch}", message=f"user:{arch} is not registered"
            )
        _cards = tuple(c for e in _entries.values() for c in e.cards)


def registered_models() -> list[str]:
    """The names registered in this process, ``user:<name>``."""
    with _lock:
        return [f"{USER_SOURCE}:{arch}" for arch in _entries]


class UserSource(SourceAdapter):
    """The adapter of the models :func:`register_model` registered in this process."""

    name = USER_SOURCE
    distribution = "omnizoo"
    persistent = False
    countable = False  # cards made in this process, no index to count for

    def index_key(self) -> str:
        return f"{self.name}-session"

    def build_cards(self) -> list[ModelCard]:
        return []  # every card is a session card

    def session_cards(self) -> tuple[ModelCard, ...]:
        return _cards

    def check_request(self, card: ModelCard, request: CreateRequest) -> None:
        if request.features_only:
            raise UnsupportedError(f"{card.name}: features_only is not supported for user models")
        if request.in_chans is not None and request.has_weights and not card.first_conv:
            raise UnsupportedError(
                f"{card.name}: in_chans with weights needs the stem's name: register the model "
                "with first_conv='...' (e.g. 'conv1')"
            )

    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        self.check_request(card, request)
        with _lock:
            entry = _entries.get(card.arch)
        if entry is None:
            raise UnknownModelError(
                card.name,
                message=f"{card.name} is not registered in this process (register_model runs in "
                "the process that uses it; import the module that registers it)",
            )
        return build_model(card, request, _UserUpstream(card, request, entry))


class _UserUpstream(Upstream):
    """The registered builder (passed only the keywords it accepts); a head of another size
    by rebuilding with ``num_classes`` when it takes it, else by replacing the head layer."""

    def __init__(self, card: ModelCard, request: CreateRequest, entry: _Entry) -> None:
        super().__init__(card, request)
        self.entry = entry
        self.template: Any = None  # the model built with the card's head (weights branch)
        self.heads: tuple[str, ...] = ()

    def build(self, num_classes: int | None) -> Any:
        return _build(self.entry, self.card, num_classes, self.request)

    def classifier(self) -> tuple[str, ...]:
        if not self.heads:
            with meta_params():
                self.template = self.build(None)
            self.heads = tuple(self.card.classifier or find_last_layer(self.template))
        return self.heads

    def load(
        self, state_dict: dict[str, Any], plan: FitPlan, report: LoadReport
    ) -> tuple[Any, LoadReport]:
        model, heads, n = self.template, self.classifier(), plan.num_classes
        reinit: list[str] = []
        if n is not None and n != self.card.num_classes:
            with meta_params():
                if _accepts(self.entry.builder, "num_classes"):
                    model = self.build(n)
                else:
                    reinit = replace_classifier(model, heads, n)
        return model, fit_state_dict(model, state_dict, plan.replace(reinitialize=reinit), report)


def _accepts(builder: Callable[..., Any], keyword: str) -> bool:
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return True
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _build(entry: _Entry, card: ModelCard, num_classes: int | None, request: CreateRequest) -> Any:
    """The builder's model, with ``num_classes`` (None: the card's) and ``in_chans``."""
    n = card.num_classes if num_classes is None else num_classes
    kwargs = dict(request.kwargs)
    if _accepts(entry.builder, "num_classes"):
        kwargs["num_classes"] = n
    if request.in_chans is not None:
        if not _accepts(entry.builder, "in_chans"):
            raise UnsupportedError(f"{card.name}: its builder takes no in_chans argument")
        kwargs["in_chans"] = request.in_chans
    try:
        model = entry.builder(**kwargs)
    except TypeError as exc:
        raise ConfigurationError(
            f"{card.name}: the builder refused {sorted(kwargs)}: {exc}"
        ) from exc
    if n != card.num_classes and "num_classes" not in kwargs:
        with meta_params():
            replace_classifier(model, card.classifier or find_last_layer(model), n)
        materialize_(model)
    return model
