"""The two ways a Predictor runs a model: torch (eager) and onnxruntime.

Both take a float batch laid out as the DataConfig says (NCHW, or NHWC for a few ONNX-zoo
exports) on the CPU and return a float32 ``(N, num_outputs)`` CPU tensor of raw outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ConfigurationError, UnsupportedError

if TYPE_CHECKING:
    import torch


__all__ = ["OrtRunner", "TorchRunner", "is_onnx_model"]


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
    if out.dim() > 2 and all(int(d) == 1 for d in out.shape[2:]):
        out = out.flatten(1)  # [N, C, 1, 1] heads (Cadene squeezenet, Caffe2 densenet)
    if out.dim() == 1:
        out = out.unsqueeze(0)
    if out.dim() != 2:
        raise UnsupportedError(
            f"the model returns {tuple(out.shape)} outputs, not (batch, classes) scores: it is "
            "not a classifier. Pass task='detection' or task='segmentation' for torchvision "
            "detection/segmentation models, or run the model directly"
        )
    return out


def is_onnx_model(model: Any) -> bool:
    """True for omnizoo's onnxruntime-backed module-like objects."""
    try:
        from ..sources.onnx.model import OnnxModel
    except ImportError:
        return False
    return isinstance(model, OnnxModel)


class TorchRunner:
    """Eager torch: inference_mode, channels_last, autocast and BatchNorm folding where they
    help. ``fold_bn`` folds on a copy of the module tree (the model passed in keeps its
    weights), checked on a probe input of ``input_size`` (C, H, W); without one nothing is
    folded."""

    def __init__(
        self,
        model: Any,
        device: torch.device,
        *,
        autocast: torch.dtype | None = None,
        channels_last: bool = True,
        fold_bn: bool = True,
        input_size: tuple[int, ...] | None = None,
    ) -> None:
        import torch

        self.device = device
        self.autocast = autocast
        self.channels_last = bool(channels_last) and self._has_conv(model)
        model = model.eval()
        model = model.to(device)
        self.folded = 0
        if fold_bn and isinstance(model, torch.nn.Module):
            from .fold import fold_batchnorm

            probe = None
            if input_size is not None:
                # A fixed seed: the probe (and so the decision) is the same on every run.
                gen = torch.Generator().manual_seed(0)
                probe = torch.randn((1, *input_size), generator=gen).to(device)
            if probe is not None:
                model, self.folded = fold_batchnorm(model, probe)
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

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        elif x.device != self.device:
            x = x.to(self.device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, batch: Any) -> Any:
        """The model's raw output for a batch tensor, or for a list of image tensors
        (detection models); under inference_mode and autocast."""
        import torch

        if isinstance(batch, (list, tuple)):
            x: Any = [self._to_device(t) for t in batch]
        else:
            x = self._to_device(batch)
        with torch.inference_mode():
            if self.autocast is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.autocast):
                    return self.model(x)
            return self.model(x)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """``(N, classes)`` float32 CPU scores."""
        return _as_2d_float(self.forward(batch))


class OrtRunner:
    """onnxruntime through omnizoo's OnnxModel (layout, [N,C,1,1] outputs, fixed batches)."""

    def __init__(
        self,
        model_or_path: Any,
        device: torch.device,
        *,
        threads: int | None = None,
        card: Any = None,
    ) -> None:
        from ..sources.onnx.model import OnnxModel

        self.device = device
        self.folded = 0
        self.keepalive: Any = None  # what must outlive the session (a private graph's folder)
        if isinstance(model_or_path, (str, Path)):
            self.model = OnnxModel(
                Path(model_or_path), device=_ort_device(device), intra_op_threads=threads, card=card
            )
        else:
            model = model_or_path
            current = str(getattr(model, "device", "cpu"))
            if current.split(":")[0] != device.type and hasattr(model, "to"):
                model = model.to(_ort_device(device))
            self.model = model

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return _as_2d_float(self.model(batch))


def _ort_device(device: torch.device) -> str:
    if device.type not in ("cpu", "cuda"):
        raise ConfigurationError(f"backend='onnxruntime' runs on cpu or cuda, not {device}")
    return str(device)
