"""``Predictor``: images in, answers out, for the model's own task, with decoding overlapped
with the model.

    >>> from omnizoo import Predictor                                   # doctest: +SKIP
    >>> p = Predictor("resnet50")                                        # doctest: +SKIP
    >>> p.predict(["cat.jpg", "dog.png"], topk=3)[0][0]                  # doctest: +SKIP
    Prediction(label='tabby', index=281, score=0.61)
    >>> Predictor("ssdlite320_mobilenet_v3_large").predict("street.jpg")[0][0]  # doctest: +SKIP
    Detection(label='car', index=3, score=0.93, box=(412.0, 201.5, 598.2, 330.9), keypoints=())

The task (classification, detection, keypoints, segmentation) comes from the model's card
(:mod:`omnizoo.inference.tasks`); the backend from ``backend="auto"``
(:mod:`.backend_choice`): on the CPU a classifier runs on onnxruntime when its exported graph
matches torch and is faster. Reduced precision (bf16, int8) is opt-in (:mod:`.precision`).

How it runs: a thread pool decodes and preprocesses images (Pillow releases the GIL while it
decodes and resizes, torch while it converts and normalises) into a bounded window of
``batch_size * (prefetch + 1)`` pending images, while the calling thread stacks finished
images into batches and runs the model. So decoding batch k+1 overlaps the forward pass of
batch k and memory stays bounded however many images are given.

Bad images do not sink the batch: each file that cannot be decoded becomes an
:class:`~omnizoo.errors.ImageLoadError` naming it. ``on_error`` decides what happens:

* ``"return"`` (default): its entry in the result is empty (``[]``; ``None`` for
  segmentation) and the error is in ``result.errors[i]`` (and counted in the result's repr);
  every other image is predicted; nothing is logged, so a caller that reports
  ``result.errors`` (the CLI does) reports each bad image once;
* ``"skip"``: its entry is left out (``result.indices`` maps entries back to inputs) and a
  warning is logged (logger ``omnizoo.predict``);
* ``"raise"``: the first error is raised.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..data.labels import check_label_count, labels_for
from ..errors import ConfigurationError, ImageLoadError, UnsupportedError
from .backend_choice import BackendChoice
from .open_model import as_image_list, card_or_none, labels_of, open_model
from .results import Prediction, PredictionResults

if TYPE_CHECKING:
    import torch

    from ..values.card import Task
    from ..values.data_config import DataConfig
    from ..values.device_dtype import DeviceLike

__all__ = ["BackendChoice", "Prediction", "PredictionResults", "Predictor"]

log = logging.getLogger("omnizoo.predict")

_BACKENDS = ("auto", "torch", "onnxruntime")
_ON_ERROR = ("return", "skip", "raise")
_PROBABILITY_OUTPUTS = ("probabilities", "probs", "softmax")


class Predictor:
    """Predict with a model, its exact preprocessing, its labels and its task.

    ``name_or_model``: a model name (built with ``create_model(name, pretrained=True)``, or from
    ``checkpoint_path``), a model from ``create_model`` (it carries its card), the path of an
    ``.onnx`` file (omnizoo's exports carry their preprocessing and labels), or any
    ``nn.Module`` / ONNX model together with ``data_config`` (and ``labels``). The model is put
    in eval mode. ``trust``: globals a trusted checkpoint may build, as for
    :func:`omnizoo.create_model` (``["argparse.Namespace"]`` for a timm train.py checkpoint).
    ``labels``: one per model output, in order (e.g. from
    :func:`~omnizoo.data.labels.read_label_file`); a count that does not match the model's
    outputs is a :class:`~omnizoo.errors.ConfigurationError` naming both numbers.

    ``backend``: ``"auto"`` (default; see :mod:`omnizoo.inference.backend_choice`), ``"torch"`` or
    ``"onnxruntime"`` (a torch classifier is exported once into the weights cache). The
    choice and its reason are ``backend`` and ``backend_choice``.
    ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda[:N]"``.
    ``task``: override the card's task (``"classification"``, ``"detection"``,
    ``"keypoints"``, ``"segmentation"``); needed only for modules without a card that are not
    torchvision's. ``score_threshold``: detections scoring less are dropped (default 0.5).
    ``num_workers``: decoding threads (default: CPU count, at most 8). ``num_threads``: threads
    of the forward pass (``torch.set_num_threads``, process-wide, and onnxruntime's intra-op
    threads); default: the libraries' own.
    ``precision``: ``"auto"`` (bf16/fp16 autocast on CUDA, fp32 on CPU), ``"fp32"``,
    ``"bf16"``, ``"fp16"``, ``"int8"`` / ``"int8-dynamic"`` (onnxruntime on the CPU). On the
    CPU, bf16 and int8 run only behind the accuracy guard (:mod:`.precision`): top-1 agreement
    with fp32 on ``calibration`` (a folder or images; default: built-in photos) of at least
    ``min_agreement`` (0.99). ``channels_last``: default on for conv nets (torch backend).
    ``fold_bn``: fold eval-mode BatchNorm layers into the convolutions before them (torch
    backend; 1.25-1.5x faster CPU inference on ResNet/MobileNet). The model you pass keeps its
    weights: the folded layers live in a copy that shares every other tensor, and the fold is
    checked against the original on a probe input before it is used.

    >>> import omnizoo
    >>> p = omnizoo.Predictor("resnet50", device="cpu")              # doctest: +SKIP
    >>> p.predict("cat.jpg", topk=1)[0]                               # doctest: +SKIP
    [Prediction(label='tabby', index=281, score=0.61)]

    Raises:
        ConfigurationError: an option out of range (``backend``, ``batch_size``, an unknown
            or absent ``device``, ``task``, ``precision``, ``min_agreement``), ``labels`` of
            another count than the model's outputs, or ``checkpoint_path`` with a model or an
            ``.onnx`` file.
        UnsupportedError: a task or backend the model cannot run (an ONNX graph that is not
            a classifier; ``scores()`` on a detector); bf16 on a CPU without native bf16; a
            reduced precision whose top-1 agreement is below ``min_agreement``.
        ImageLoadError: from ``predict(on_error="raise")``, an image that cannot be decoded.
        OmnizooError: building a model by name raises what :func:`omnizoo.create_model`
            raises (UnknownModelError, DownloadError, IntegrityError, CheckpointError...); an
            ``.onnx`` file, what :func:`omnizoo.read_card` raises; onnxruntime failures are
            BackendError.
    """

    def __init__(
        self,
        name_or_model: Any,
        *,
        device: DeviceLike = "auto",
        batch_size: int = 32,
        backend: str = "auto",
        num_workers: int | None = None,
        data_config: DataConfig | None = None,
        labels: Sequence[str] | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        trust: Sequence[str] | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        prefetch: int = 2,
        fold_bn: bool = True,
        task: Task | None = None,
        score_threshold: float = 0.5,
        num_threads: int | None = None,
        calibration: str | os.PathLike[str] | Sequence[Any] | None = None,
        min_agreement: float = 0.99,
    ) -> None:
        from ..data.resolve import resolve_data_config
        from ..data.transforms import ImageTransform
        from .device import resolve_device
        from .precision import check_min_agreement
        from .runner_select import select_runner
        from .tasks import ClassificationTask, DetectionTask, SegmentationTask, resolve_task

        if backend not in _BACKENDS:
            raise ConfigurationError(f"backend={backend!r}; use one of {', '.join(_BACKENDS)}")
        if int(batch_size) < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        cpu = os.cpu_count() or 2
        self.num_workers = max(1, int(num_workers) if num_workers is not None else min(8, cpu))
        self.prefetch = max(0, int(prefetch))
        self.score_threshold = float(score_threshold)
        self.num_threads = int(num_threads) if num_threads else None
        if self.num_threads:
            import torch

            torch.set_num_threads(self.num_threads)

        if isinstance(name_or_model, str) and not name_or_model.lower().endswith(".onnx"):
            resolve_task(task, card_or_none(name_or_model), None)  # refused before a build
        model, card = open_model(name_or_model, checkpoint_path, data_config, trust=trust)
        self.model = model
        self.card = card
        self.task = resolve_task(task, card, model)
        if data_config is not None:
            self.data_config = resolve_data_config(data_config)
        else:
            self.data_config = resolve_data_config(card if card is not None else model)
        if labels is not None:
            self.labels = [str(s) for s in labels]
        else:  # a copy: label sets are shared, and a replaced head relabels this one
            self.labels = labels_of(card if card is not None else model, self.task)
        self._labels_given = labels is not None  # checked against the outputs: an error
        self._labels_checked = False
        detector = self.task in ("detection", "keypoints")
        if labels is not None and detector and getattr(card, "num_classes", None):
            check_label_count(len(self.labels), int(card.num_classes))  # with the background
        self.outputs_probabilities = (
            card is not None and getattr(card, "output", "") in _PROBABILITY_OUTPUTS
        )
        self.transform = ImageTransform(self.data_config)
        self._task: Any
        if self.task in ("detection", "keypoints"):
            extra = getattr(card, "extra", None) or {}
            self._task = DetectionTask(self.labels, extra.get("keypoint_names") or ())
        elif self.task == "segmentation":
            self._task = SegmentationTask(self.data_config, self.labels)
        else:
            self._task = ClassificationTask(self.transform, self.labels)
        self._run, self.backend_choice = select_runner(
            self,
            backend,
            precision=precision,
            channels_last=channels_last,
            fold_bn=fold_bn,
            calibration=calibration,
            min_agreement=check_min_agreement(min_agreement),
        )
        self.backend = self.backend_choice.backend

    def __repr__(self) -> str:
        name = getattr(self.card, "name", type(self.model).__name__)
        return (
            f"Predictor({name}, task={self.task}, device={self.device}, backend={self.backend}, "
            f"batch_size={self.batch_size}, num_workers={self.num_workers})"
        )

    # -- public -------------------------------------------------------------------------------

    def predict(
        self,
        images: Any,
        topk: int | None = None,
        *,
        on_error: str = "return",
        score_threshold: float | None = None,
        progress: bool = False,
    ) -> PredictionResults:
        """One entry per image; see the module docstring for ``on_error``.

        ``images``: one image or a sequence of them — file paths, bytes, PIL images, ``(C, H,
        W)`` tensors (uint8 0-255 or float 0-1; a 4-D tensor is a batch of them) or ``(H, W,
        C)`` uint8 arrays. ``topk``: classes per image for classification (default 5); the
        most detections or segmentation classes kept (default all). ``score_threshold``:
        overrides the Predictor's for detection. ``progress=True``: a progress bar on stderr
        when it is a terminal, else a line every 1000 images.
        """
        if on_error not in _ON_ERROR:
            raise ConfigurationError(f"on_error={on_error!r}; use one of {', '.join(_ON_ERROR)}")
        items: list[Any] = []
        indices: list[int] = []
        errors: dict[int, ImageLoadError] = {}
        images = as_image_list(images)
        stream = self.predict_iter(images, topk=topk, score_threshold=score_threshold)
        if progress:
            from .progress import Progress

            total = len(images) if isinstance(images, Sequence) else None
            stream = Progress(total).wrap(stream)
        for index, outcome in stream:
            if isinstance(outcome, ImageLoadError):
                if on_error == "raise":
                    raise outcome
                errors[index] = outcome
                if on_error == "skip":  # the one mode whose answer does not show the image:
                    log.warning("skipped image %d: %s", index, outcome)  # say it once here
                    continue
                outcome = None if self.task == "segmentation" else []
            items.append(outcome)
            indices.append(index)
        return PredictionResults(items, errors=errors, indices=indices)

    def predict_iter(
        self, images: Any, topk: int | None = None, *, score_threshold: float | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Stream ``(input index, entry or ImageLoadError)`` in input order."""
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        for indices, items, failures in self._batches(as_image_list(images)):
            answers: dict[int, Any] = dict(failures)
            if items:
                for index, entry in zip(indices, self._answer(items, topk, threshold), strict=True):
                    answers[index] = entry
            yield from sorted(answers.items(), key=lambda item: item[0])

    def scores(self, images: Any, *, preprocessed: bool = False) -> torch.Tensor:
        """Class probabilities ``(N, num_outputs)`` (float32, CPU) for images or a ready batch
        (classifiers only)."""
        if self._task.kind != "classification":
            raise UnsupportedError(f"scores() is for classifiers; this is a {self.task} model")
        if not preprocessed:
            batch = self._task.collate([self._task.prepare(img) for img in as_image_list(images)])
        else:
            batch = images
        out = self._run(batch)
        self._check_labels(int(out.shape[1]))
        if self.outputs_probabilities:
            return out
        return out.softmax(dim=1)

    # -- internals ----------------------------------------------------------------------------

    def _answer(self, items: list[Any], topk: int | None, threshold: float) -> list[Any]:
        import torch

        task = self._task
        if task.kind == "classification":
            return task.top(self.scores(task.collate(items), preprocessed=True), topk or 5)
        if task.kind == "detection":
            outputs = self._run.forward(task.collate(items))
            return task.detections(outputs, threshold, topk)
        answers: list[Any] = [None] * len(items)
        for group in task.groups(items):
            batch = torch.stack([items[i][0] for i in group])
            out = self._run.forward(batch)
            logits = out["out"] if isinstance(out, dict) else out
            if self._labels_given:
                check_label_count(len(self.labels), int(logits.shape[1]))
            for row, i in enumerate(group):
                answers[i] = task.segmentation(logits[row], items[i][1], topk)
        return answers

    def _check_labels(self, width: int) -> None:
        """A model whose head no longer matches its labels gets ``class_0 ..`` (the one
        fallback, :func:`~omnizoo.data.labels.labels_for`), with a warning."""
        if self._labels_checked:
            return
        self._labels_checked = True
        if self._labels_given:
            check_label_count(len(self.labels), width)
        elif width != len(self.labels):
            log.warning(
                "%s outputs %d classes but has %d labels (a replaced head?); predictions are "
                "labelled class_0 .. class_%d. Pass labels=, or reset_classifier(model, n, "
                "labels=)",
                getattr(self.card, "name", type(self.model).__name__),
                width,
                len(self.labels),
                width - 1,
            )
            self.labels[:] = labels_for(self.card if self.card is not None else self.model, width)

    def _batches(
        self, images: Iterable[Any]
    ) -> Iterator[tuple[list[int], list[Any], list[tuple[int, ImageLoadError]]]]:
        """(input indices, prepared items, failures) in input order; decoding runs ahead."""
        window = self.batch_size * (self.prefetch + 1)
        pending: deque[tuple[int, Future[Any]]] = deque()
        pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="omnizoo-io")
        prepare = self._task.prepare

        def work(img: Any) -> Any:
            try:
                return prepare(img)
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
                items: list[Any] = []
                failures: list[tuple[int, ImageLoadError]] = []
                while pending and len(items) < self.batch_size:
                    index, fut = pending.popleft()
                    result = fut.result()
                    if isinstance(result, ImageLoadError):
                        failures.append((index, result))
                    else:
                        indices.append(index)
                        items.append(result)
                    # keep the window full while this batch is being assembled
                    nxt = None if done else next(feed, None)
                    if nxt is None:
                        done = True
                    else:
                        pending.append((nxt[0], pool.submit(work, nxt[1])))
                yield indices, items, failures
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
