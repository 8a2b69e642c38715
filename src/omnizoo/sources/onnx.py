"""The ONNX model zoo (github.com/onnx/models): its 113 ImageNet classifiers.

* **The manifest.** ``ONNX_HUB_MANIFEST.json`` at the last commit that changed it (ddbbd127,
  2023-12-26; ``settings.onnx_manifest_url``) is fetched once through the verified cache and
  checked against :data:`MANIFEST_SHA256`; listing works offline after that. Without network
  and without a cached copy the source lists nothing (``list_models`` keeps working) and
  :func:`manifest_problem` says how to get it: run ``omnizoo download`` on the manifest URL
  (or :func:`fetch_manifest`), or point ``OMNIZOO_ONNX_MANIFEST_URL`` at a mirror or at a local
  copy of the file (a path or ``file://`` URL; its sha256 must match too).
* **Names.** ``onnx:<file stem>`` as the zoo spells the file (``onnx:resnet50-v1-7``,
  ``onnx:bvlcalexnet-12-int8``, ``onnx:squeezenet1.0-12``). The tag is the dataset:
  ``imagenet`` (``ilsvrc13_det`` for the 200-class R-CNN).
* **Downloads.** The zoo stopped serving Git-LFS downloads on 2025-07-01, so each file's URLs
  are a chain: the Hugging Face copy (onnxmodelzoo/legacy_models, same relative paths) first,
  then the original LFS media host. Every file has a full sha256 and size in the manifest;
  OMNIZOO_MIRRORS still goes first.
* **Preprocessing** per family, and which entries are classifiers: :mod:`.onnx_zoo`.
* **Models** are :class:`omnizoo.inference.onnxrt.OnnxModel` (onnxruntime): NCHW float tensor
  in, ``card.output`` ("logits" or "probabilities") out. Opset < 7 entries are listed, marked
  as not loadable by onnxruntime, and refused with a :class:`BackendError` naming a loadable
  opset of the same model.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import (
    BackendError,
    DownloadError,
    HashMismatchError,
    IntegrityError,
    OfflineError,
    UnsupportedError,
)
from ..registry.card import ModelCard, WeightsFile
from ..settings import get_settings
from .base import INDEX_SCHEMA, CreateRequest, LoadReport, SourceAdapter
from .onnx_zoo import FAMILIES, ZooEntry, classify_manifest

__all__ = [
    "HF_MIRROR",
    "LFS_HOST",
    "MANIFEST_SHA256",
    "OnnxZooSource",
    "download_test_data",
    "fetch_manifest",
    "load_manifest",
    "load_test_data",
    "manifest_problem",
    "model_urls",
]

log = logging.getLogger("omnizoo.sources.onnx")

#: sha256 of ONNX_HUB_MANIFEST.json at onnx/models ddbbd1274c8387e3745778705810c340dea3d8c7.
MANIFEST_SHA256 = "569ccd009a5cdc885bac88a1ceaf72e69e69262f0e1c9d16ef5a7339021a2904"
HF_MIRROR = "https://huggingface.co/onnxmodelzoo/legacy_models/resolve/main/"
HF_REPO = "onnxmodelzoo/legacy_models"
LFS_HOST = "https://media.githubusercontent.com/media/onnx/models/main/"
#: Bumped when this module (or .onnx_zoo) changes what its cards contain.
CARDS_VERSION = 1
_ZOO_TREE = "https://github.com/onnx/models/tree/main/"

_problem: str | None = None
_tried: set[str] = set()  # manifest sources already tried (and failed) in this process


def model_urls(model_path: str) -> tuple[str, ...]:
    """The mirror chain for a zoo file: Hugging Face copy, then the original LFS host."""
    path = model_path.lstrip("/")
    return (HF_MIRROR + path, LFS_HOST + path)


def _local_manifest(source: str) -> Path | None:
    if source.startswith("file://"):
        return Path(source[len("file://") :])
    if "://" not in source:
        return Path(source).expanduser()
    return None


def _how_to_fetch(source: str) -> str:
    return (
        f"the ONNX zoo manifest is not cached; fetch it once with `omnizoo download {source}` "
        "(or omnizoo.sources.onnx.fetch_manifest()) on a machine with network access, or set "
        "OMNIZOO_ONNX_MANIFEST_URL to a mirror URL or to a local copy of ONNX_HUB_MANIFEST.json "
        f"(onnx/models commit ddbbd127, sha256 {MANIFEST_SHA256})"
    )


def manifest_problem() -> str | None:
    """Why the onnx source lists nothing (None when the manifest is available)."""
    if _problem is not None:
        return _problem
    if _cached_manifest_path() is not None:
        return None
    return _how_to_fetch(get_settings().onnx_manifest_url)


def _cached_manifest_path() -> Path | None:
    """The verified manifest on disk, without any network access (cheap: a stat)."""
    source = get_settings().onnx_manifest_url
    local = _local_manifest(source)
    if local is not None:  # a local copy: small, so it is checked on every use
        try:
            ok = hashlib.sha256(local.read_bytes()).hexdigest() == MANIFEST_SHA256
        except OSError:
            return None
        return local if ok else None
    from ..weights.cache import Cache

    return Cache(get_settings().weights_dir).valid_blob(MANIFEST_SHA256)


def fetch_manifest() -> Path:
    """Fetch (or find in the cache) the pinned manifest; verified by its sha256."""
    source = get_settings().onnx_manifest_url
    local = _local_manifest(source)
    if local is not None:
        if not local.is_file():
            raise DownloadError(f"OMNIZOO_ONNX_MANIFEST_URL points at {local}, which is not a file")
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        if digest != MANIFEST_SHA256:
            raise HashMismatchError(
                f"the ONNX zoo manifest at {local} has sha256 {digest}, not the pinned "
                f"{MANIFEST_SHA256} (onnx/models ddbbd127)"
            )
        return local
    from ..weights.download import fetch_url

    return fetch_url(source, sha256=MANIFEST_SHA256)


def load_manifest(*, fetch: bool = True) -> list[dict[str, Any]]:
    """The parsed, verified manifest. ``fetch=False``: only what is already on disk.

    Raises :class:`OfflineError` / :class:`DownloadError` when it is unavailable and
    :class:`HashMismatchError` when a local copy is not the pinned file.
    """
    path = _cached_manifest_path()
    if path is None:
        local = _local_manifest(get_settings().onnx_manifest_url)
        if not fetch and local is None:
            raise OfflineError(_how_to_fetch(get_settings().onnx_manifest_url))
        path = fetch_manifest()  # a local copy is read (and checked) even when offline
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MANIFEST_SHA256:
        raise HashMismatchError(
            f"the ONNX zoo manifest at {path} has sha256 {digest}, not the pinned "
            f"{MANIFEST_SHA256} (onnx/models ddbbd127); omnizoo's family rules are written for "
            "that file"
        )
    manifest = json.loads(data)
    if not isinstance(manifest, list):
        raise IntegrityError(f"{path} is not an ONNX hub manifest (expected a JSON list)")
    return manifest


def _try_manifest() -> list[dict[str, Any]] | None:
    """The manifest for card building: cached, else one quick fetch attempt per process."""
    global _problem
    settings = get_settings()
    source = settings.onnx_manifest_url
    fetch = not settings.offline and source not in _tried
    _problem = None
    try:
        if fetch and _cached_manifest_path() is None:
            from .. import settings as settings_module

            # listing must stay quick when the network is unreachable: one attempt, short waits
            with settings_module.override(
                retries=1,
                connect_timeout=min(settings.connect_timeout, 5.0),
                read_timeout=min(settings.read_timeout, 30.0),
            ):
                return load_manifest(fetch=True)
        return load_manifest(fetch=False)
    except (DownloadError, IntegrityError, OSError, ValueError) as exc:
        _tried.add(source)
        _problem = (
            str(exc)
            if isinstance(exc, OfflineError)
            else (f"{_how_to_fetch(source)} ({type(exc).__name__}: {exc})")
        )
        log.info("onnx source lists no models: %s", _problem)
        return None


def _card(entry: ZooEntry) -> ModelCard:
    meta = entry.raw.get("metadata") or {}
    family = FAMILIES[entry.family]
    data = family.data
    if entry.layout != data.layout:  # the graph says otherwise: trust the graph
        data = data.replace(layout=entry.layout)
    notes = [f"preprocessing ({entry.family}): {family.note}"]
    if not family.verified:
        notes.append("preprocessing unverified (DataConfig.verified=False)")
    if not entry.loadable:
        notes.append(
            f"opset {entry.opset} < 7: onnxruntime cannot load it (it only supports opset >= 7);"
            " use a higher-opset file of the same model"
        )
    if entry.io_inferred:
        notes.append(
            "the manifest has no io_ports for this opset; taken from the same model's other opset"
        )
    if entry.softmax_in_graph:
        notes.append("softmax is part of the graph: outputs are probabilities")
    if len(entry.output_shape) == 4:
        notes.append(f"graph output {list(entry.output_shape)} is flattened to [N, classes]")
    if entry.fixed_batch:
        notes.append("graph has a fixed batch of 1: batches run one sample at a time")
    imagenet = entry.num_classes == 1000
    if not imagenet:
        notes.append(
            f"{entry.num_classes} ILSVRC2013 detection classes (R-CNN SVM scores), not the "
            "ImageNet-1k label set"
        )
    test_data = None
    if meta.get("model_with_data_path"):
        test_data = {
            "path": meta["model_with_data_path"],
            "sha256": meta.get("model_with_data_sha"),
            "size": meta.get("model_with_data_bytes"),
        }
    directory = entry.model_path.rsplit("/", 1)[0]
    if directory.endswith("/model"):
        directory = directory[: -len("/model")]
    return ModelCard(
        source="onnx",
        arch=entry.arch,
        tag="imagenet" if imagenet else "ilsvrc13_det",
        task="classification",
        weights=WeightsFile(
            urls=model_urls(entry.model_path),
            filename=entry.model_path.rsplit("/", 1)[-1],
            sha256=meta.get("model_sha"),
            size=meta.get("model_bytes"),
            format="onnx",
            hf_hub_id=HF_REPO,
        ),
        is_default=True,
        num_classes=entry.num_classes,
        label_set="imagenet-1k" if imagenet else None,
        data=data,
        output="probabilities" if entry.softmax_in_graph else "logits",
        license="apache-2.0",
        origin=_ZOO_TREE + directory,
        notes=tuple(notes),
        extra={
            "zoo_model": entry.model,
            "zoo_file": entry.stem,
            "model_path": entry.model_path,
            "opset": entry.opset,
            "onnx_version": entry.raw.get("onnx_version"),
            "family": entry.family,
            "preprocessing_sources": list(family.sources),
            "precision": entry.precision,
            "layout": entry.layout,
            "input_name": entry.input_name,
            "input_shape": list(entry.input_shape),
            "output_name": entry.output_name,
            "output_shape": list(entry.output_shape),
            "softmax_in_graph": entry.softmax_in_graph,
            "onnxruntime_loadable": entry.loadable,
            "io_ports_inferred": entry.io_inferred,
            "test_data": test_data,
        },
    )


class OnnxZooSource(SourceAdapter):
    """The ``onnx:`` source (the ONNX model zoo, run with onnxruntime)."""

    name = "onnx"
    distribution = "onnxruntime"

    def index_key(self) -> str:
        # The cards depend on the (pinned) manifest, not on the onnxruntime version. While the
        # manifest is missing the key names the source URL and the day, so an empty listing is
        # cached at most for a day per URL before another fetch is tried.
        if _cached_manifest_path() is not None:
            state = "ok"
        else:
            source = get_settings().onnx_manifest_url
            day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
            state = f"missing-{hashlib.sha256(source.encode()).hexdigest()[:8]}-{day}"
        return (
            f"{self.name}-manifest{MANIFEST_SHA256[:12]}-{state}-schema{INDEX_SCHEMA}"
            f"-cards{CARDS_VERSION}"
        )

    def build_cards(self) -> list[ModelCard]:
        manifest = _try_manifest()
        if manifest is None:
            return []
        return [_card(entry) for entry in classify_manifest(manifest)]

    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
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
        if request.weights_path is None:
            raise UnsupportedError(
                f"{card.name} is an ONNX graph: it exists only with its weights; use "
                "pretrained=True (or checkpoint_path= a local copy of the .onnx file)"
            )
        from ..inference.onnxrt import OnnxModel

        model = OnnxModel(Path(request.weights_path), card=card, device="cpu")
        report = LoadReport(source_file=str(request.weights_path))
        report.notes.append(f"onnxruntime session ({', '.join(model.providers)})")
        return model, report

    def check_request(self, card: ModelCard, request: CreateRequest) -> None:
        """Refuse an opset onnxruntime cannot load before its file is downloaded."""
        allow_legacy = bool(request.kwargs.get("allow_legacy_opset", False))
        if not card.extra.get("onnxruntime_loadable", True) and not allow_legacy:
            raise BackendError(unloadable_message(card))


def unloadable_message(card: ModelCard) -> str:
    """The BackendError text for an opset the installed onnxruntime cannot load."""
    opset = card.extra.get("opset")
    alternatives = ""
    try:
        from ..registry.registry import list_models

        zoo_model = card.extra.get("zoo_model")
        alts = []
        for name in list_models(source="onnx", pretrained=True):
            from ..registry.registry import get_card

            other = get_card(name)
            if other.extra.get("zoo_model") == zoo_model and other.extra.get(
                "onnxruntime_loadable"
            ):
                alts.append(f"onnx:{other.arch}")
        if alts:
            alternatives = f"; the same model at a loadable opset: {', '.join(sorted(alts))}"
    except Exception:  # pragma: no cover - the message is best effort
        pass
    return (
        f"{card.name} is an opset-{opset} graph; onnxruntime only supports ONNX opset >= 7, so it "
        f"cannot load this file{alternatives}. Pass allow_legacy_opset=True to try anyway."
    )


def download_test_data(name_or_card: str | ModelCard) -> Path:
    """Fetch a zoo model's ``model_with_data`` tarball (sha256-verified) and extract it safely.

    Returns the extracted directory (``<OMNIZOO_HOME>/onnx-test-data/<sha256>``), which holds the
    model and its ``test_data_set_*`` protobuf inputs/outputs (:func:`load_test_data`).
    """
    from ..weights.archive import safe_extract
    from ..weights.download import fetch_weights

    if isinstance(name_or_card, ModelCard):
        card = name_or_card
    else:
        from ..registry.registry import get_card

        card = get_card(name_or_card)
    info = card.extra.get("test_data") if card.source == "onnx" else None
    if not info or not info.get("path"):
        raise UnsupportedError(f"{card.name} has no ONNX zoo test-data archive")
    dest = get_settings().home / "onnx-test-data" / str(info["sha256"])
    if dest.is_dir():
        return dest
    path = info["path"]
    tarball = fetch_weights(
        WeightsFile(
            urls=model_urls(path),
            filename=path.rsplit("/", 1)[-1],
            sha256=info.get("sha256"),
            size=info.get("size"),
            format="pickle",  # not a weights format; only the bytes matter here
        ),
        name=f"{card.name} test data",
    )
    try:
        return safe_extract(tarball, dest)
    except FileExistsError:  # another process finished first
        return dest


def load_test_data(directory: str | Path) -> list[tuple[list[Any], list[Any]]]:
    """The ``test_data_set_*`` folders under ``directory`` as ``(inputs, outputs)`` numpy lists."""
    import onnx
    from onnx import numpy_helper

    sets = []
    for folder in sorted(Path(directory).rglob("test_data_set_*")):
        if not folder.is_dir():
            continue
        pair: tuple[list[Any], list[Any]] = ([], [])
        for kind, bucket in (("input", pair[0]), ("output", pair[1])):
            for pb in sorted(folder.glob(f"{kind}_*.pb")):
                tensor = onnx.TensorProto()
                tensor.ParseFromString(pb.read_bytes())
                bucket.append(numpy_helper.to_array(tensor).copy())
        sets.append(pair)
    return sets
