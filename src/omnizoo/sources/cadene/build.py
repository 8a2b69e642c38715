"""Building Cadene models and fitting verified files into them.

Steps: build ``pretrainedmodels.<arch>(num_classes, pretrained=None)`` (on the meta device when
weights will be loaded), fix the upstream quirks, read the checkpoint safely, rename
torchvision-format keys, then :func:`~omnizoo.loading.fit.fit_state_dict` (the 1001-way
background row, the stem for ``in_chans``, the head for ``num_classes``, strict keys).
"""

from __future__ import annotations

from typing import Any

from ...errors import CheckpointError, UnsupportedError
from ...loading.fit import fit_state_dict, head_size
from ...loading.meta import materialize_, meta_params
from ...loading.report import LoadReport
from ...loading.request import CreateRequest
from ...loading.surgery import replace_classifier, replace_first_conv
from ...registry.card import ModelCard
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
    pm = import_pretrainedmodels()
    arch = card.arch
    built = int(card.num_classes)
    head = card.classifier[0] if card.classifier else "last_linear"
    stem = str(card.first_conv)
    in_chans = request.in_chans if request.in_chans not in (None, 3) else None

    if request.device is not None and str(request.device) == "meta":
        import torch

        classes = _classes(request.num_classes, built)
        with meta_params(), torch.device("meta"):
            model = build_upstream(pm, arch, classes)
            if in_chans is not None:
                replace_first_conv(model, stem, in_chans)
            if _head_size(model, head) not in (None, classes):
                # the torchvision-backed builders ignore num_classes without weights
                replace_classifier(model, [head], classes)
        model.num_classes = classes
        report = LoadReport(notes=["device='meta': architecture only, nothing loaded"])
    elif not request.has_weights:
        # upstream's own random init, draw for draw
        classes = _classes(request.num_classes, built)
        model = build_upstream(pm, arch, classes)
        report = LoadReport(notes=["random init (no weights requested)"])
        with meta_params():
            if in_chans is not None:
                report.reinitialized.extend(replace_first_conv(model, stem, in_chans))
            if _head_size(model, head) not in (None, classes):
                # the torchvision-backed builders ignore num_classes without weights
                report.reinitialized.extend(replace_classifier(model, [head], classes))
        materialize_(model)
        model.num_classes = classes
    else:
        model, report = _pretrained(pm, card, request, built, head, stem, in_chans)
    fix_quirks(arch, model)
    if report.source_file and arch == "inceptionv3":
        report.notes.append("inceptionv3: aux head loaded but off (model.aux_logits=False)")
    return model, report


def _head_size(model: Any, head: str) -> int | None:
    try:
        module = model.get_submodule(head)
    except AttributeError:
        return None
    size = getattr(module, "out_features", None) or getattr(module, "out_channels", None)
    return int(size) if size is not None else None


def _classes(requested: int | None, built: int) -> int:
    return built if requested is None else requested


def _pretrained(
    pm: Any,
    card: ModelCard,
    request: CreateRequest,
    built: int,
    head: str,
    stem: str,
    in_chans: int | None,
) -> tuple[Any, LoadReport]:
    path = request.weights_path
    sd = request.read_weights()
    with meta_params():
        model = build_upstream(pm, card.arch, built)
    sd = translate_checkpoint_keys(card.arch, sd, set(model.state_dict().keys()))
    rows_in_file = int(card.extra.get("rows_in_file", built))
    file_offset = max(0, rows_in_file - built)
    num_classes = head_size(card, request, sd, classifier=head, file_offset=file_offset)
    reinit: list[str] = []
    with meta_params():
        if in_chans is not None:
            replace_first_conv(model, stem, in_chans)
        if num_classes is not None and num_classes != built:
            reinit = replace_classifier(model, [head], num_classes)
    report = fit_state_dict(
        model,
        sd,
        card,
        request,
        report=LoadReport(source_file=str(path) if path is not None else None),
        classifier=(head,),
        file_offset=file_offset,
        reinitialize=reinit,
    )
    model.num_classes = _classes(num_classes, built)
    _set_upstream_attributes(model, card)
    return model, report


def _set_upstream_attributes(model: Any, card: ModelCard) -> None:
    """The attributes pretrainedmodels sets after a pretrained load (input_space, mean, ...)."""
    data = card.data
    model.input_space = card.extra.get("input_space", data.color_order)
    model.input_size = list(data.input_size)
    model.input_range = card.extra.get("input_range", [0, int(data.value_range[1])])
    model.mean = list(data.mean)
    model.std = list(data.std)
