"""The one build skeleton every torch source goes through (timm's ``build_model_with_cfg`` is
its model): the branches, the head sizing, the fit plan and the notes of the load report are
decided here; a source's :class:`Upstream` supplies only its quirks (how to call the upstream
builder, key translation, a features wrapper)::

    build_model(card, request, upstream)
      device="meta"   upstream.build_meta()        in meta_params() (+ torch.device("meta"))
      no weights      upstream.build_random(report) upstream's own init, draw for draw
      weights         upstream.own_loader(report)   a loader of upstream's own (timm's .npz), or:
                      state dict read safely (request.read_weights)
                      -> upstream.translate(state_dict, report)     key renames
                      -> plan = FitPlan.of(..., num_classes=plan_head(...))
                      -> upstream.load(state_dict, plan, report)   build on meta, fit_state_dict
      then            upstream.finish(model, report)               features wrapper, attributes

A third-party source (docs/adding-a-source.md) subclasses :class:`Upstream`, implements
:meth:`Upstream.build` and returns ``build_model(card, request, MyUpstream(card, request))``
from its adapter's ``create``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .fit import FitPlan, fit_state_dict
from .meta import meta_params
from .report import LoadReport

if TYPE_CHECKING:
    from ..values.card import ModelCard
    from .request import CreateRequest

__all__ = ["META_NOTE", "RANDOM_NOTE", "Upstream", "build_model", "plan_head"]

#: The load report's note for each branch without weights.
META_NOTE = "device='meta': architecture only, nothing loaded"
RANDOM_NOTE = "random init (no weights requested)"


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def plan_head(
    card: ModelCard,
    request: CreateRequest,
    state_dict: Mapping[str, Any] | None,
    *,
    classifier: str | Sequence[str] | None = None,
    file_offset: int = 0,
) -> int | None:
    """The number of classes to build for ``request``, or None for the card's own.

    ``num_classes`` wins; else a user checkpoint's head decides (a fine-tune of 10 classes is
    rebuilt with 10), except that a head with exactly ``file_offset`` extra rows is the
    published file's background row, not another size.
    """
    if request.num_classes is not None:
        return request.num_classes
    if not request.user_checkpoint or state_dict is None or request.features_only:
        return None
    for head in _names(classifier if classifier is not None else card.classifier):
        w = state_dict.get(f"{head}.weight")
        if w is None or getattr(w, "ndim", 0) < 1:
            continue
        rows = int(w.shape[0])
        if rows in (card.num_classes, card.num_classes + file_offset):
            return None
        return rows
    return None


class Upstream:
    """One source's quirks, called by :func:`build_model`; one instance per build.

    Only :meth:`build` must be written; every other hook has the plain default.
    """

    #: Whether meta builds also run inside ``torch.device("meta")`` (timm's builders take
    #: ``device=`` themselves and derive buffers from real tensors: False there).
    meta_device_context: ClassVar[bool] = True

    def __init__(self, card: ModelCard, request: CreateRequest) -> None:
        self.card = card
        self.request = request

    def build(self, num_classes: int | None) -> Any:
        """The upstream call: the model with a head of ``num_classes`` (None: the card's)."""
        raise NotImplementedError

    def build_meta(self) -> Any:
        """``device="meta"``: the architecture only (called inside the meta contexts)."""
        return self.build(self.request.num_classes)

    def build_random(self, report: LoadReport) -> Any:
        """No weights: upstream's own init; keys re-initialised on purpose go in ``report``."""
        return self.build(self.request.num_classes)

    def own_loader(self, report: LoadReport) -> Any:
        """A model loaded by upstream's own loader (timm's ``.npz``), or None (the default)."""
        return None

    def translate(self, state_dict: dict[str, Any], report: LoadReport) -> dict[str, Any]:
        """The state dict in the model's key names (renames say so in ``report.notes``)."""
        return state_dict

    def classifier(self) -> tuple[str, ...] | None:
        """The head prefixes of the fit plan (None: the card's)."""
        return None

    def sizing_classifier(self) -> tuple[str, ...] | None:
        """The head prefixes whose rows in a user checkpoint size the head (:func:`plan_head`)."""
        return self.classifier()

    def file_offset(self) -> int:
        """Rows the published file's head has beyond the model's (a background class)."""
        return 0

    def load(
        self, state_dict: dict[str, Any], plan: FitPlan, report: LoadReport
    ) -> tuple[Any, LoadReport]:
        """Build for ``plan`` and fit ``state_dict``: by default ``build(plan.num_classes)``
        on the meta device, then :func:`~.fit.fit_state_dict`."""
        with meta_params():
            model = self.build(plan.num_classes)
        return model, fit_state_dict(model, state_dict, plan, report)

    def finish(self, model: Any, report: LoadReport) -> Any:
        """The model as returned (a features wrapper, upstream attributes); every branch."""
        return model


def build_model(
    card: ModelCard, request: CreateRequest, upstream: Upstream
) -> tuple[Any, LoadReport]:
    """Build ``card``'s model for ``request`` through ``upstream``'s hooks (see the module
    docstring); returns the model and its :class:`~.report.LoadReport`."""
    if request.on_meta:
        with meta_params(), _meta_device(upstream.meta_device_context):
            model = upstream.build_meta()
        _buffers_to_meta(model)
        report = LoadReport(notes=[META_NOTE])
    elif not request.has_weights:
        report = LoadReport(notes=[RANDOM_NOTE])
        model = upstream.build_random(report)
    else:
        path = request.weights_path
        report = LoadReport(source_file=str(path) if path is not None else None)
        model = upstream.own_loader(report)
        if model is None:
            state_dict = upstream.translate(request.read_weights(), report)
            offset = upstream.file_offset()
            num_classes = plan_head(
                card,
                request,
                state_dict,
                classifier=upstream.sizing_classifier(),
                file_offset=offset,
            )
            plan = FitPlan.of(
                card,
                request,
                classifier=upstream.classifier(),
                num_classes=num_classes,
                file_offset=offset,
            )
            model, report = upstream.load(state_dict, plan, report)
    return upstream.finish(model, report), report


def _meta_device(enter: bool) -> contextlib.AbstractContextManager[Any]:
    if not enter:
        return contextlib.nullcontext()
    import torch

    return torch.device("meta")


def _buffers_to_meta(model: Any) -> None:
    """Move what a builder made on a real device (buffers, a tensor some upstream code created
    from real data: Cadene's ResNeXt lambdas) to the meta device: ``device="meta"`` promises
    a model with no real storage."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return
    for module in model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is not None and buf.device.type != "meta":
                module._buffers[name] = buf.to("meta")
        for name, param in list(module._parameters.items()):
            if param is not None and param.device.type != "meta":
                module._parameters[name] = torch.nn.Parameter(
                    param.to("meta"), requires_grad=param.requires_grad
                )
