"""The pinned ONNX zoo manifest: shipped with the package (``omnizoo/data/
onnx_hub_manifest.json.gz``, put there by ``scripts/build_prebuilt.py``), else fetched once
through the verified cache (or read from a local copy); always checked against
:data:`MANIFEST_SHA256`; and why the source lists nothing without it."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ...errors import DownloadError, HashMismatchError, IntegrityError, OfflineError
from ...settings import get_settings
from ..package_data import package_data

__all__ = [
    "HF_MIRROR",
    "HF_REPO",
    "LFS_HOST",
    "MANIFEST_SHA256",
    "SHIPPED",
    "cached_manifest_path",
    "fetch_manifest",
    "load_manifest",
    "manifest_available",
    "manifest_problem",
    "model_urls",
    "shipped_manifest",
    "try_manifest",
]

log = logging.getLogger("omnizoo.sources.onnx")


#: sha256 of ONNX_HUB_MANIFEST.json at onnx/models ddbbd1274c8387e3745778705810c340dea3d8c7.
MANIFEST_SHA256 = "569ccd009a5cdc885bac88a1ceaf72e69e69262f0e1c9d16ef5a7339021a2904"


HF_MIRROR = "https://huggingface.co/onnxmodelzoo/legacy_models/resolve/main/"


HF_REPO = "onnxmodelzoo/legacy_models"


LFS_HOST = "https://media.githubusercontent.com/media/onnx/models/main/"


_problem: str | None = None

#: The copy shipped in the package (gzip); a trimmed install may lack it.
SHIPPED = package_data("onnx_hub_manifest.json.gz")
# (path, pinned sha256) -> verified bytes (None: missing or not the pinned file)
_shipped: dict[tuple[Path, str], bytes | None] = {}


def shipped_manifest() -> bytes | None:
    """The manifest shipped in the package, verified (None when missing or not the pinned
    file; a damaged copy is reported once)."""
    path = SHIPPED
    memo = (path, MANIFEST_SHA256)
    if memo not in _shipped:
        data: bytes | None = None
        if path.is_file():
            import gzip

            try:
                data = gzip.decompress(path.read_bytes())
            except (OSError, EOFError):
                data = None
            if data is not None and hashlib.sha256(data).hexdigest() != MANIFEST_SHA256:
                data = None
            if data is None:
                log.warning("the ONNX zoo manifest shipped at %s is not the pinned file", path)
        _shipped[memo] = data
    return _shipped[memo]


def manifest_available() -> bool:
    """Whether the manifest can be read without the network (shipped, cached or local)."""
    return shipped_manifest() is not None or cached_manifest_path() is not None


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
        "(or omnizoo.sources.onnx.manifest.fetch_manifest()) on a machine with network access, "
        "or set "
        "OMNIZOO_ONNX_MANIFEST_URL to a mirror URL or to a local copy of ONNX_HUB_MANIFEST.json "
        f"(onnx/models commit ddbbd127, sha256 {MANIFEST_SHA256})"
    )


def manifest_problem() -> str | None:
    """Why the onnx source lists nothing (None when the manifest is available)."""
    if shipped_manifest() is not None:
        return None
    if _problem is not None:
        return _problem
    if cached_manifest_path() is not None:
        return None
    return _how_to_fetch(get_settings().onnx_manifest_url)


def cached_manifest_path() -> Path | None:
    """The verified manifest on disk, without any network access (cheap: a stat)."""
    source = get_settings().onnx_manifest_url
    local = _local_manifest(source)
    if local is not None:  # a local copy: small, so it is checked on every use
        try:
            ok = hashlib.sha256(local.read_bytes()).hexdigest() == MANIFEST_SHA256
        except OSError:
            return None
        return local if ok else None
    from ...weights.cache import Cache

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
    from ...weights.download import fetch_verified

    return fetch_verified(source, sha256=MANIFEST_SHA256).path


def load_manifest(*, fetch: bool = True) -> list[dict[str, Any]]:
    """The parsed, verified manifest. ``fetch=False``: only what is already on disk.

    Raises :class:`OfflineError` / :class:`DownloadError` when it is unavailable and
    :class:`HashMismatchError` when a local copy is not the pinned file.
    """
    shipped = shipped_manifest()
    if shipped is not None:
        return _parse(shipped, SHIPPED)
    path = cached_manifest_path()
    if path is None:
        local = _local_manifest(get_settings().onnx_manifest_url)
        if not fetch and local is None:
            raise OfflineError(_how_to_fetch(get_settings().onnx_manifest_url))
        path = fetch_manifest()  # a local copy is read (and checked) even when offline
    return _parse(path.read_bytes(), path)


def _parse(data: bytes, path: Path) -> list[dict[str, Any]]:
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


def try_manifest() -> list[dict[str, Any]] | None:
    """The manifest for card building: cached, else one quick fetch attempt per process."""
    global _problem
    settings = get_settings()
    source = settings.onnx_manifest_url
    fetch = not settings.offline and source not in _tried
    _problem = None
    try:
        if fetch and not manifest_available():
            from ... import settings as settings_module

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
