"""The timm :class:`~omnizoo.sources.base.SourceAdapter`."""

from __future__ import annotations

import sys
from typing import Any

from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...values.card import ModelCard
from ..base import SourceAdapter

__all__ = ["TimmSource"]


class TimmSource(SourceAdapter):
    """The timm adapter (cards in :mod:`.cards`, building in :mod:`.build`)."""

    name = "timm"
    distribution = "timm"
    requires = ("timm",)
    extra = "timm"

    def build_cards(self) -> list[ModelCard]:
        from .cards import build_cards

        return build_cards(self.name)

    def session_cards(self) -> tuple[ModelCard, ...]:
        """Models that code outside timm registered with ``@timm.register_model`` in this
        process, as ``timm:`` cards. Looked for only when timm is already imported (code that
        registers a model has imported it), so listing never imports timm for this."""
        registry = sys.modules.get("timm.models._registry")
        entrypoints = getattr(registry, "_model_entrypoints", None)
        if not isinstance(entrypoints, dict):
            return ()
        from .cards import arch_cards, session_archs

        archs = session_archs(entrypoints)
        state = (archs, tuple(id(entrypoints[a]) for a in archs))
        cached = self.__dict__.get("_session")
        if cached is not None and cached[0] == state:
            return cached[1]
        cards = tuple(c for arch in archs for c in arch_cards(self.name, arch))
        self.__dict__["_session"] = (state, cards)
        return cards

    def meta_model(self, card: ModelCard) -> Any:
        from .cards import meta_model

        return meta_model(card)

    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        from .build import create

        return create(card, request)

    def resolve(self, card: ModelCard, request: CreateRequest) -> tuple[ModelCard, CreateRequest]:
        from .hub import resolve_weights_source

        return resolve_weights_source(card, request)

    def external_card(self, scheme: str, identifier: str) -> ModelCard:
        from .hub import external_card

        return external_card(scheme, identifier)
