"""int8 ONNX graphs made from omnizoo's fp32 exports with onnxruntime's quantization, kept in
the verified cache beside the graph they come from, so a model is quantized once per machine.

Two modes (:data:`MODES`), both starting from ``quant_pre_process`` (shape inference and
onnxruntime's graph optimisations: BatchNorm folded into the convolutions, so each weight is
quantized once, after the fold):

* ``"dynamic"`` (``quantize_dynamic``): the weights of ``MatMul``/``Gemm`` (a transformer's
  linear layers, every classifier head) are stored as int8 and their inputs quantized at run
  time. No calibration. Convolutions stay float: onnxruntime's dynamic ``ConvInteger`` was 3.7x
  slower than the float graph and agreed with it on 36% of the calibration photos
  (EfficientNet-Lite0, 2 vCPUs), so it is not offered.
* ``"static"`` (``quantize_static``): every supported op (Conv, MatMul, Add, ...) in QDQ form,
  per-channel int8 weights and int8 activations with symmetric ranges calibrated (MinMax) on the
  calibration batches given, i.e. images run through the card's own preprocessing. Symmetric
  int8 activations were chosen by measurement: on EfficientNet-Lite0 they agreed with fp32 on
  88% of the built-in calibration images against 69% for onnxruntime's default (uint8,
  asymmetric), and keeping the first convolution and the head in float made it worse (54%).

The cache key (:func:`quantization_key`) is the sha256 of the fp32 graph's sha256, the mode and
its settings, the onnxruntime and omnizoo versions and, for ``"static"``, the digest of the
calibration batches. The file is published like an export (:func:`omnizoo.export.cached.
publish_file`): a read-only content-addressed blob and a ref
``omnizoo-export://onnx-int8/<key>/model.onnx``; a blob whose bytes changed is re-hashed,
found damaged, deleted and made again (:meth:`~omnizoo.weights.cache.Cache.valid_blob`).

>>> key, facts = quantization_key("0" * 64, "dynamic")
>>> len(key), facts["mode"], facts["settings"]["op_types"]
(64, 'dynamic', ['MatMul', 'Gemm'])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DependencyError, ExportError

__all__ = ["MODES", "CachedQuantized", "cached_quantized", "quantization_key", "quantized_url"]

log = logging.getLogger("omnizoo.export.cache")

MODES = ("dynamic", "static")
_SETTINGS: dict[str, dict[str, Any]] = {
    "dynamic": {"op_types": ["MatMul", "Gemm"], "weight_type": "QInt8", "per_channel": False},
    "static": {
        "format": "QDQ",
        "per_channel": True,
        "weight_type": "QInt8",
        "activation_type": "QInt8",
        "activation_symmetric": True,
        "calibrate_method": "MinMax",
    },
}


@dataclass
class CachedQuantized:
    """An int8 ONNX file: where it is, its cache key, and whether it was reused."""

    path: Path
    key: str
    mode: str
    reused: bool
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    _scratch: Any = field(default=None, repr=False)  # a private copy (read-only cache)

    def describe(self) -> str:
        how = "reused from the cache" if self.reused else f"quantized in {self.seconds:.1f} s"
        return f"int8 ONNX graph ({self.mode} quantization) {how}"


def quantized_url(key: str) -> str:
    """The cache ref URL of the int8 graph with ``key``."""
    return f"omnizoo-export://onnx-int8/{key}/model.onnx"


def quantization_key(
    graph_sha256: str, mode: str, calibration_digest: str | None = None
) -> tuple[str, dict[str, Any]]:
    """``(key, facts)`` of the int8 graph made from the fp32 graph ``graph_sha256``."""
    from .._version import __version__

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    facts: dict[str, Any] = {
        "format": 1,
        "graph_sha256": graph_sha256,
        "mode": mode,
        "settings": _SETTINGS[mode],
        "onnxruntime": ort_version,
        "omnizoo": __version__,
        "calibration": calibration_digest if mode == "static" else None,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest(), facts


def _graph_sha256(cache: Any, graph: Path) -> str:
    """The fp32 graph's sha256: its blob name in the cache, else hashed."""
    from ..weights import fsafe

    if len(graph.name) == 64 and graph.parent == cache.blob_path(graph.name).parent:
        return graph.name
    return fsafe.hash_regular(graph)[0]


def cached_quantized(
    graph: Path,
    mode: str,
    *,
    calibration: Sequence[Any] = (),
    calibration_digest: str | None = None,
) -> CachedQuantized:
    """The int8 graph of the fp32 ONNX file ``graph`` from the cache, quantized and published
    first if need be. ``calibration``: float NCHW batches (numpy arrays or tensors) for
    ``"static"``, identified by ``calibration_digest`` in the key. Raises
    :class:`~omnizoo.errors.ExportError` when onnxruntime cannot quantize the graph."""
    from ..weights.download import get_cache
    from .cached import EXPORT_STALL_S, _writable, lookup_url, publish_file

    if mode not in MODES:
        raise ExportError(f"quantization mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "static" and (not calibration or not calibration_digest):
        raise ExportError("static quantization needs calibration batches and their digest")
    cache = get_cache()
    key, facts = quantization_key(_graph_sha256(cache, graph), mode, calibration_digest)
    url = quantized_url(key)
    found = lookup_url(cache, url)
    if found is not None:
        return CachedQuantized(found, key, mode, True, facts=facts)
    if not _writable(cache):
        scratch = tempfile.TemporaryDirectory(prefix="omnizoo-int8-")
        started = time.perf_counter()
        path = _quantize(graph, Path(scratch.name), mode, calibration)
        return CachedQuantized(
            path, key, mode, False, time.perf_counter() - started, facts, scratch
        )
    with cache.lock(
        key, ready=lambda: lookup_url(cache, url), stall_timeout=EXPORT_STALL_S
    ) as done:
        found = done if done is not None else lookup_url(cache, url)
        if found is not None:
            return CachedQuantized(found, key, mode, True, facts=facts)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="omnizoo-int8-") as scratch_dir:
            path = _quantize(graph, Path(scratch_dir), mode, calibration)
            origin = (
                f"{mode} int8 quantization by omnizoo {facts['omnizoo']} (onnxruntime "
                f"{facts['onnxruntime']}) of the ONNX graph sha256 {facts['graph_sha256']}"
            )
            blob = publish_file(cache, key, url, path, name=None, origin=origin)
        seconds = time.perf_counter() - started
    log.info("quantized %s (%s) in %.1f s: %s", graph.name, mode, seconds, blob)
    return CachedQuantized(blob, key, mode, False, seconds, facts)


@contextlib.contextmanager
def _quiet(ort: Any) -> Iterator[None]:
    """onnxruntime prints a warning per unused initializer while it optimises a graph; the
    quantizer logs per node. Neither is news to a user who asked for int8."""
    from .exporters import quiet_fds

    ort.set_default_logger_severity(3)
    try:
        with warnings.catch_warnings(), quiet_fds():
            warnings.simplefilter("ignore")
            yield
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default: warnings


def _quantize(graph: Path, folder: Path, mode: str, calibration: Sequence[Any]) -> Path:
    """Quantize ``graph`` into ``folder/model.onnx`` (see the module docstring)."""
    try:
        import onnxruntime as ort
        from onnxruntime import quantization as q
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        from ..errors import pip_install

        raise DependencyError(
            f"int8 quantization needs onnx and onnxruntime: {pip_install('onnx')}"
        ) from exc
    pre, out = folder / "fp32-optimized.onnx", folder / "model.onnx"
    try:
        with _quiet(ort):
            quant_pre_process(str(graph), str(pre), skip_symbolic_shape=True)
            if mode == "dynamic":
                settings = _SETTINGS["dynamic"]
                q.quantize_dynamic(
                    str(pre),
                    str(out),
                    weight_type=q.QuantType.QInt8,
                    per_channel=settings["per_channel"],
                    op_types_to_quantize=list(settings["op_types"]),
                )
            else:
                name = (
                    ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"])
                    .get_inputs()[0]
                    .name
                )
                q.quantize_static(
                    str(pre),
                    str(out),
                    _reader(q.CalibrationDataReader, name, calibration),
                    quant_format=q.QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=q.QuantType.QInt8,
                    weight_type=q.QuantType.QInt8,
                    calibrate_method=q.CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True},
                )
    except Exception as exc:  # onnxruntime raises many kinds; one error naming the graph
        reason = " ".join(str(exc).split())[:300]
        raise ExportError(
            f"onnxruntime could not quantize {graph.name} ({mode}): {type(exc).__name__}: "
            f"{reason}. Use precision='fp32'"
        ) from exc
    pre.unlink(missing_ok=True)
    return out


def _reader(base: type, input_name: str, batches: Sequence[Any]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over ready batches."""
    import numpy as np

    feeds = [{input_name: np.ascontiguousarray(np.asarray(b, dtype=np.float32))} for b in batches]

    class Reader(base):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

    return Reader()
