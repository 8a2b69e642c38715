"""The one fit policy: how a state dict is made to fit a built model, for every torch source.

The build skeleton (:func:`omnizoo.loading.build.build_model`) builds the architecture on the
meta device, makes a :class:`FitPlan` for the request and hands the state dict to
:func:`fit_state_dict`, which applies these rules in order:

1. **Stem.** When ``in_chans`` was asked for, a first-conv weight with another number of input
   channels is adapted with timm's rule (:func:`~.surgery.adapt_input_conv`); one that cannot be
   (a grouped stem) is re-initialised and the report says so.
2. **Background row.** A head with ``file_offset`` more rows than the model's (1001-way files
   loaded as 1000-way models) loses its first rows, as timm and pretrainedmodels do.
3. **Head.** A checkpoint's head of the requested size is kept. A head tensor that does not fit
   is re-initialised only when the request asked for another head (``num_classes`` differs from
   the file's, ``num_classes=0`` or ``features_only``); otherwise it is a shape mismatch.
4. **Strict.** Missing or unexpected keys raise :class:`~omnizoo.errors.CheckpointError`
   naming them, unless ``plan.strict`` is False: then the :class:`~.report.LoadReport`
   lists them, as timm's ``load_checkpoint(strict=False)`` does.
5. **Assign.** Tensors become the parameters (``assign=True``, cast to the model's dtype); what is
   still on the meta device afterwards is materialised and freshly initialised.

The head size a model is built with is the skeleton's rule
(:func:`omnizoo.loading.build.plan_head`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .meta import materialize_, real_params
from .report import LoadReport
from .surgery import adapt_input_conv
from .unwrap import copy_metadata

if TYPE_CHECKING:
    from torch import nn

    from ..values.card import ModelCard
    from .request import CreateRequest

__all__ = ["FitPlan", "check_strict", "fit_state_dict", "load_into"]


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class FitPlan:
    """How one state dict is fitted to one model: made by the build skeleton
    (:func:`FitPlan.of`, in :func:`omnizoo.loading.build.build_model`), adjusted by a source
    only where it knows better (timm passes its resolved ``pretrained_cfg``'s names)."""

    #: The model's name, for error messages.
    name: str
    #: State-dict prefixes of the stem conv(s) and of the head(s).
    first_conv: tuple[str, ...] = ()
    classifier: tuple[str, ...] = ()
    #: Input channels of the pretrained stem, and those asked for (None: unchanged).
    base_chans: int = 3
    in_chans: int | None = None
    #: The head size the model is built with (None: the card's), see ``build.plan_head``.
    num_classes: int | None = None
    #: Rows the file's head has beyond the model's (the background row of 1001-way files).
    file_offset: int = 0
    #: Whether the request asked for another head: then a head tensor that does not fit is
    #: re-initialised, not a shape mismatch.
    head_resized: bool = False
    strict: bool = True
    #: The dtype the parameters are cast to (None: the model's).
    dtype: Any = None
    #: ``adapt_stem(in_chans, weight, base_chans)``: timm passes its own (space-to-depth stems).
    adapt_stem: Callable[[int, Any, int], Any] = adapt_input_conv
    #: Model keys left at a fresh init on purpose (a head or stem replaced before the load).
    reinitialize: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        card: ModelCard,
        request: CreateRequest,
        *,
        classifier: str | Sequence[str] | None = None,
        num_classes: int | None = None,
        file_offset: int = 0,
    ) -> FitPlan:
        """The plan for ``request`` on ``card``: its stem and head names (``classifier``
        overrides the card's), the base channels of its data config, ``head_resized`` when
        ``features_only`` or a ``num_classes`` other than the card's was asked for."""
        return cls(
            name=card.name,
            first_conv=_as_tuple(card.first_conv),
            classifier=_as_tuple(classifier if classifier is not None else card.classifier),
            base_chans=int(card.data.input_size[0] or 3),
            in_chans=request.in_chans,
            num_classes=num_classes,
            file_offset=file_offset,
            head_resized=request.features_only
            or (request.num_classes is not None and request.num_classes != card.num_classes),
            strict=request.strict,
            dtype=request.dtype,
        )

    def replace(self, **changes: Any) -> FitPlan:
        """A copy with ``changes``: ``first_conv``/``classifier`` may be a name, a sequence or
        None (none), ``reinitialize`` any iterable of keys."""
        for key in ("first_conv", "classifier"):
            if key in changes:
                changes[key] = _as_tuple(changes[key])
        if "reinitialize" in changes:
            changes["reinitialize"] = tuple(changes["reinitialize"])
        return dataclasses.replace(self, **changes)


def fit_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    plan: FitPlan,
    report: LoadReport | None = None,
) -> LoadReport:
    """Fit ``state_dict`` to ``model`` by ``plan`` and the rules in this module's docstring,
    and load it. Returns the :class:`LoadReport` (``report``, filled in); raises
    :class:`CheckpointError` on a shape mismatch, or on missing or unexpected keys when
    ``plan.strict``."""
    report = report if report is not None else LoadReport()
    if plan.dtype is not None:
        model.to(dtype=plan.dtype)  # on meta: free; the file's tensors are cast once, below
    sd: dict[str, Any] = OrderedDict(state_dict)
    copy_metadata(state_dict, sd)
    reinit = list(plan.reinitialize)
    adapted_keys: list[str] = []
    own = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}

    if plan.in_chans is not None:
        for conv in plan.first_conv:
            key = f"{conv}.weight"
            if key not in sd or key not in own or tuple(sd[key].shape) == own[key]:
                continue
            try:
                sd[key] = plan.adapt_stem(int(plan.in_chans), sd[key], plan.base_chans)
                adapted_keys.append(key)
            except (CheckpointError, NotImplementedError, ValueError, AssertionError) as exc:
                del sd[key]
                reinit.append(key)
                report.notes.append(f"{key}: pretrained stem not adaptable ({exc}); fresh init")

    resized = plan.head_resized
    file_offset = plan.file_offset
    prefixes = tuple(f"{h}." for h in plan.classifier)
    for key in [k for k in sd if k.startswith(prefixes)]:
        value = sd[key]
        target = own.get(key)
        if target is not None and tuple(value.shape) == target:
            continue
        if (
            target is not None
            and file_offset > 0
            and not resized
            and value.ndim == len(target)
            and int(value.shape[0]) == target[0] + file_offset
            and tuple(value.shape[1:]) == target[1:]
        ):
            sd[key] = value[file_offset:]  # the background row of a 1001-way file
            adapted_keys.append(key)
            continue
        if not resized:
            continue  # not asked for: load_into reports the mismatch / unexpected key
        del sd[key]  # a head the request replaced: the model's fresh one stays
        if target is not None:
            reinit.append(key)
    for key in own:
        if key.startswith(prefixes) and key not in sd and key not in reinit and resized:
            reinit.append(key)
    return load_into(
        model,
        sd,
        report=report,
        reinitialize=reinit,
        adapted=adapted_keys,
        strict=plan.strict,
        name=plan.name,
    )


def check_strict(report: LoadReport, *, strict: bool, name: str) -> None:
    """Raise when ``strict`` and the report has missing or unexpected keys."""
    if strict and not report.ok:
        raise CheckpointError(
            f"{name}: the checkpoint does not match the model: "
            + _keys("missing", report.missing)
            + "; "
            + _keys("unexpected", report.unexpected)
            + ". Pass strict=False to load what fits and get the rest in "
            "model.omnizoo_load_report"
        )


def _keys(label: str, keys: Sequence[str]) -> str:
    if not keys:
        return f"no {label} keys"
    shown = ", ".join(keys[:10]) + (f", ... (+{len(keys) - 10})" if len(keys) > 10 else "")
    return f"{len(keys)} {label} ({shown})"


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    report: LoadReport | None = None,
    reinitialize: Iterable[str] = (),
    adapted: Iterable[str] = (),
    strict: bool = True,
    name: str = "the model",
) -> LoadReport:
    """Load ``state_dict`` into ``model`` (which may hold meta parameters) and report.

    Tensors are assigned (``assign=True``), cast to the dtype the model declares, so memory-mapped
    file tensors become the parameters without a copy. Shape mismatches raise
    :class:`CheckpointError` naming the keys, and so does a file none of whose tensors fit.
    Anything still on the meta device afterwards is materialised and initialised fresh: keys in
    ``reinitialize`` are reported as re-initialised, the rest as missing. With ``strict``,
    missing or unexpected keys raise (nothing is loaded then).
    """
    import torch

    report = report if report is not None else LoadReport()
    reinit = set(reinitialize)
    adapted_set = set(adapted)
    own = dict(model.state_dict(keep_vars=True))
    state_dict = _with_num_batches_tracked(own, state_dict)
    sd: dict[str, Any] = OrderedDict()
    copy_metadata(state_dict, sd)
    mismatched: list[str] = []
    unexpected: list[str] = []
    for key, value in state_dict.items():
        target = own.get(key)
        if target is None or not isinstance(value, torch.Tensor):
            unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(target.shape):
            mismatched.append(
                f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
            continue
        if target.dtype != value.dtype and (target.is_floating_point() or target.is_complex()):
            value = value.to(target.dtype)
        sd[key] = value
    where = f" ({report.source_file})" if report.source_file else ""
    if mismatched:
        raise CheckpointError(
            f"{name}: the checkpoint{where} does not fit the model (shape mismatch): "
            + "; ".join(mismatched[:10])
            + (f"; ... (+{len(mismatched) - 10})" if len(mismatched) > 10 else "")
            + ". Pass num_classes=/in_chans= to match the file, or pick its architecture"
        )
    if state_dict and not sd and own:
        raise CheckpointError(
            f"{name}: no tensor of the checkpoint{where} fits the model: it wants e.g. "
            f"{', '.join(list(own)[:3])}; the file has e.g. {', '.join(unexpected[:3])}. Is it "
            "a checkpoint of another architecture? Pick the matching model name, or rename "
            "the keys before loading"
        )
    # Only tensors listed by state_dict() count; non-persistent buffers are never in files.
    missing = [k for k in own if k not in sd and k not in reinit]
    check_strict(LoadReport(missing=missing, unexpected=unexpected), strict=strict, name=name)
    with torch.no_grad(), real_params():
        model.load_state_dict(sd, strict=False, assign=True)
        materialized = set(materialize_(model))
    for key in sd:
        (report.adapted if key in adapted_set else report.loaded).append(key)
    report.reinitialized.extend(k for k in own if k not in sd and k in reinit)
    report.missing.extend(missing)
    for key in sorted(materialized - set(own)):  # a non-persistent buffer left on meta
        report.notes.append(f"{key} was on the meta device and was re-initialised")
    report.unexpected.extend(unexpected)
    return report


def _with_num_batches_tracked(own: Mapping[str, Any], state_dict: Mapping[str, Any]) -> Any:
    """Files saved before torch 0.4.1 (old torchvision V1, Cadene, lukemelas) have no
    ``num_batches_tracked``; BatchNorm's own loader fills in 0 for them, so do the same rather
    than report them missing."""
    import torch

    suffix = "num_batches_tracked"
    fill = [
        key
        for key in own
        if key.endswith(suffix)
        and key not in state_dict
        and key[: -len(suffix)] + "running_mean" in state_dict
    ]
    if not fill:
        return state_dict
    out: dict[str, Any] = OrderedDict(state_dict)
    copy_metadata(state_dict, out)
    for key in fill:
        out[key] = torch.zeros((), dtype=torch.long)
    return out
