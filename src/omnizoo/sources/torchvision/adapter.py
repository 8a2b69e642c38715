"""The torchvision :class:`~omnizoo.sources.base.SourceAdapter`."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...errors import ConfigurationError
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...values.card import ModelCard
from ..base import SourceAdapter

__all__ = ["TorchvisionSource"]


class TorchvisionSource(SourceAdapter):
    """The torchvision adapter (cards in :mod:`.cards`, building in :mod:`.build`)."""

    name = "torchvision"
    distribution = "torchvision"
    requires = ("torchvision",)

    def build_cards(self) -> list[ModelCard]:
        from .cards import build_cards

        return build_cards(self.name)

    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        from .build import create

        return create(card, request)

    def resolve(
        self, card: ModelCard, request: CreateRequest
    ) -> tuple[ModelCard | str, CreateRequest]:
        """torchvision's ``weights=`` keyword (``get_model(name, weights=...)``): None for a
        random model, ``"DEFAULT"``, a tag, ``"ResNet50_Weights.IMAGENET1K_V2"`` or the enum
        member for those weights, downloaded through the verified cache."""
        if "weights" not in request.kwargs:
            return card, request
        kwargs = dict(request.kwargs)
        weights = kwargs.pop("weights")
        if weights is None:
            return card, dataclasses.replace(request, pretrained=False, kwargs=kwargs)
        tag = getattr(weights, "name", None) if not isinstance(weights, str) else weights
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(
                f"weights={weights!r}: expected None, 'DEFAULT', a tag such as 'IMAGENET1K_V2' "
                "or a torchvision Weights member"
            )
        tag = tag.rpartition(".")[2]
        name = f"{self.name}:{card.arch}" + ("" if tag == "DEFAULT" else f".{tag}")
        return name, dataclasses.replace(request, pretrained=True, kwargs=kwargs)

    def check_request(self, card: ModelCard, request: CreateRequest) -> None:
        from .build import check_request

        check_request(card, request)
