"""``Predictor``: images in, top-k labels out, with decoding overlapped with the model.

    >>> from omnizoo import Predictor                                   # doctest: +SKIP
    >>> p = Predictor("resnet50")                                        # doctest: +SKIP
    >>> p.predict(["cat.jpg", "dog.png"], topk=3)[0][0]                  # doctest: +SKIP
    Prediction(label='tabby', index=281, score=0.61)

How it runs: a thread pool decodes and preprocesses images (Pillow releases the GIL while it
decodes and resizes, torch while it converts and normalises) into a bounded window of
``batch_size * (prefetch + 1)`` pending images, while the calling thread stacks finished
images into batches and runs the model (``torch.inference_mode``; channels_last for conv nets;
bf16/fp16 autocast on CUDA). So decoding batch k+1 overlaps the forward pass of batch k and
memory stays bounded however many images are given.

Bad images do not sink the batch: each file that cannot be decoded becomes an
:class:`~omnizoo.errors.ImageLoadError` naming it. ``on_error`` decides what happens:

* ``"return"`` (default): its entry in the result is an empty list and the error is in
  ``result.errors[i]``; every other image is predicted;
* ``"skip"``: its entry is left out (``result.indices`` maps entries back to inputs);
* ``"raise"``: the first error is raised.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, ImageLoadError

if TYPE_CHECKING:
    import torch

    from ..data.config import DataConfig

__all__ = ["Prediction", "PredictionResults", "Predictor"]

log = logging.getLogger("omnizoo.predict")

_BACKENDS = ("torch", "onnxruntime")
_ON_ERROR = ("return", "skip", "raise")


@dataclass(frozen=True)
class Prediction:
    """One of the top-k answers for one image: class name, output index and score.

    ``score`` is a softmax probability (or the model's own probability output).
    """

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "score": self.score}


class PredictionResults(list):  # type: ignore[type-arg,unused-ignore]
    """``list[list[Prediction]]``, one entry per input image, plus what went wrong.

    ``errors``: input index -> ImageLoadError for images that could not be read.
    ``indices``: the input index of each entry (differs from ``range(len)`` with on_error='skip').
    """

    def __init__(
        self,
        items: Iterable[list[Prediction]] = (),
        *,
        errors: dict[int, ImageLoadError] | None = None,
        indices: list[int] | None = None,
    ) -> None:
        super().__init__(items)
        self.errors: dict[int, ImageLoadError] = dict(errors or {})
        self.indices: list[int] = list(indices) if indices is not None else list(range(len(self)))


class Predictor:
    """Classify images with a model and its exact preprocessing and labels.

    ``name_or_model``: a model name (built with ``create_model(name, pretrained=True)``, or
    from ``checkpoint_path``), a model from ``create_model`` (it carries its card), or any
    ``nn.Module`` / ONNX model together with ``data_config`` (and ``labels``).

    ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda[:N]"``.
    ``backend``: ``"torch"``, or ``"onnxruntime"`` (a torch model is exported to ONNX once,
    in a temporary directory; ONNX-zoo models always run on onnxruntime).
    ``num_workers``: decoding threads (default: CPU count, at most 8).
    ``precision``: autocast dtype: ``"auto"`` (bf16/fp16 on CUDA, fp32 on CPU), ``"fp32"``,
    ``"bf16"``, ``"fp16"``. ``channels_last``: default on for conv nets (torch backend).
    ``fold_bn``: fold eval-mode BatchNorm layers into the convolutions before them (torch
    backend; 1.25-1.5x faster CPU inference on ResNet/MobileNet). The model you pass keeps its
    weights: the folded layers live in a copy that shares every other tensor, and the fold is
    checked against the original on a probe input before it is used.
    """

    def __init__(
        self,
        name_or_model: Any,
        *,
        device: Any = "auto",
        batch_size: int = 32,
        backend: str = "torch",
        num_workers: int | None = None,
        data_config: DataConfig | None = None,
        labels: Sequence[str] | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        prefetch: int = 2,
        fold_bn: bool = True,
    ) -> None:
        from ..data.labels import get_labels
        from ..data.resolve import card_of, resolve_data_config
        from ..data.transforms import ImageTransform
        from .backends import OrtRunner, TorchRunner, export_for_onnxruntime, is_onnx_model
        from .device import autocast_dtype, resolve_device

        if backend not in _BACKENDS:
            raise ConfigurationError(f"backend={backend!r}; use one of {', '.join(_BACKENDS)}")
        if int(batch_size) < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        cpu = os.cpu_count() or 2
        self.num_workers = max(1, int(num_workers) if num_workers is not None else min(8, cpu))
        self.prefetch = max(0, int(prefetch))

        if isinstance(name_or_model, (str, os.PathLike)) and not isinstance(name_or_model, str):
            raise ConfigurationError("give a model name or a model; for a file use checkpoint_path")
        if isinstance(name_or_model, str):
            from ..registry.factory import create_model

            if checkpoint_path is not None:
                model = create_model(name_or_model, checkpoint_path=Path(checkpoint_path))
            else:
                model = create_model(name_or_model, pretrained=True)
            card = getattr(model, "omnizoo_card", None) or card_of(name_or_model)
        else:
            if checkpoint_path is not None:
                raise ConfigurationError("checkpoint_path goes with a model name, not a model")
            model = name_or_model
            card = card_of(model)
        self.model = model
        self.card = card
        if data_config is not None:
            self.data_config = resolve_data_config(data_config)
        else:
            self.data_config = resolve_data_config(card if card is not None else model)
        if labels is not None:
            self.labels = [str(s) for s in labels]
        elif card is not None:
            self.labels = get_labels(card)
        else:
            self.labels = get_labels(model)
        self.outputs_probabilities = card is not None and getattr(card, "output", "") in (
            "probabilities",
            "probs",
            "softmax",
        )
        self.transform = ImageTransform(self.data_config)

        onnx_native = is_onnx_model(model)
        self.backend = "onnxruntime" if onnx_native else backend
        if onnx_native:
            self._run: Any = OrtRunner(model, self.device)
        elif backend == "onnxruntime":
            if self.data_config.layout != "NCHW":
                raise ConfigurationError("exporting a torch model needs an NCHW data_config")
            with tempfile.TemporaryDirectory(prefix="omnizoo-ort-") as tmp:
                path = export_for_onnxruntime(model, self.data_config, Path(tmp))
                self._run = OrtRunner(path, self.device)
        else:
            self._run = TorchRunner(
                model,
                self.device,
                autocast=autocast_dtype(self.device, precision),
                channels_last=channels_last,
                fold_bn=fold_bn,
                input_size=tuple(self.data_config.input_size)
                if self.data_config.layout == "NCHW"
                else None,
            )

    def __repr__(self) -> str:
        name = getattr(self.card, "name", type(self.model).__name__)
        return (
            f"Predictor({name}, device={self.device}, backend={self.backend}, "
            f"batch_size={self.batch_size}, num_workers={self.num_workers})"
        )

    # -- public -------------------------------------------------------------------------------

    def predict(self, images: Any, topk: int = 5, *, on_error: str = "return") -> PredictionResults:
        """Top-``topk`` predictions per image; see the module docstring for ``on_error``.

        ``images``: one image or a sequence of them — file paths, bytes, PIL images, ``(C, H,
        W)`` tensors (uint8 0-255 or float 0-1; a 4-D tensor is a batch of them) or ``(H, W,
        C)`` uint8 arrays.
        """
        if on_error not in _ON_ERROR:
            raise ConfigurationError(f"on_error={on_error!r}; use one of {', '.join(_ON_ERROR)}")
        items: list[list[Prediction]] = []
        indices: list[int] = []
        errors: dict[int, ImageLoadError] = {}
        for index, outcome in self.predict_iter(images, topk=topk):
            if isinstance(outcome, ImageLoadError):
                if on_error == "raise":
                    raise outcome
                errors[index] = outcome
                log.warning("skipped image %d: %s", index, outcome)
                if on_error == "skip":
                    continue
                outcome = []
            items.append(outcome)
            indices.append(index)
        return PredictionResults(items, errors=errors, indices=indices)

    def predict_iter(
        self, images: Any, topk: int = 5
    ) -> Iterator[tuple[int, list[Prediction] | ImageLoadError]]:
        """Stream ``(input index, predictions or ImageLoadError)`` in input order."""
        import torch

        k = max(1, min(int(topk), len(self.labels) if self.labels else int(topk)))
        for indices, batch, failures in self._batches(_as_list(images)):
            answers: dict[int, list[Prediction] | ImageLoadError] = dict(failures)
            if batch is not None:
                scores = self.scores(batch, preprocessed=True)
                values, idx = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
                for row, index in enumerate(indices):
                    answers[index] = [
                        Prediction(self._label(int(j)), int(j), float(v))
                        for v, j in zip(values[row].tolist(), idx[row].tolist(), strict=True)
                    ]
            yield from sorted(answers.items(), key=lambda item: item[0])

    def scores(self, images: Any, *, preprocessed: bool = False) -> torch.Tensor:
        """Class probabilities ``(N, num_outputs)`` (float32, CPU) for images or a ready batch."""
        if not preprocessed:
            batch = self._stack([self._prepare_one(img) for img in _as_list(images)])
        else:
            batch = images
        out = self._run(batch)
        if self.outputs_probabilities:
            return out
        return out.softmax(dim=1)

    # -- internals ----------------------------------------------------------------------------

    def _label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else str(index)

    def _prepare_one(self, img: Any) -> torch.Tensor:
        from ..data.images import load_image

        if isinstance(img, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(
            img, "read"
        ):
            img = load_image(img)
        return self.transform(img)

    def _stack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        import torch

        return torch.stack(tensors)

    def _batches(
        self, images: Iterable[Any]
    ) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, ImageLoadError]]]]:
        """(input indices, stacked batch, failures) in input order; decoding runs ahead."""
        window = self.batch_size * (self.prefetch + 1)
        pending: deque[tuple[int, Future[Any]]] = deque()
        pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="omnizoo-io")

        def work(img: Any) -> Any:
            try:
                return self._prepare_one(img)
            except ImageLoadError as exc:
                return exc

        try:
            feed = iter(enumerate(images))
            done = False
            while True:
                while not done and len(pending) < window:
                    nxt = next(feed, None)
                    if nxt is None:
                        done = True
                        break
                    pending.append((nxt[0], pool.submit(work, nxt[1])))
                if not pending:
                    return
                indices: list[int] = []
                tensors: list[torch.Tensor] = []
                failures: list[tuple[int, ImageLoadError]] = []
                while pending and len(tensors) < self.batch_size:
                    index, fut = pending.popleft()
                    result = fut.result()
                    if isinstance(result, ImageLoadError):
                        failures.append((index, result))
                    else:
                        indices.append(index)
                        tensors.append(result)
                    # keep the window full while this batch is being assembled
                    nxt = None if done else next(feed, None)
                    if nxt is None:
                        done = True
                    else:
                        pending.append((nxt[0], pool.submit(work, nxt[1])))
                yield indices, (self._stack(tensors) if tensors else None), failures
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _as_list(images: Any) -> Iterable[Any]:
    """One image or many -> an iterable of single images (a 4-D tensor is a batch)."""
    import numpy as np

    try:
        import torch

        if isinstance(images, torch.Tensor):
            return list(images.unbind(0)) if images.dim() == 4 else [images]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)):
        return [images]
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, Iterable):
        return images  # consumed lazily
    return [images]
