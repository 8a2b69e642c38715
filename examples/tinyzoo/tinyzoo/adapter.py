"""The omnizoo side: cards for what the library publishes, and building its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omnizoo.loading.build import Upstream, build_model
from omnizoo.loading.report import LoadReport
from omnizoo.loading.request import CreateRequest
from omnizoo.sources.base import SourceAdapter
from omnizoo.values.card import ModelCard, WeightsFile
from omnizoo.values.data_config import DataConfig

WEIGHTS = Path(__file__).with_name("tinynet-brightness.safetensors")
SHA256 = "9998018cea150c3f3a21e22c0724ee94688de18f02e6d66ecde63e4c5458b884"


class TinyZooSource(SourceAdapter):
    """``tinyzoo:tinynet.brightness``: names the brightness of an image."""

    name = "tinyzoo"
    distribution = "omnizoo-tinyzoo"  # its version keys the cached card index
    requires = ("torch",)  # modules the source needs (checked without importing them)

    def build_cards(self) -> list[ModelCard]:
        return [
            ModelCard(
                source=self.name,
                arch="tinynet",
                tag="brightness",
                is_default=True,
                weights=WeightsFile(
                    urls=(WEIGHTS.as_uri(),),  # or https:// URLs, verified the same way
                    filename=WEIGHTS.name,
                    sha256=SHA256,
                    format="safetensors",
                ),
                num_classes=2,
                categories=("dark", "bright"),
                data=DataConfig(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
                first_conv="stem",
                classifier=("head",),
                license="CC0-1.0",
            )
        ]

    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        # omnizoo's build skeleton: device="meta", random init, or the verified file read
        # safely, the head sized and the tensors fitted; TinyNet is built by the one hook
        return build_model(card, request, TinyNetUpstream(card, request))


class TinyNetUpstream(Upstream):
    """How to call the library: the only quirk this source has."""

    def build(self, num_classes: int | None) -> Any:
        from .model import TinyNet

        n = self.card.num_classes if num_classes is None else num_classes
        return TinyNet(n, self.request.in_chans or 3)
