"""The one fit policy: how a state dict is made to fit a built model, for every torch source.

Every torch adapter builds the architecture (on the meta device when weights will be loaded)
and hands the state dict to :func:`fit_state_dict`, which applies these rules in order:

1. **Stem.** When ``in_chans`` was asked for, a first-conv weight with another number of input
   channels is adapted with timm's rule (:func:`~.surgery.adapt_input_conv`); one that cannot be
   (a grouped stem) is re-initialised and the report says so.
2. **Background row.** A head with ``file_offset`` more rows than the model's (1001-way files
   loaded as 1000-way models) loses its first rows, as timm and pretrainedmodels do.
3. **Head.** A checkpoint's head of the requested size is kept. A head tensor that does not fit
   is re-initialised only when the request asked for another head (``num_classes`` differs from
   the file's, ``num_classes=0`` or ``features_only``); otherwise it is a shape mismatch.
4. **Strict.** Missing or unexpected keys raise :class:`~omnizoo.errors.CheckpointError`
   naming them, unless ``request.strict`` is False: then the :class:`~.report.LoadReport`
   lists them, as timm's ``load_checkpoint(strict=False)`` does.
5. **Assign.** Tensors become the parameters (``assign=True``, cast to the model's dtype); what is
   still on the meta device afterwards is materialised and freshly initialised.

:func:`head_size` is the matching rule for building: the head size a model should be built
with for a request (``num_classes``, else a user checkpoint's own head, else the card's).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .checkpoint import copy_metadata
from .meta import materialize_, real_params
from .report import LoadReport
from .request import CreateRequest
from .surgery import adapt_input_conv

if TYPE_CHECKING:
    from torch import nn

    from ..registry.card import ModelCard

__all__ = ["check_strict", "fit_state_dict", "head_size", "init_fresh", "load_into"]


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def head_size(
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
    for head in _as_tuple(classifier if classifier is not None else card.classifier):
        w = state_dict.get(f"{head}.weight")
        if w is None or getattr(w, "ndim", 0) < 1:
            continue
        rows = int(w.shape[0])
        if rows in (card.num_classes, card.num_classes + file_offset):
            return None
        return rows
    return None


def fit_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    card: ModelCard,
    request: CreateRequest,
    *,
    report: LoadReport | None = None,
    first_conv: str | Sequence[str] | None = None,
    classifier: str | Sequence[str] | None = None,
    base_chans: int | None = None,
    file_offset: int = 0,
    head_resized: bool | None = None,
    strict: bool | None = None,
    adapt_stem: Callable[[int, Any, int], Any] = adapt_input_conv,
    reinitialize: Iterable[str] = (),
    adapted: Iterable[str] = (),
    source_file: str | None = None,
) -> LoadReport:
    """Fit ``state_dict`` to ``model`` by the rules in this module's docstring and load it.

    ``first_conv``/``classifier``/``base_chans`` default to the card's (timm passes the
    resolved ``pretrained_cfg``'s); ``file_offset`` is the number of background rows the file's
    head has beyond the model's; ``head_resized`` says whether the request asked for another
    head (default: ``features_only`` or a ``num_classes`` other than the card's); ``strict``
    defaults to ``request.strict``; ``adapt_stem(in_chans, weight, base_chans)`` adapts a stem
    (timm passes its own, which knows space-to-depth stems). Returns the
    :class:`LoadReport`; raises :class:`CheckpointError` on a shape mismatch, or on missing or
    unexpected keys when strict.
    """
    report = report if report is not None else LoadReport()
    if source_file and not report.source_file:
        report.source_file = source_file
    if request.dtype is not None:
        model.to(dtype=request.dtype)  # on meta: free; the file's tensors are cast once, below
    sd: dict[str, Any] = OrderedDict(state_dict)
    copy_metadata(state_dict, sd)
    reinit = list(reinitialize)
    adapted_keys = list(adapted)
    own = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    convs = _as_tuple(first_conv if first_conv is not None else card.first_conv)
    heads = _as_tuple(classifier if classifier is not None else card.classifier)
    base = int(base_chans if base_chans is not None else (card.data.input_size[0] or 3))

    if request.in_chans is not None:
        for conv in convs:
            key = f"{conv}.weight"
            if key not in sd or key not in own or tuple(sd[key].shape) == own[key]:
                continue
            try:
                sd[key] = adapt_stem(int(request.in_chans), sd[key], base)
                adapted_keys.append(key)
            except (CheckpointError, NotImplementedError, ValueError, AssertionError) as exc:
                del sd[key]
                reinit.append(key)
                report.notes.append(f"{key}: pretrained stem not adaptable ({exc}); fresh init")

    resized = head_resized
    if resized is None:
        resized = request.features_only or (
            request.num_classes is not None and request.num_classes != card.num_classes
        )
    prefixes = tuple(f"{h}." for h in heads)
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
        strict=request.strict if strict is None else strict,
        name=card.name,
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


def init_fresh(model: nn.Module, reinitialize: Iterable[str] = ()) -> LoadReport:
    """Materialise a meta-built ``model`` with a fresh init (no weights requested)."""
    materialize_(model)
    report = LoadReport(notes=["random init (no weights requested)"])
    report.reinitialized.extend(reinitialize)
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
