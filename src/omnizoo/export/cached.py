"""ONNX exports kept in the verified weights cache, so a model is exported once per machine.

:func:`cached_export` returns an ONNX file for a torch model, exporting it only when the cache
holds no graph for exactly this model. The key (:func:`export_key`) is the sha256 of:

* the model's **weights**: the sha256 of its state dict (every tensor's name, dtype, shape and
  bytes), so a fine-tuned, re-headed or randomly initialised model gets its own graph and an
  unchanged pretrained model always finds the same one;
* its **architecture**: the module class and the sha256 of ``repr(model)`` (layer types and
  their settings: a TF-"same"-padding EfficientNet and a plain one have the same tensors but
  different graphs), plus the version of the library the class comes from;
* the **omnizoo version**, the **exporter** and its **opset**, the torch version, and the
  input size the graph was traced at.

How it is stored and shared (the same rules as downloaded weights, :mod:`omnizoo.weights.cache`):
the file is exported into a private temporary directory, copied into a per-process temp file
of the cache while its sha256 is computed, moved into place with an atomic rename as a
read-only content-addressed blob, and a ref ``omnizoo-export://onnx/<key>/model.onnx`` points
at it (written under the cache guard, so ``omnizoo cache prune`` never deletes it half-way).
Many processes asking for the same graph (DDP ranks, Ray actors on one node) take the key's
lock: one exports, the others wait and then read the published file. A read-only cache serves
the graphs it holds, and a graph it lacks is exported into a temporary directory for this
process only. A cache hit costs the state-dict hash (0.2 s for resnet50's 100 MB) and a stat.

Models over 2 GB (ONNX's single-file limit) are not exported here.

>>> import torch
>>> key, facts = export_key(torch.nn.Linear(2, 2), input_size=(3, 8, 8))
>>> len(key), facts["exporter"], facts["opset"]
(64, 'torchscript', 17)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CacheError, ExportError, UnsupportedError
from .onnx import DEFAULT_OPSET, export_onnx_report

if TYPE_CHECKING:
    from torch import nn

    from ..values.data_config import DataConfig

__all__ = [
    "MAX_EXPORT_BYTES",
    "CachedExport",
    "cached_export",
    "export_key",
    "export_url",
    "lookup_url",
    "publish_file",
    "state_dict_sha256",
]

log = logging.getLogger("omnizoo.export.cache")

#: ONNX protobuf files cannot exceed 2 GB; bigger models are not exported by the cache.
MAX_EXPORT_BYTES = 2**31 - 2**24
#: How long a waiter waits for another process's export before exporting itself.
EXPORT_STALL_S = 600.0
_EXPORTERS = ("torchscript", "dynamo")


@dataclass
class CachedExport:
    """An ONNX file for a model: where it is, under which key, and whether it was reused."""

    path: Path
    key: str
    exporter: str
    opset: int
    reused: bool
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    # Holds the private directory of an export that could not be cached (read-only cache).
    _scratch: Any = field(default=None, repr=False)

    def describe(self) -> str:
        how = "reused from the cache" if self.reused else f"exported in {self.seconds:.1f} s"
        return f"ONNX graph {how} ({self.exporter} exporter, opset {self.opset})"


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 over every tensor of ``model.state_dict()``: name, dtype, shape and bytes.

    >>> import torch
    >>> a = torch.nn.Linear(2, 2)
    >>> state_dict_sha256(a) == state_dict_sha256(a)
    True
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):
            continue
        if tensor.is_meta:
            raise UnsupportedError(f"{name} is on the meta device: the model has no weights")
        t = tensor.detach()
        header = f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        if t.numel():
            flat = t.cpu().contiguous().reshape(-1).view(torch.uint8)
            digest.update(flat.numpy().data)
    return digest.hexdigest()


def _library_version(model: Any) -> str | None:
    package = type(model).__module__.split(".", 1)[0]
    try:
        return importlib.metadata.version(package)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def export_key(
    model: nn.Module,
    *,
    input_size: tuple[int, ...],
    exporter: str = "torchscript",
    opset: int | None = None,
    weights_sha256: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """``(key, facts)``: the cache key of ``model``'s ONNX graph and what went into it (see
    the module docstring)."""
    import torch

    from .._version import __version__

    card = getattr(model, "omnizoo_card", None)
    facts: dict[str, Any] = {
        "format": 1,
        "weights_sha256": weights_sha256 or state_dict_sha256(model),
        "structure_sha256": hashlib.sha256(repr(model).encode()).hexdigest(),
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "library": _library_version(model),
        "card": getattr(card, "name", None),
        "omnizoo": __version__,
        "exporter": exporter,
        "opset": int(opset) if opset is not None else DEFAULT_OPSET[exporter],
        "torch": torch.__version__,
        "input_size": [int(v) for v in input_size],
    }
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return key, facts


def export_url(key: str) -> str:
    """The cache ref URL of the graph with ``key``."""
    return f"omnizoo-export://onnx/{key}/model.onnx"


def _param_bytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _lookup(cache: Any, key: str) -> Path | None:
    return lookup_url(cache, export_url(key))


def lookup_url(cache: Any, url: str) -> Path | None:
    """The intact blob a cache ref points at (re-hashed when its size or mtime changed: a
    damaged file is deleted and is no hit), or None."""
    ref = cache.ref(url)
    if ref is None:
        return None
    path: Path | None = cache.valid_blob(ref["sha256"])
    return path


def cached_export(model: nn.Module, data_config: DataConfig) -> CachedExport:
    """The ONNX graph of ``model`` (eval mode, dynamic batch) from the cache, exported and
    published there first if need be. Raises :class:`~omnizoo.errors.ExportError` when
    neither exporter can export it, :class:`~omnizoo.errors.UnsupportedError` for models
    over 2 GB."""
    from ..weights.download import get_cache

    size = _param_bytes(model)
    if size > MAX_EXPORT_BYTES:
        raise UnsupportedError(
            f"the model holds {size / 2**30:.1f} GB of tensors; a single ONNX file holds 2 GB"
        )
    input_size = tuple(int(v) for v in data_config.input_size)
    weights = state_dict_sha256(model)
    keys = {
        which: export_key(model, input_size=input_size, exporter=which, weights_sha256=weights)
        for which in _EXPORTERS
    }
    cache = get_cache()
    for which, (key, facts) in keys.items():
        found = _lookup(cache, key)
        if found is not None:
            return CachedExport(found, key, which, facts["opset"], True, facts=facts)
    first_key = keys["torchscript"][0]
    if not _writable(cache):  # a read-only cache: export for this process only
        log.info("the weights cache %s cannot store ONNX exports; exporting privately", cache.root)
        return _export_private(model, data_config, keys)
    with cache.lock(
        first_key, ready=lambda: _lookup(cache, first_key), stall_timeout=EXPORT_STALL_S
    ) as done:
        for which, (key, facts) in keys.items():
            found = done if done is not None and which == "torchscript" else _lookup(cache, key)
            if found is not None:
                return CachedExport(found, key, which, facts["opset"], True, facts=facts)
        return _export_and_publish(cache, model, data_config, keys)


def _writable(cache: Any) -> bool:
    """Whether omnizoo may add files to this cache (False for a read-only one)."""
    try:
        cache.ensure()
    except CacheError:
        return False
    return all(os.access(d, os.W_OK) for d in (cache.blobs, cache.refs, cache.tmp, cache.locks))


def _export(model: nn.Module, data_config: DataConfig, directory: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx_report(
            model,
            directory / "model.onnx",
            verify=False,
            dynamic_batch=True,
            data_config=data_config,
        )


def _export_private(
    model: nn.Module, data_config: DataConfig, keys: dict[str, tuple[str, dict[str, Any]]]
) -> CachedExport:
    scratch = tempfile.TemporaryDirectory(prefix="omnizoo-export-")
    started = time.perf_counter()
    report = _export(model, data_config, Path(scratch.name))
    key, facts = keys[report.exporter]
    return CachedExport(
        report.path,
        key,
        report.exporter,
        report.opset,
        False,
        time.perf_counter() - started,
        facts,
        scratch,
    )


def _export_and_publish(
    cache: Any,
    model: nn.Module,
    data_config: DataConfig,
    keys: dict[str, tuple[str, dict[str, Any]]],
) -> CachedExport:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="omnizoo-export-") as scratch:
        report = _export(model, data_config, Path(scratch))
        if len(list(Path(scratch).iterdir())) != 1:  # pragma: no cover - guarded by the size
            raise ExportError("the export was written as more than one file; not cached")
        key, facts = keys[report.exporter]
        origin = (
            f"exported by omnizoo {facts['omnizoo']} ({report.exporter} exporter, opset "
            f"{report.opset}, torch {facts['torch']}) from weights sha256 "
            f"{facts['weights_sha256']}"
        )
        blob = publish_file(
            cache, key, export_url(key), report.path, name=facts["card"], origin=origin
        )
    seconds = time.perf_counter() - started
    log.info("exported %s to ONNX in %.1f s: %s", facts["card"] or facts["class"], seconds, blob)
    return CachedExport(blob, key, report.exporter, report.opset, False, seconds, facts)


def publish_file(
    cache: Any, key: str, url: str, source: Path, *, name: str | None, origin: str
) -> Path:
    """Copy a file omnizoo just wrote (``source``, in a private directory) into the cache as
    a read-only content-addressed blob, hashing as it copies, and point ``url`` at it (the
    ref is added under the cache guard, so ``cache prune`` never sees it half-way)."""
    from ..weights import fsafe

    temp = cache.new_temp(key)
    try:
        digest = hashlib.sha256()
        with open(source, "rb") as src, os.fdopen(fsafe.create_new(temp), "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        blob: Path = cache.publish(temp, digest.hexdigest())
    finally:
        cache.release_temp(temp)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    with cache.guard():
        if fsafe.lstat_regular(blob) is None:
            raise CacheError(f"{blob} was deleted right after it was published; retry")
        cache.add_ref(url, blob.name, name=name, fetched_from=origin)
    return blob
