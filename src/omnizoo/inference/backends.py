"""The two ways a Predictor runs a model: torch (eager) and onnxruntime.

Both take a float batch laid out as the DataConfig says (NCHW, or NHWC for a few ONNX-zoo
exports) on the CPU and return a float32 ``(N, num_outputs)`` CPU tensor of raw outputs.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ConfigurationError, DependencyError

if TYPE_CHECKING:
    import torch

__all__ = ["OrtRunner", "TorchRunner", "export_for_onnxruntime", "is_onnx_model"]


def _first_tensor(out: Any) -> Any:
    """The logits of a model output: first of a tuple/list, 'logits'/'out' of a dict."""
    if isinstance(out, (tuple, list)):
        return _first_tensor(out[0])
    if isinstance(out, dict):
        for key in ("logits", "out", "output"):
            if key in out:
                return out[key]
        return _first_tensor(next(iter(out.values())))
    logits = getattr(out, "logits", None)  # torchvision InceptionOutputs / GoogLeNetOutputs
    if logits is not None:
        return logits
    return out


def _as_2d_float(out: Any) -> torch.Tensor:
    import numpy as np
    import torch

    out = _first_tensor(out)
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise BackendError(f"the model returned a {type(out).__name__}, not a tensor")
    out = out.detach().float().cpu()
    if out.dim() > 2:
        out = out.flatten(1)  # [N, C, 1, 1] heads (Cadene squeezenet, Caffe2 densenet)
    if out.dim() == 1:
        out = out.unsqueeze(0)
    return out


def is_onnx_model(model: Any) -> bool:
    """True for omnizoo's onnxruntime-backed module-like objects."""
    try:
        from .onnxrt import OnnxModel
    except ImportError:
        return False
    return isinstance(model, OnnxModel)


class TorchRunner:
    """Eager torch: inference_mode, channels_last and autocast where they help."""

    def __init__(
        self,
        model: Any,
        device: torch.device,
        *,
        autocast: torch.dtype | None = None,
        channels_last: bool = True,
    ) -> None:
        import torch

        self.device = device
        self.autocast = autocast
        self.channels_last = bool(channels_last) and self._has_conv(model)
        model = model.eval()
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @staticmethod
    def _has_conv(model: Any) -> bool:
        import torch

        modules = getattr(model, "modules", None)
        if modules is None:
            return False
        return any(isinstance(m, torch.nn.Conv2d) for m in modules())

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        x = batch
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        elif x.device != self.device:
            x = x.to(self.device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.autocast):
                    out = self.model(x)
            else:
                out = self.model(x)
            return _as_2d_float(out)


class OrtRunner:
    """An onnxruntime session (or omnizoo's OnnxModel) fed numpy batches."""

    def __init__(self, model_or_path: Any, device: torch.device) -> None:
        self.device = device
        self.model: Any = None
        self.session: Any = None
        if isinstance(model_or_path, (str, Path)):
            self.session = _session(Path(model_or_path), device)
            self.input_name = self.session.get_inputs()[0].name
        else:
            self.model = model_or_path

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.model is not None:
            return _as_2d_float(self.model(batch))
        try:
            out = self.session.run(None, {self.input_name: batch.contiguous().numpy()})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime failed to run the model: {exc}") from exc
        return _as_2d_float(out[0])


def _session(path: Path, device: torch.device) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyError("backend='onnxruntime' needs onnxruntime") from exc
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigurationError(
                "backend='onnxruntime' on CUDA needs onnxruntime-gpu; this onnxruntime has "
                + ", ".join(ort.get_available_providers())
            )
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        raise BackendError(f"onnxruntime could not load {path}: {exc}") from exc


def export_for_onnxruntime(model: Any, input_shape: tuple[int, ...], directory: Path) -> Path:
    """Export a torch module to ONNX (dynamic batch) in ``directory``; returns the file."""
    import torch

    path = directory / "model.onnx"
    model = model.eval().cpu()
    try:
        from ..export.onnx import export_onnx
    except ImportError:
        export_onnx = None
    if export_onnx is not None:
        try:
            return Path(export_onnx(model, path, verify=False))
        except TypeError:
            pass  # a different signature: fall back to the plain export below
    dummy = torch.zeros((2, *input_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


@contextlib.contextmanager
def temporary_directory() -> Any:
    with tempfile.TemporaryDirectory(prefix="omnizoo-ort-") as tmp:
        yield Path(tmp)
