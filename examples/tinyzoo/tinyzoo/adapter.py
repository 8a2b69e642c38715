"""The omnizoo side: cards for what the library publishes, and building its models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omnizoo.data.config import DataConfig
from omnizoo.loading.checkpoint import load_checkpoint
from omnizoo.loading.fit import fit_state_dict, head_size
from omnizoo.loading.meta import meta_params
from omnizoo.loading.report import LoadReport
from omnizoo.loading.request import CreateRequest
from omnizoo.registry.card import ModelCard, WeightsFile
from omnizoo.sources.base import SourceAdapter

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
        from .model import TinyNet

        if not request.has_weights:  # the library's own random init
            model = TinyNet(request.num_classes or card.num_classes, request.in_chans or 3)
            return model, LoadReport(notes=["random init (no weights requested)"])
        state_dict = load_checkpoint(request.weights_path, verified=request.verified)
        num_classes = head_size(card, request, state_dict) or card.num_classes
        with meta_params():  # no memory, no random init: the file's tensors are assigned
            model = TinyNet(num_classes, request.in_chans or 3)
        report = LoadReport(source_file=str(request.weights_path))
        return model, fit_state_dict(model, state_dict, card, request, report=report)
