"""The ONNX zoo :class:`~omnizoo.sources.base.SourceAdapter`: models are onnxruntime sessions."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

from ...errors import (
    BackendError,
    DownloadError,
    HashMismatchError,
    OfflineError,
    OmnizooError,
    UnsupportedError,
)
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...settings import get_settings
from ...values.card import ModelCard
from ..base import INDEX_SCHEMA, SourceAdapter
from . import manifest

__all__ = ["OnnxZooSource", "unloadable_message"]

#: Bumped when the cards this source builds change (invalidates cached indexes).
CARDS_VERSION = 1


class OnnxZooSource(SourceAdapter):
    """The ``onnx:`` source (the ONNX model zoo, run with onnxruntime)."""

    name = "onnx"
    distribution = "onnxruntime"
    requires = ("onnxruntime",)
    extra = "onnx"

    countable = False  # fixed graphs, not torch models: nothing is built to count

    def index_key(self) -> str:
        # The cards depend on the (pinned) manifest, not on the onnxruntime version. While the
        # manifest is missing the key names the source URL and the day, so an empty listing is
        # cached at most for a day per URL before another fetch is tried.
        if manifest.manifest_available():
            state = "ok"
        else:
            source = get_settings().onnx_manifest_url
            day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
            state = f"missing-{hashlib.sha256(source.encode()).hexdigest()[:8]}-{day}"
        return (
            f"{self.name}-manifest{manifest.MANIFEST_SHA256[:12]}-{state}-schema{INDEX_SCHEMA}"
            f"-cards{CARDS_VERSION}"
        )

    def build_cards(self) -> list[ModelCard]:
        from .cards import build_cards

        return build_cards()

    def listing_problem(self) -> OmnizooError | None:
        """Why this source lists nothing: the manifest is missing (the error to raise for an
        ``onnx:`` name then), else None."""
        problem = manifest.manifest_problem()
        if problem is None:
            return None
        if "sha256" in problem and "not the pinned" in problem:
            return HashMismatchError(problem)
        if get_settings().offline:
            return OfflineError(problem)
        return DownloadError(problem)

    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        self.check_request(card, request)
        if request.weights_path is None:
            raise UnsupportedError(
                f"{card.name} is an ONNX graph: it exists only with its weights; use "
                "pretrained=True (or checkpoint_path= a local copy of the .onnx file)"
            )
        from .model import OnnxModel

        model = OnnxModel(Path(request.weights_path), card=card, device="cpu")
        report = LoadReport(source_file=str(request.weights_path))
        report.notes.append(f"onnxruntime session ({', '.join(model.providers)})")
        return model, report

    def check_request(self, card: ModelCard, request: CreateRequest) -> None:
        """Refuse what a fixed graph cannot do, and an opset onnxruntime cannot load, before
        its file is downloaded."""
        for what, value in (
            ("num_classes", request.num_classes),
            ("in_chans", request.in_chans),
            ("out_indices", request.out_indices),
        ):
            if value is not None and not (what == "num_classes" and value == card.num_classes):
                raise UnsupportedError(
                    f"{what}= is not supported for ONNX zoo models ({card.name} is a fixed "
                    "onnxruntime graph); use a torchvision/timm version of the architecture to "
                    "change the head or stem"
                )
        if request.features_only:
            raise UnsupportedError(
                f"features_only=True is not supported for ONNX zoo models ({card.name}); use a "
                "torchvision/timm version of the architecture"
            )
        kwargs = dict(request.kwargs)
        allow_legacy = bool(kwargs.pop("allow_legacy_opset", False))
        if kwargs:
            raise UnsupportedError(
                f"ONNX zoo models take no argument(s) {sorted(kwargs)}; allowed: "
                "allow_legacy_opset (device= moves the session to CUDA)"
            )
        if not card.extra.get("onnxruntime_loadable", True) and not allow_legacy:
            raise BackendError(unloadable_message(card))


def unloadable_message(card: ModelCard) -> str:
    """The BackendError text for an opset the installed onnxruntime cannot load, naming the
    same zoo model at opsets it can load (from the cached manifest)."""
    opset = card.extra.get("opset")
    alternatives = ""
    try:
        from .families import classify_manifest
        from .manifest import load_manifest

        zoo_model = card.extra.get("zoo_model")
        alts = sorted(
            f"onnx:{entry.arch}"
            for entry in classify_manifest(load_manifest(fetch=False))
            if entry.model == zoo_model and entry.loadable
        )
        if alts:
            alternatives = f"; the same model at a loadable opset: {', '.join(alts)}"
    except Exception:  # pragma: no cover - the message is best effort
        pass
    return (
        f"{card.name} is an opset-{opset} graph; onnxruntime only supports ONNX opset >= 7, so it "
        f"cannot load this file{alternatives}. Pass allow_legacy_opset=True to try anyway."
    )
