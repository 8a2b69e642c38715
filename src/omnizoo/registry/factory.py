"""``create_model``: name -> card -> verified weights -> the source adapter builds and loads.

>>> import omnizoo
>>> model = omnizoo.create_model("timm:resnet18", num_classes=10)   # doctest: +SKIP
>>> model.omnizoo_card.name, model.omnizoo_load_report.summary()    # doctest: +SKIP

Typed with overloads: an ``onnx:`` zoo name written literally gives an
:class:`~omnizoo.sources.onnx.model.OnnxModel`, anything else an ``nn.Module`` (see
:func:`create_model`, "Return type").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from ..errors import ConfigurationError, NoPretrainedWeightsError
from ..loading.report import LoadReport
from ..loading.request import CreateRequest
from ..loading.trust import trusted_globals
from ..saved.folder import check_weights, checkpoint_card, local_folder, read_saved
from ..values.card import ModelCard
from ..values.lineage import Start
from .adapters import get_adapter
from .derive import derive_card, mark_built
from .registry import get_card

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from torch import nn

    from ..sources.onnx.model import OnnxModel
    from ..sources.onnx.zoo_names import OnnxZooName
    from ..values.device_dtype import DeviceLike, DtypeLike
    from ..weights.lockfile import WeightsLock

__all__ = ["create_model"]


@overload
def create_model(  # listed first: a literal onnx: name is also a str
    name: OnnxZooName,
    pretrained: bool = False,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    checkpoint_path: str | Path | None = None,
    device: DeviceLike | None = None,
    dtype: DtypeLike | None = None,
    strict: bool = True,
    lock: str | Path | WeightsLock | bool | None = None,
    labels: Sequence[str] | None = None,
    trust: Sequence[str | Callable[..., Any]] | None = None,
    **kwargs: Any,
) -> OnnxModel: ...


@overload
def create_model(
    name: str | Path | ModelCard,
    pretrained: bool = False,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    checkpoint_path: str | Path | None = None,
    device: DeviceLike | None = None,
    dtype: DtypeLike | None = None,
    strict: bool = True,
    lock: str | Path | WeightsLock | bool | None = None,
    labels: Sequence[str] | None = None,
    trust: Sequence[str | Callable[..., Any]] | None = None,
    **kwargs: Any,
) -> nn.Module: ...


def create_model(
    name: str | Path | ModelCard,
    pretrained: bool = False,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    checkpoint_path: str | Path | None = None,
    device: DeviceLike | None = None,
    dtype: DtypeLike | None = None,
    strict: bool = True,
    lock: str | Path | WeightsLock | bool | None = None,
    labels: Sequence[str] | None = None,
    trust: Sequence[str | Callable[..., Any]] | None = None,
    **kwargs: Any,
) -> nn.Module | OnnxModel:
    """Build a model by name, optionally with verified pretrained weights.

    >>> import omnizoo
    >>> model = omnizoo.create_model("resnet18", device="meta")   # the architecture only
    >>> type(model).__name__, model.omnizoo_card.name
    ('ResNet', 'torchvision:resnet18')
    >>> omnizoo.create_model("resnet50", pretrained=True)        # doctest: +SKIP

    ``name`` may also be a folder written by :func:`omnizoo.save_pretrained` (a
    ``pathlib.Path``, ``"local:<folder>"``, or a path string): the saved model comes back
    exactly, with its labels and preprocessing (see :mod:`omnizoo.saved.folder`).

    * ``pretrained=True`` downloads (or finds in the cache) the card's weights file, verified
      by hash, and loads it safely (safetensors or ``torch.load(weights_only=True)``);
    * ``checkpoint_path`` loads a local file instead (your fine-tuned checkpoint or an
      air-gapped copy; ``module.``/``_orig_mod.`` prefixes and ``state_dict``/``model``/EMA
      wrappers are handled; its head size is used when ``num_classes`` is not given);
    * ``num_classes`` gives a head of that size: a checkpoint's head of that size is kept,
      another is re-initialised; ``in_chans`` adapts the pretrained stem (sum for 1 channel,
      repeat-and-scale for more);
    * ``strict`` (default True): missing or unexpected checkpoint keys raise
      :class:`~omnizoo.errors.CheckpointError`; ``strict=False`` loads what fits and lists the
      rest in ``model.omnizoo_load_report``, as timm's ``load_checkpoint`` does;
    * ``features_only``/``out_indices`` return a model whose forward gives a list of feature
      maps, with timm's meaning of ``out_indices`` (an int n: the last n levels) and a
      ``feature_info`` with timm's API, for every source that has feature maps;
    * ``lock``: a weights lock file (path, or a :class:`~omnizoo.weights.lockfile.WeightsLock`)
      the pretrained download must match; None uses ``OMNIZOO_LOCK``, False none;
    * ``device``/``dtype`` are honoured while building (``device="meta"`` builds the
      architecture only, at once); ``kwargs`` go to the source's builder with upstream's
      meaning (timm's ``pretrained_cfg_overlay``, torchvision's ``weights``/``weights_backbone``);
    * ``labels``: the names of the classes (one per output), kept on the model's card so
      ``get_labels``, the Predictor and export use them. Without them, a head of another size
      than the card's (``num_classes``, or a checkpoint's) has ``class_0 .. class_{n-1}``; a
      checkpoint written by ``save_pretrained`` brings its own;
    * ``trust``: the globals a trusted checkpoint may build besides tensors, still under
      ``weights_only=True`` (``trust=["argparse.Namespace"]`` loads a timm ``train.py``
      checkpoint; see :mod:`omnizoo.loading.trust`).

    The model comes back in the mode upstream returns it (train), and carries ``omnizoo_card``
    (so ``get_card(model)`` works) and ``omnizoo_load_report`` (a
    :class:`~omnizoo.loading.report.LoadReport`).

    Return type: an ``nn.Module`` for every torch source (torchvision, timm, Cadene,
    efficientnet, registered models, saved folders); an ONNX-zoo model (``onnx:`` names) is an
    :class:`~omnizoo.sources.onnx.model.OnnxModel`, an onnxruntime session with the module
    look-alikes (``__call__``, ``eval``, ``to``, ``parameters``...) but not an ``nn.Module``.
    Which one comes back depends on the name's value, so the annotation says what can be told
    before run time: an ``onnx:`` name written literally (``create_model("onnx:resnet50-v1-7")``;
    the names are :data:`~omnizoo.sources.onnx.zoo_names.OnnxZooName`) is typed ``OnnxModel``,
    every other ``str``, ``Path`` or card ``nn.Module``. A name known only at run time that
    resolves to the ONNX zoo (a variable, a bare zoo name without ``onnx:``, a card) is still
    typed ``nn.Module``: tell the two apart with
    ``isinstance(model, omnizoo.sources.onnx.model.OnnxModel)``.

    Raises:
        UnknownModelError: no model has this name (with close matches); its subclass
            UnknownSourceError names an unknown ``source:``. InvalidNameError: the name does
            not follow ``[source:]arch[.tag]``.
        NoPretrainedWeightsError: ``pretrained=True`` for a card without weights.
        ConfigurationError: an argument out of range (``num_classes``, ``in_chans``,
            ``out_indices`` without ``features_only``, an unknown ``dtype`` name), or an option
            a saved folder cannot change.
        DependencyError: the source's library (timm, pretrainedmodels, onnxruntime...) is not
            installed.
        UnsupportedError: the source cannot do what is asked (e.g. ``features_only`` for an
            ONNX graph).
        DownloadError: the weights could not be fetched (OfflineError: offline and not
            cached; RemoteNotFoundError: the origin says 404).
        IntegrityError: the weights failed verification (HashMismatchError,
            NotAWeightsFileError, FormatMismatchError, UnpinnedError).
        CheckpointError: missing or unexpected keys with ``strict=True``, or a checkpoint
            that cannot be read (UnsafeCheckpointError: it needs unpickling and is unverified).
        MetadataError: a saved folder's ``card.json`` fails the schema.
    """
    folder = local_folder(name) if not isinstance(name, ModelCard) else None
    if folder is not None:
        return _create_saved(
            folder,
            num_classes=num_classes,
            device=device,
            dtype=dtype,
            strict=strict,
            labels=labels,
            other={
                "in_chans": in_chans,
                "features_only": features_only or None,
                "out_indices": out_indices,
                "checkpoint_path": checkpoint_path,
                "lock": lock,
                "trust": trust,
                **kwargs,
            },
        )
    card = get_card(name)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0
    ):
        raise ConfigurationError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if in_chans is not None and (
        isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1
    ):
        raise ConfigurationError(f"in_chans must be an int >= 1, got {in_chans!r}")
    if out_indices is not None and not features_only:
        raise ConfigurationError("out_indices is only meaningful with features_only=True")
    request = CreateRequest(
        pretrained=bool(pretrained),
        weights_path=Path(checkpoint_path).expanduser() if checkpoint_path is not None else None,
        user_checkpoint=checkpoint_path is not None,
        num_classes=num_classes,
        in_chans=in_chans,
        features_only=bool(features_only),
        out_indices=_out_indices(out_indices),
        strict=bool(strict),
        device=device,
        dtype=_dtype(dtype),
        kwargs=dict(kwargs),
        trust=trusted_globals(trust),
    )
    adapter = get_adapter(card.source)
    resolved, request = adapter.resolve(card, request)
    card = get_card(resolved) if isinstance(resolved, str) else resolved
    adapter.check_request(card, request)  # fail before downloading, not after
    start = Start.random(card)
    if request.pretrained and not request.has_weights and not request.on_meta:
        if card.weights is None:
            raise NoPretrainedWeightsError(
                f"{card.name} has no pretrained weights; "
                f"`omnizoo list '{card.arch}*' --pretrained` shows which do"
            )
        from ..weights.download import fetch_verified

        # The card's declared format is enforced by the fetch; only bytes that matched a
        # sha256 known in advance (pinned, origin, prefix) count as verified for unpickling.
        fetched = fetch_verified(card.weights, name=card.name, lock=lock)
        request = dataclasses.replace(
            request, weights_path=Path(fetched.path), verified=fetched.verified
        )
        lineage = {"base_weights": card.name, "base_sha256": fetched.sha256}
        start = Start.published(card, fetched.sha256, fetched.verification)
    elif request.user_checkpoint and request.weights_path is not None:
        lineage = {"checkpoint": request.weights_path.name}
        start = Start.local(request.weights_path)
    else:
        lineage = {}
        if request.state_dict is not None:
            start = Start.memory(card)
    model, report = _build(adapter, card, request)
    derived = derive_card(
        card,
        model,
        start,
        complete=_complete(report),
        num_classes=request.num_classes,
        labels=labels,
        in_chans=request.in_chans,
        features_only=request.features_only,
        carried=_checkpoint_card(request),
    )
    _attach(model, derived, report, build_record(card, request, lineage))
    return model


def _build(adapter: Any, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
    """The source builds the model; then it is placed on ``request.device``/``dtype`` (the one
    place for both entry points: a name and a saved folder)."""
    model, report = adapter.create(card, request)
    if request.on_meta:
        if request.dtype is not None:
            model = _move(model, None, request.dtype)  # free on meta; timm already built it so
    elif request.device is not None or request.dtype is not None:
        model = _move(model, request.device, request.dtype)
    return model, report


def _complete(report: LoadReport) -> bool:
    """Whether the weights loaded are the whole file, unchanged (the card may keep its name)."""
    return report.ok and not report.reinitialized and not report.adapted


def _out_indices(value: Any) -> Any:
    """timm's out_indices: None, an int (the last n levels) or a sequence of level indices."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        indices = tuple(int(i) for i in value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"out_indices must be an int (the last n levels) or a sequence of ints, got {value!r}"
        ) from None
    return indices


def _dtype(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    import torch

    resolved = getattr(torch, value.removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigurationError(f"dtype={value!r} is not a torch dtype, e.g. 'float16'")
    return resolved


def _move(model: Any, device: Any, dtype: Any) -> Any:
    to = getattr(model, "to", None)
    if to is None:
        raise ConfigurationError(f"{type(model).__name__} cannot be moved to {device}/{dtype}")
    kwargs: dict[str, Any] = {}
    if device is not None:
        kwargs["device"] = device
    if dtype is not None:
        kwargs["dtype"] = dtype
    return to(**kwargs)


def _checkpoint_card(request: CreateRequest) -> ModelCard | None:
    path = request.weights_path
    if not request.user_checkpoint or path is None:
        return None
    return checkpoint_card(path)


def build_record(
    card: ModelCard, request: CreateRequest, lineage: dict[str, Any]
) -> dict[str, Any]:
    """What ``save_pretrained`` needs to rebuild the model: the card it was built from, the
    arguments that shape it, and where its weights came from (``model.omnizoo_build``)."""
    return {
        "base": card,
        "in_chans": request.in_chans,
        "features_only": request.features_only,
        "out_indices": request.out_indices,
        "kwargs": dict(request.kwargs),
        "lineage": dict(lineage),
    }


def _attach(
    model: Any, card: ModelCard, report: LoadReport, build: dict[str, Any] | None = None
) -> None:
    try:
        model.omnizoo_card = card
        model.omnizoo_load_report = report
        if build is not None:
            model.omnizoo_build = build
    except AttributeError:  # pragma: no cover - an object refusing attributes
        pass
    mark_built(model)  # from here on, weights trained in place show on its card


_LOCAL_OPTIONS = ("num_classes", "labels", "device", "dtype", "strict")


def _create_saved(
    folder: Path,
    *,
    num_classes: int | None,
    device: Any,
    dtype: Any,
    strict: bool,
    labels: Sequence[str] | None,
    other: dict[str, Any],
) -> Any:
    """``create_model(folder)``: the model ``save_pretrained`` wrote, rebuilt exactly."""
    given = sorted(k for k, v in other.items() if v is not None)
    if given:
        raise ConfigurationError(
            f"{folder} is a saved model: its architecture and weights are fixed; "
            f"{', '.join(given)} cannot be changed here (allowed: {', '.join(_LOCAL_OPTIONS)})"
        )
    saved = read_saved(folder)
    path = check_weights(saved)
    build = saved.build
    base = saved.base
    saved_classes = build.get("num_classes")
    request = CreateRequest(
        pretrained=False,
        weights_path=path,
        user_checkpoint=True,
        num_classes=num_classes if num_classes is not None else saved_classes,
        in_chans=build.get("in_chans"),
        features_only=bool(build.get("features_only")),
        out_indices=_out_indices(build.get("out_indices")),
        strict=bool(strict),
        device=device,
        dtype=_dtype(dtype if dtype is not None else build.get("dtype")),
        kwargs=dict(build.get("kwargs") or {}),
    )
    adapter = get_adapter(base.source)
    adapter.check_request(base, request)
    model, report = _build(adapter, base, request)
    card = saved.card
    if card.source != "local":  # written before saved cards had their own identity
        was = saved.lineage
        origin = was.get("base_weights") or was.get("checkpoint") or f"{base.source}:{base.arch}"
        card = dataclasses.replace(
            card, source="local", arch=saved.folder.name, lineage={"from": str(origin)}
        )
    start = Start.saved(card, path.name, saved.weights.get("sha256"), path.stat().st_size)
    card = derive_card(
        card,
        model,
        start,
        complete=_complete(report),
        num_classes=num_classes,
        labels=labels,
    )
    lineage = dict(saved.lineage)
    lineage["parent"] = {"folder": str(saved.folder), "sha256": saved.weights.get("sha256")}
    report.notes.append(f"saved model {saved.folder} (omnizoo {saved.version or '?'})")
    record = build_record(base, request, lineage)
    _attach(model, card, report, record)
    return model
