"""OnnxModel: an onnxruntime session that calls like a torch classifier.

``OnnxModel(path, card=card)(x)`` takes an ``[N, C, H, W]`` float tensor (or numpy array) and
returns an ``[N, num_classes]`` float32 tensor: logits, or probabilities when the graph ends in
a softmax (``card.output`` says which). The graph's quirks stay inside:

* NHWC graphs (TF EfficientNet-Lite4): the NCHW input is transposed; an input already in
  NHWC (``[N, H, W, C]``, as ``DataConfig(layout="NHWC")`` transforms produce) is passed as is;
* ``[N, classes, 1, 1]`` outputs (Caffe2 DenseNet-121, SqueezeNet 1.0) are flattened;
* graphs with a fixed batch of 1 run one sample at a time; dynamic-batch graphs run the whole
  batch (and fall back to one at a time if the graph's reshapes turn out to pin the batch);
* onnxruntime errors become :class:`~omnizoo.errors.BackendError` with the model's name.

CPU by default; ``device="cuda[:i]"`` uses the CUDA execution provider when the installed
onnxruntime has it (``device="auto"``: CUDA if available, else CPU).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BackendError, ConfigurationError, DependencyError, UnsupportedError

if TYPE_CHECKING:
    import torch

    from ...values.card import ModelCard

__all__ = ["OnnxModel", "providers_for"]


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        from ...errors import pip_install

        raise DependencyError(
            f"ONNX models run on onnxruntime: {pip_install('onnx')} (or pip install "
            "onnxruntime-gpu)"
        ) from exc
    return ort


def providers_for(device: str) -> list[Any]:
    """onnxruntime execution providers for ``device`` ("cpu", "cuda", "cuda:1", "auto")."""
    ort = _ort()
    available = ort.get_available_providers()
    text = str(device).lower()
    if text in ("auto", ""):
        text = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if text == "cpu":
        return ["CPUExecutionProvider"]
    if text.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise BackendError(
                f"device={device!r}: this onnxruntime has no CUDA execution provider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu, or use device='cpu'"
            )
        index = int(text.split(":", 1)[1]) if ":" in text else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ConfigurationError(f"device={device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'")


class OnnxModel:
    """A module-like wrapper around an onnxruntime ``InferenceSession`` (see module docstring)."""

    training = False

    def __init__(
        self,
        path: str | Path,
        *,
        card: ModelCard | None = None,
        device: str = "cpu",
        layout: str | None = None,
        output: str | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.card = card
        self.omnizoo_card = card
        extra = dict(card.extra) if card is not None else {}
        self.name = card.name if card is not None else self.path.name
        self.layout = (
            layout or extra.get("layout") or (card.data.layout if card is not None else "NCHW")
        )
        self.output = output or (card.output if card is not None else "logits")
        self._intra = intra_op_threads
        self._lock = threading.Lock()
        self._batch_ok: bool | None = None
        self.device = str(device)
        self._open(self.device)

    # -- session -------------------------------------------------------------------------------
    def _open(self, device: str) -> None:
        ort = _ort()
        providers = providers_for(device)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: no opset/optimizer chatter on stderr
        if self._intra:
            opts.intra_op_num_threads = int(self._intra)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            opset = self.card.extra.get("opset") if self.card is not None else None
            hint = (
                f" (an opset-{opset} graph; onnxruntime supports opset >= 7 only)"
                if isinstance(opset, int) and opset < 7
                else ""
            )
            raise BackendError(
                f"onnxruntime cannot load {self.name} from {self.path}{hint}: "
                f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            ) from None
        self.providers = list(self.session.get_providers())
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_name = self.session.get_outputs()[0].name
        first = self.input_shape[0] if self.input_shape else None
        self.fixed_batch = isinstance(first, int) and first == 1
        self._batch_ok = None
        channel_dim = -1 if self.layout == "NHWC" else 1
        dim = self.input_shape[channel_dim] if len(self.input_shape) == 4 else None
        self.in_chans = dim if isinstance(dim, int) else 3

    # -- calling ---------------------------------------------------------------------------------
    def __call__(self, x: Any) -> torch.Tensor:
        return self.forward(x)

    def forward(self, x: Any) -> torch.Tensor:
        """Run the graph on a batch; see the module docstring for the conventions."""
        import numpy as np
        import torch

        out_device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise ConfigurationError(
                f"{self.name} takes a 4-d image batch [N, C, H, W], got shape {tuple(arr.shape)}"
            )
        arr = self._to_graph_layout(arr).astype(np.float32, copy=False)
        arr = np.ascontiguousarray(arr)
        if self.fixed_batch or self._batch_ok is False or arr.shape[0] == 1:
            outs = [self._run(arr[i : i + 1]) for i in range(arr.shape[0])]
            result = np.concatenate(outs, axis=0)
        else:
            try:
                result = self._run(arr)
                if result.shape[0] != arr.shape[0]:
                    raise BackendError("batch size changed")
                self._batch_ok = True
            except BackendError:
                if self._batch_ok:  # batching worked before: this is a real failure
                    raise
                self._batch_ok = False
                outs = [self._run(arr[i : i + 1]) for i in range(arr.shape[0])]
                result = np.concatenate(outs, axis=0)
        tensor = torch.from_numpy(np.ascontiguousarray(result)).float()
        return tensor.to(out_device) if out_device.type != "cpu" else tensor

    def _to_graph_layout(self, arr: Any) -> Any:
        c = self.in_chans
        if self.layout == "NHWC":
            if arr.shape[1] == c and arr.shape[-1] != c:
                return arr.transpose(0, 2, 3, 1)
            return arr
        if arr.shape[1] != c and arr.shape[-1] == c:
            return arr.transpose(0, 3, 1, 2)  # an NHWC batch given to an NCHW graph
        return arr

    def _run(self, arr: Any) -> Any:
        try:
            with self._lock:
                out = self.session.run([self.output_name], {self.input_name: arr})[0]
        except Exception as exc:
            raise BackendError(
                f"onnxruntime failed to run {self.name} on input {tuple(arr.shape)} "
                f"(the graph expects {self.input_shape}): {str(exc).strip()[:400]}"
            ) from None
        return out.reshape(out.shape[0], -1)

    # -- nn.Module look-alikes -----------------------------------------------------------------
    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        if mode:
            raise UnsupportedError(f"{self.name} is an onnxruntime graph: it cannot be trained")
        return self

    def requires_grad_(self, requires_grad: bool = True) -> OnnxModel:
        if requires_grad:
            raise UnsupportedError(f"{self.name} is an onnxruntime graph: it has no gradients")
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        """Move to ``"cpu"`` or ``"cuda[:i]"`` (re-opens the session); dtypes are ignored."""
        device = kwargs.get("device", args[0] if args else None)
        text = str(device) if device is not None else ""
        if text.startswith(("cpu", "cuda")) and text != self.device:
            self._open(text)
            self.device = text
        return self

    def cpu(self) -> OnnxModel:
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> OnnxModel:
        return self.to("cuda" if index is None else f"cuda:{index}")

    def parameters(self) -> Iterator[Any]:
        return iter(())

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())

    def modules(self) -> Iterator[Any]:
        return iter(())

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise UnsupportedError(
            f"{self.name} is an onnxruntime graph; its weights are the .onnx file {self.path}"
        )

    @property
    def num_classes(self) -> int | None:
        return self.card.num_classes if self.card is not None else None

    def __repr__(self) -> str:
        return (
            f"OnnxModel({self.name}, input {self.input_name}{self.input_shape} {self.layout}, "
            f"output {self.output_name} ({self.output}), providers={self.providers})"
        )
