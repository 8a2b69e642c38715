"""``omnizoo.validate``: the accuracy of a model on a user's own labelled images, with the
model's own preprocessing and labels, on any backend and precision the Predictor has.

How it runs: the labelled set is read (:func:`omnizoo.data.labelled.read_labelled`), its
class names matched to the model's outputs (:func:`omnizoo.data.label_match.match_classes`),
then the Predictor's decoding pool streams the images in batches (memory stays bounded
however large the set) and each batch's rows (top-5 outputs, probability of the true class,
or the decoding error) are appended to ``predictions.jsonl`` under ``out`` before the next
batch starts (:mod:`.validate_log`). ``resume=True`` skips the images already there; the
totals are always recomputed from the log, so a run killed and resumed gives the totals of
one uninterrupted run. An image that cannot be decoded is recorded, reported once (a warning)
and skipped; it counts in no accuracy.

``engine="ray"`` runs the same Predictor on Ray actors (:func:`.distributed.predict_ray`, as
``omnizoo predict --engine ray``); Ray returns each image's top 5 only, so there the
probability of the true class is known when it is in the top 5 (0 otherwise).

The result (:class:`~omnizoo.inference.validate_results.ValidationResult`) is also recorded
for ``omnizoo compare`` / ``omnizoo plot --measured`` (:mod:`.measured`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.labelled import LabelledSet, Layout, read_labelled
from ..errors import ConfigurationError, UnsupportedError
from .validate_log import PredictionLog, Row
from .validate_results import ValidationResult, compute_result, write_outputs

__all__ = ["ValidationResult", "validate"]

log = logging.getLogger("omnizoo.validate")
_ENGINES = ("local", "ray")


def validate(
    model: Any,
    data: str | os.PathLike[str] | LabelledSet,
    *,
    layout: Layout = "auto",
    ground_truth: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    classes: Sequence[str] | None = None,
    class_map: str | os.PathLike[str] | Mapping[str, str] | None = None,
    backend: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    batch_size: int = 32,
    checkpoint_path: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: str = "auto",
    engine: str = "local",
    record: bool = True,
    **predictor_kwargs: Any,
) -> ValidationResult:
    """Measure ``model``'s top-1/top-5 accuracy on the labelled images ``data``.

    ``model``: a name, a model from ``create_model``, or an ``.onnx`` file (as for
    :class:`~omnizoo.Predictor`, which ``backend``, ``precision``, ``device``, ``batch_size``,
    ``checkpoint_path`` and any other ``predictor_kwargs`` go to). ``data``: a folder or list
    file (``layout``, ``ground_truth``, ``limit``, ``classes``: see
    :func:`omnizoo.data.labelled.read_labelled`) or a ready
    :class:`~omnizoo.data.labelled.LabelledSet`. ``class_map``: a CSV file (``dataset_class,
    model_label``) or a mapping naming the model class of data set classes the model does not
    name alike. ``out``: a folder for ``predictions.jsonl`` (resumable with ``resume=True``),
    ``results.json``, ``per_class.csv``, ``confusion.csv`` and ``confusion.png``.
    ``progress``: ``auto`` / ``bar`` / ``lines`` / ``none``. ``record``: keep the result for
    ``omnizoo compare`` and ``plot --measured``.

    >>> import omnizoo
    >>> r = omnizoo.validate("resnet50", "pets/", limit=200)             # doctest: +SKIP
    >>> r.card_line()                                                     # doctest: +SKIP
    'card 80.9 (ImageNet-1K), measured 91.5 on 200 images'

    Raises:
        ConfigurationError: bad data (see ``read_labelled``), classes that match none of the
            model's labels (the message lists them and how to map them), an ``out`` whose
            ``predictions.jsonl`` exists without ``resume`` or was not written by omnizoo, an
            unknown ``engine``, ``engine="ray"`` without ``out``.
        UnsupportedError: a model that is not a classifier.
        MetadataError: a list, ground-truth, class-map or log file with a bad row.
        Building the model raises what :class:`~omnizoo.Predictor` raises.
    """
    if engine not in _ENGINES:
        raise ConfigurationError(f"engine={engine!r}; use one of {', '.join(_ENGINES)}")
    if engine == "ray" and out is None:
        raise ConfigurationError("engine='ray' keeps its rows in files: give out=DIR")
    dataset = (
        data
        if isinstance(data, LabelledSet)
        else read_labelled(
            data, layout=layout, ground_truth=ground_truth, limit=limit, classes=classes
        )
    )
    if out is not None and not resume and (Path(out) / "predictions.jsonl").exists():
        PredictionLog.refuse_existing(Path(out) / "predictions.jsonl")  # before any build
    kwargs: dict[str, Any] = {
        "backend": backend,
        "precision": precision,
        "device": device,
        "batch_size": batch_size,
        "checkpoint_path": checkpoint_path,
        **predictor_kwargs,
    }
    from .predictor import Predictor

    predictor = Predictor(model, **kwargs)
    if predictor.task != "classification":
        raise UnsupportedError(
            f"validate measures classifiers; {model!r} is a {predictor.task} model"
        )
    card = predictor.card
    name = str(getattr(card, "name", None) or model)
    class_index = _match(dataset, predictor, name, class_map)
    base = dataset.root if dataset.root.is_dir() else dataset.root.parent
    header = {"model": name, "classes": list(dataset.classes), "class_index": list(class_index)}
    logfile = PredictionLog(Path(out) / "predictions.jsonl", header, resume=resume) if out else None
    done_rows = list(logfile.rows) if logfile is not None else []
    done = {row.path for row in done_rows}
    todo = [(os.path.relpath(i.path, base), i) for i in dataset.items]
    todo = [(key, item) for key, item in todo if key not in done]
    want = dict(zip(dataset.classes, class_index, strict=True))
    rows: list[Row] = list(done_rows)
    try:
        if engine == "ray":
            from .validate_ray import run_ray

            new = run_ray(model, todo, want, kwargs, Path(out or "."), logfile, progress, len(done))
        else:
            new = _run_local(predictor, todo, want, logfile, progress, len(done))
        rows.extend(new)
    finally:
        if logfile is not None:
            logfile.close()
    choice = predictor.backend_choice
    result = compute_result(
        rows,
        classes=dataset.classes,
        class_index=class_index,
        labels=predictor.labels,
        model=name,
        backend=str(choice.backend),
        precision=str(choice.precision),
        data=os.fspath(dataset.root),
        card_top1=getattr(card, "top1", None),
        card_dataset=getattr(card, "metrics_dataset", None),
    )
    if out is not None:
        write_outputs(result, Path(out))
        result.extra["out"] = os.fspath(out)
    if record and result.n:
        _record(result, dataset)
    return result


def _match(
    dataset: LabelledSet,
    predictor: Any,
    name: str,
    class_map: str | os.PathLike[str] | Mapping[str, str] | None,
) -> tuple[int, ...]:
    from ..data.label_match import match_classes, model_synsets, read_class_map
    from ..data.labels import label_set_for

    card = predictor.card
    label_set = label_set_for(card) if card is not None else None
    synsets = model_synsets(predictor.labels, label_set)
    mapping = read_class_map(class_map) if isinstance(class_map, (str, os.PathLike)) else class_map
    return match_classes(
        dataset.classes, predictor.labels, synsets=synsets, class_map=mapping, model=name
    )


def _run_local(
    predictor: Any,
    todo: list[tuple[str, Any]],
    want: dict[str, int],
    logfile: PredictionLog | None,
    progress: str,
    done: int,
) -> list[Row]:
    from .progress import make_progress

    meter = make_progress(progress, len(todo), done=done)
    rows: list[Row] = []
    task = predictor._task  # the Predictor's own preprocessing and batching (same package)
    try:
        for indices, items, failures in predictor._batches([str(item.path) for _, item in todo]):
            batch: list[Row] = []
            for index, exc in failures:
                key, item = todo[index]
                log.warning("skipped %s: %s", key, exc)  # once: the row keeps it from now on
                batch.append(Row(key, item.label, error=" ".join(str(exc).split())))
            if items:
                scores = predictor.scores(task.collate(items), preprocessed=True)
                top = scores.topk(min(5, int(scores.shape[1])), dim=1).indices.tolist()
                for row_index, index in enumerate(indices):
                    key, item = todo[index]
                    p_true = float(scores[row_index, want[item.label]])
                    batch.append(
                        Row(key, item.label, tuple(top[row_index]), min(1.0, max(0.0, p_true)))
                    )
            batch.sort(key=lambda r: r.path)
            if logfile is not None:
                logfile.append(batch)
            rows.extend(batch)
            if meter is not None:
                meter.update(len(batch))
    finally:
        if meter is not None:
            meter.close()
    return rows


def _record(result: ValidationResult, dataset: LabelledSet) -> None:
    from .measured import record_accuracy

    record_accuracy(
        result.model,
        dataset=os.path.abspath(dataset.root),
        n=result.n,
        top1=result.top1,
        top5=result.top5,
        backend=result.backend,
        precision=result.precision,
    )
