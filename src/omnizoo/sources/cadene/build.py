"""Building Cadene models and fitting verified files into them, through the build skeleton
(:func:`~omnizoo.loading.build.build_model`).

Steps: build ``pretrainedmodels.<arch>(num_classes, pretrained=None)`` (on the meta device when
weights will be loaded), fix the upstream quirks, read the checkpoint safely, rename
torchvision-format keys, then :func:`~omnizoo.loading.fit.fit_state_dict` (the 1001-way
background row, the stem for ``in_chans``, the head for ``num_classes``, strict keys).
"""

from __future__ import annotations

from typing import Any

from ...errors import CheckpointError, UnsupportedError
from ...loading.build import Upstream, build_model
from ...loading.fit import FitPlan, fit_state_dict
from ...loading.heads import head_width, replace_classifier
from ...loading.meta import materialize_, meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...loading.surgery import replace_first_conv
from ...values.card import ModelCard
from .upstream import (
    build_upstream,
    fix_quirks,
    import_pretrainedmodels,
    translate_checkpoint_keys,
    unsupported,
)

__all__ = ["check_request", "create"]


def check_request(card: ModelCard, request: CreateRequest) -> None:
    """Refuse, before any download, what pretrainedmodels' models cannot do."""
    if request.features_only:
        raise unsupported("features_only=True")
    if request.out_indices is not None:
        raise unsupported("out_indices=")
    if request.kwargs:
        raise UnsupportedError(
            f"cadene models take no extra argument(s) {sorted(request.kwargs)} "
            "(pretrainedmodels builders accept only num_classes)"
        )
    if not card.first_conv:
        raise CheckpointError(f"{card.name}: card has no first_conv; rebuild the card index")


def create(card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """See :meth:`omnizoo.sources.base.SourceAdapter.create`."""
    check_request(card, request)
    return build_model(card, request, _CadeneUpstream(card, request))


class _CadeneUpstream(Upstream):
    """``pretrainedmodels.<arch>(num_classes, pretrained=None)``; torchvision-format keys
    renamed; a stem for ``in_chans`` and a head for ``num_classes`` swapped on the meta device
    (the torchvision-backed builders ignore ``num_classes`` without weights)."""

    def __init__(self, card: ModelCard, request: CreateRequest) -> None:
        super().__init__(card, request)
        self.pm = import_pretrainedmodels()
        self.built = int(card.num_classes)
        self.head = card.classifier[0] if card.classifier else "last_linear"
        self.stem = str(card.first_conv)
        self.in_chans = request.in_chans if request.in_chans not in (None, 3) else None
        self.template: Any = None

    def build(self, num_classes: int | None) -> Any:
        return build_upstream(
            self.pm, self.card.arch, self.built if num_classes is None else num_classes
        )

    def _reshape(self, model: Any, classes: int) -> list[str]:
        """Swap the stem and the head for the request (inside meta_params); their new keys."""
        keys: list[str] = []
        if self.in_chans is not None:
            keys.extend(replace_first_conv(model, self.stem, self.in_chans))
        if head_width(model, self.head) not in (None, classes):
            keys.extend(replace_classifier(model, [self.head], classes))
        return keys

    def build_meta(self) -> Any:
        classes = self.built if self.request.num_classes is None else self.request.num_classes
        model = self.build(classes)
        self._reshape(model, classes)
        model.num_classes = classes
        return model

    def build_random(self, report: LoadReport) -> Any:
        # upstream's own random init, draw for draw
        classes = self.built if self.request.num_classes is None else self.request.num_classes
        model = self.build(classes)
        with meta_params():
            report.reinitialized.extend(self._reshape(model, classes))
        materialize_(model)
        model.num_classes = classes
        return model

    def translate(self, state_dict: dict[str, Any], report: LoadReport) -> dict[str, Any]:
        with meta_params():
            self.template = self.build(None)
        keys = set(self.template.state_dict().keys())
        return translate_checkpoint_keys(self.card.arch, state_dict, keys)

    def classifier(self) -> tuple[str, ...]:
        return (self.head,)

    def file_offset(self) -> int:
        rows_in_file = int(self.card.extra.get("rows_in_file", self.built))
        return max(0, rows_in_file - self.built)

    def load(
        self, state_dict: dict[str, Any], plan: FitPlan, report: LoadReport
    ) -> tuple[Any, LoadReport]:
        model = self.template
        num_classes = plan.num_classes
        reinit: list[str] = []
        with meta_params():
            if self.in_chans is not None:
                replace_first_conv(model, self.stem, self.in_chans)
            if num_classes is not None and num_classes != self.built:
                reinit = replace_classifier(model, [self.head], num_classes)
        report = fit_state_dict(model, state_dict, plan.replace(reinitialize=reinit), report)
        model.num_classes = self.built if num_classes is None else num_classes
        _set_upstream_attributes(model, self.card)
        return model, report

    def finish(self, model: Any, report: LoadReport) -> Any:
        fix_quirks(self.card.arch, model)
        if report.source_file and self.card.arch == "inceptionv3":
            report.notes.append("inceptionv3: aux head loaded but off (model.aux_logits=False)")
        return model


def _set_upstream_attributes(model: Any, card: ModelCard) -> None:
    """The attributes pretrainedmodels sets after a pretrained load (input_space, mean, ...)."""
    data = card.data
    model.input_space = card.extra.get("input_space", data.color_order)
    model.input_size = list(data.input_size)
    model.input_range = card.extra.get("input_range", [0, int(data.value_range[1])])
    model.mean = list(data.mean)
    model.std = list(data.std)
