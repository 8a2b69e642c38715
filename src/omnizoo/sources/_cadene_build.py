"""Building Cadene models and loading verified files into them (imported only by create()).

Steps: build ``pretrainedmodels.<arch>(num_classes, pretrained=None)`` with parameters on the
meta device, fix the upstream quirks, read the checkpoint safely, rename torchvision-format
keys, slice a 1001-way head to 1000 rows where the card says so, adapt the stem/head to
``in_chans``/``num_classes``, and assign the tensors (see :mod:`omnizoo.registry.loading`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, UnsupportedError
from ..registry.card import ModelCard
from ..registry.loading import (
    adapt_input_conv,
    drop_unfitting,
    load_checkpoint,
    load_or_init,
    meta_params,
    replace_classifier,
    replace_first_conv,
)
from .base import CreateRequest, LoadReport
from .cadene import (
    _build_upstream,
    _fix_quirks,
    _import_pretrainedmodels,
    _unsupported,
    translate_checkpoint_keys,
)

if TYPE_CHECKING:
    from .cadene import CadeneSource


def create(source: CadeneSource, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """See :meth:`omnizoo.sources.base.SourceAdapter.create`."""
    if request.features_only:
        raise _unsupported("features_only=True")
    if request.out_indices is not None:
        raise _unsupported("out_indices=")
    if request.kwargs:
        raise UnsupportedError(
            f"cadene models take no extra argument(s) {sorted(request.kwargs)} "
            "(pretrainedmodels builders accept only num_classes)"
        )
    pm = _import_pretrainedmodels()
    arch = card.arch
    built_classes = int(card.num_classes)
    head = card.classifier[0] if card.classifier else "last_linear"
    if not card.first_conv:
        raise CheckpointError(f"{card.name}: card has no first_conv; rebuild the card index")
    with meta_params():
        model = _build_upstream(pm, arch, built_classes)
    _fix_quirks(arch, model)

    sd: dict[str, Any] = {}
    adapted: list[str] = []
    num_classes = request.num_classes
    path = request.weights_path
    if path is not None:
        sd = load_checkpoint(path, verified=not request.user_checkpoint)
        sd = translate_checkpoint_keys(arch, sd, set(model.state_dict().keys()))
        wkey, bkey = f"{head}.weight", f"{head}.bias"
        rows_in_file = int(card.extra.get("rows_in_file", built_classes))
        w = sd.get(wkey)
        if w is not None and w.shape[0] == built_classes + 1 and rows_in_file == w.shape[0]:
            # the 1001-way file loaded as a 1000-way model: drop the background row, as
            # pretrainedmodels does for pretrained='imagenet'
            sd[wkey] = w[1:]
            adapted.append(wkey)
            if bkey in sd:
                sd[bkey] = sd[bkey][1:]
                adapted.append(bkey)
        elif w is not None and request.user_checkpoint and num_classes is None:
            # a fine-tuned checkpoint: its head size wins when num_classes is not given
            num_classes = int(w.shape[0])

    in_chans = request.in_chans
    if in_chans is not None and in_chans != 3:
        replace_first_conv(model, card.first_conv, in_chans)
        key = f"{card.first_conv}.weight"
        if key in sd:
            sd[key] = adapt_input_conv(in_chans, sd[key])
            adapted.append(key)

    reinit: list[str] = []
    if num_classes is not None and num_classes != built_classes:
        new_keys = replace_classifier(model, [head], num_classes)
        for key in drop_unfitting(sd, model, [head]):  # the pretrained head does not fit
            if key in adapted:
                adapted.remove(key)
        reinit = [k for k in new_keys if k not in sd]

    report = load_or_init(
        model,
        sd,
        path=path,
        name=card.name,
        verified=not request.user_checkpoint,
        reinitialize=reinit,
        adapted=adapted,
    )
    if path is not None and arch == "inceptionv3":
        report.notes.append("inceptionv3: aux head loaded but off (model.aux_logits=False)")
    model.num_classes = num_classes if num_classes is not None else built_classes
    _set_upstream_attributes(model, card)
    model.eval()
    return model, report


def _set_upstream_attributes(model: Any, card: ModelCard) -> None:
    """The attributes pretrainedmodels sets after a pretrained load (input_space, mean, ...)."""
    data = card.data
    model.input_space = card.extra.get("input_space", data.color_order)
    model.input_size = list(data.input_size)
    model.input_range = card.extra.get("input_range", [0, int(data.value_range[1])])
    model.mean = list(data.mean)
    model.std = list(data.std)
