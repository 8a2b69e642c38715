"""The timm :class:`~omnizoo.sources.base.SourceAdapter`."""

from __future__ import annotations

from typing import Any

from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...registry.card import ModelCard
from ..base import SourceAdapter

__all__ = ["TimmSource"]


class TimmSource(SourceAdapter):
    """The timm adapter (cards in :mod:`.cards`, building in :mod:`.build`)."""

    name = "timm"
    distribution = "timm"

    def build_cards(self) -> list[ModelCard]:
        from .cards import build_cards

        return build_cards(self.name)

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
