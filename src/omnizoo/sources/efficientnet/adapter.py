"""The EfficientNet (``efficientnet_pytorch``) :class:`~omnizoo.sources.base.SourceAdapter`."""

from __future__ import annotations

from typing import Any

from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...values.card import ModelCard
from ..base import SourceAdapter

__all__ = ["EfficientNetSource"]

#: Bumped when the cards this source builds change (invalidates cached indexes).
CARDS_VERSION = 2


class EfficientNetSource(SourceAdapter):
    """The ``efficientnet:`` source (cards in :mod:`.cards`, building in :mod:`.build`)."""

    name = "efficientnet"
    distribution = "efficientnet_pytorch"
    requires = ("efficientnet_pytorch",)
    extra = "efficientnet"

    def index_key(self) -> str:
        # + this source's own card version, so a change here invalidates cached indexes too
        return f"{super().index_key()}-cards{CARDS_VERSION}"

    def build_cards(self) -> list[ModelCard]:
        from .cards import build_cards

        return build_cards(self.name)

    def meta_model(self, card: ModelCard) -> Any:
        from .cards import meta_model

        return meta_model(card)

    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        from .build import create

        return create(card, request)

    def check_request(self, card: ModelCard, request: CreateRequest) -> None:
        from .cards import override_params

        override_params(request.kwargs)
