"""Batch inference on Ray Data: the same predictions as :class:`~omnizoo.Predictor`, on as many
machines as the cluster has.

:class:`RayPredictor` is a callable class for :meth:`ray.data.Dataset.map_batches`: Ray starts
it once per actor, so each actor holds one model (built by name through the node's verified
weights cache: the first actor of a node downloads the weights, and exports the ONNX graph for
``backend="auto"``, the others wait for it and reuse it). It takes batches with an ``image``
column (decoded ``(H, W, C)`` uint8 arrays, as ``ray.data.read_images`` makes) or a ``bytes``
column (encoded files, as ``ray.data.read_binary_files`` makes, decoded in the actor with
EXIF orientation applied, exactly as the in-process Predictor does), plus an optional ``path``
column; or a ``path`` column alone, whose files the actor reads itself
(:func:`~omnizoo.inference.ray_inputs.read_inputs`), so that a file that vanished, a
dangling link or an unreadable URI becomes an error row instead of failing the whole dataset.
It returns an Arrow table: ``path``, the task's columns (``labels``, ``indices``, ``scores``,
``boxes``...) and ``error``: the same rows as the local engine (:func:`.output_base.row_for`).

    import ray
    from omnizoo.inference.distributed import RayPredictor

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    preds = ds.map_batches(RayPredictor, fn_constructor_kwargs={"model": "resnet50"},
                           batch_size=32, concurrency=8, num_cpus=4)
    preds.write_parquet("s3://bucket/preds/")

:func:`predict_ray` is the resumable run behind ``omnizoo predict --engine ray``: it lists the
images, skips those already in the output, sends the rest (as paths) through the actors and
writes the rows on the driver as they arrive (:mod:`omnizoo.inference.writers`), with
progress. An image that cannot be read is an error row, as with the local engine; the run
goes on.

Cluster: ``address`` (or ``RAY_ADDRESS``, read by Ray itself) connects to a running cluster;
without either, Ray connects to the cluster last started on this machine (``ray start
--head``), or starts a local one for the run. An ``address`` is first reached over TCP for
at most ``OMNIZOO_RAY_CONNECT_TIMEOUT`` seconds (30; Ray itself would retry for minutes):
nothing listening there is one :class:`~omnizoo.errors.ConfigurationError` naming the
address and the fix. Resources: each actor asks for
``cpus_per_actor`` CPUs (fractional), sized so that the file-reading tasks always find a CPU:
on a 2-CPU machine, two 1-CPU actors would take every CPU and the reads would wait forever.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from ..errors import (
    ConfigurationError,
    DependencyError,
    ImageLoadError,
    InvalidNameError,
    OmnizooError,
    UnknownModelError,
)

__all__ = ["RayPredictor", "plan_resources", "predict_ray"]

from .ray_inputs import check_address, read_inputs

log = logging.getLogger("omnizoo.predict")

#: CPUs kept free of actors for Ray Data's own tasks (listing, splitting the path list).
READ_CPUS = 0.5


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise DependencyError(
            "--engine ray needs Ray Data: pip install 'omnizoo[ray]' (ray[data])"
        ) from exc
    return ray


class RayPredictor:
    """One :class:`~omnizoo.Predictor` per Ray actor (see the module docstring).

    ``model``: a model name (built on each actor; preferred), or a model object (pickled to
    every actor). ``predictor_kwargs`` go to the Predictor (``backend``, ``device``,
    ``checkpoint_path``, ``num_threads``, ...); ``topk`` and ``score_threshold`` to
    ``predict``.
    """

    #: An error raised while building the Predictor, raised again by the first batch.
    error: Exception | None = None

    def __init__(
        self,
        model: Any,
        *,
        topk: int | None = None,
        score_threshold: float | None = None,
        predictor_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from .predictor import Predictor

        self.topk = topk
        self.score_threshold = score_threshold
        # An error while building is raised by the first batch: a task's error reaches the
        # driver as itself (RayTaskError.cause), an actor constructor's only as text.
        try:
            self.predictor = Predictor(model, **dict(predictor_kwargs or {}))
        except Exception as exc:
            self.error = exc
            return
        self.task = self.predictor.task
        log.info("Ray actor %d: %r, backend %s", os.getpid(), self.predictor, self.backend)

    @property
    def backend(self) -> str:
        return str(self.predictor.backend_choice)

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Predict one batch; returns a ``pyarrow.Table`` in the batch's row order."""
        import pyarrow as pa

        from .output_base import row_for
        from .parquet_out import arrow_schema

        if self.error is not None:
            raise self.error

        inputs: list[Any]
        if "image" in batch:
            inputs = list(batch["image"])
        elif "bytes" in batch:
            inputs = [bytes(b) for b in batch["bytes"]]
        elif "path" in batch:
            inputs = read_inputs([str(p) for p in batch["path"]])
        else:
            raise ConfigurationError(
                f"RayPredictor needs an 'image', a 'bytes' or a 'path' column; got {sorted(batch)}"
            )
        paths = [str(p) for p in batch["path"]] if "path" in batch else [""] * len(inputs)
        rows: list[dict[str, Any] | None] = [None] * len(inputs)
        readable = [i for i, item in enumerate(inputs) if not isinstance(item, ImageLoadError)]
        for i in set(range(len(inputs))) - set(readable):
            rows[i] = row_for(paths[i], inputs[i], self.task)
        for index, outcome in self.predictor.predict_iter(
            [inputs[i] for i in readable], topk=self.topk, score_threshold=self.score_threshold
        ):
            rows[readable[index]] = row_for(paths[readable[index]], outcome, self.task)
        return pa.Table.from_pylist(rows, schema=arrow_schema(self.task))


def plan_resources(
    cluster_cpus: float,
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
    cluster_gpus: float = 0.0,
) -> tuple[int, float]:
    """``(actors, cpus_per_actor)`` that leave the file-reading tasks a CPU.

    By default one actor per 4 CPUs (one per GPU with ``gpus_per_actor``), sharing all but
    ``READ_CPUS`` of the cluster's CPUs.

    >>> plan_resources(2, actors=2)
    (2, 0.75)
    >>> plan_resources(64)
    (16, 3.96875)
    """
    if actors is None:
        if gpus_per_actor > 0:
            actors = max(1, int(cluster_gpus // gpus_per_actor))
        else:
            actors = max(1, int(cluster_cpus // 4))
    actors = int(actors)
    if actors < 1:
        raise ConfigurationError(f"actors must be >= 1, got {actors}")
    spare = cluster_cpus - READ_CPUS
    if cpus_per_actor is None:
        cpus_per_actor = max(0.1, spare / actors)
    if cpus_per_actor * actors > spare + 1e-9:
        raise ConfigurationError(
            f"{actors} actors x {cpus_per_actor:g} CPUs leave the {cluster_cpus:g}-CPU cluster "
            f"less than {READ_CPUS:g} CPU for reading files: the pipeline would stall. Use fewer "
            "actors or fewer CPUs per actor (fractions are fine)"
        )
    return actors, float(cpus_per_actor)


def _task_of(model: Any, predictor_kwargs: dict[str, Any]) -> str:
    """The task the actors will run, known on the driver (for the output's columns)."""
    from ..data.resolve import card_of
    from .tasks import resolve_task

    card = None
    if isinstance(model, str) and not model.lower().endswith(".onnx"):
        try:
            card = card_of(model)
        except (UnknownModelError, InvalidNameError):
            raise  # before any actor starts
        except OmnizooError:  # hf-hub:/local-dir: names have their card once built
            card = None
    elif not isinstance(model, (str, os.PathLike)):
        card = card_of(model)
    obj = model if not isinstance(model, (str, os.PathLike)) else None
    return resolve_task(predictor_kwargs.get("task"), card, obj)


def predict_ray(
    model: Any,
    images: Sequence[str],
    out: str | os.PathLike[str],
    *,
    topk: int | None = None,
    score_threshold: float | None = None,
    predictor_kwargs: dict[str, Any] | None = None,
    actors: int | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float = 0.0,
    batch_size: int = 32,
    address: str | None = None,
    format: str | None = None,
    overwrite: bool = False,
    progress: str = "auto",
    progress_every: int = 1000,
    on_rows: Any = None,
) -> Any:
    """Predict ``images`` (paths or URIs, e.g. from :func:`~omnizoo.inference.runs.
    expand_images`) on Ray into ``out``; returns a :class:`~omnizoo.inference.runs.RunSummary`.

    Images already in ``out`` are skipped (unless ``overwrite``). Ray is started (and stopped
    afterwards) only when this process is not connected yet. ``on_rows(rows)`` is called after
    each batch is written (for tests and callers that track the run).
    """
    from .progress import make_progress
    from .runs import RunSummary
    from .writers import open_writer, path_key

    ray = _ray()
    started = time.perf_counter()
    kwargs = dict(predictor_kwargs or {})
    kwargs.setdefault("batch_size", batch_size)
    task = _task_of(model, kwargs)
    writer = open_writer(out, task, format=format, overwrite=overwrite)
    todo = [p for p in images if path_key(p) not in writer.done]
    skipped = len(images) - len(todo)
    if not todo:
        writer.close()
        return RunSummary(os.fspath(out), len(images), 0, skipped, 0, 0.0, "ray")
    we_started = not ray.is_initialized()
    if we_started:
        try:
            check_address(address)
        except BaseException:
            writer.close()
            raise
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    meter = context = None
    saved = (True, False)
    predicted = errors = 0
    try:
        resources = ray.cluster_resources()
        n_actors, cpus = plan_resources(
            float(resources.get("CPU", 1.0)),
            actors,
            cpus_per_actor,
            gpus_per_actor,
            float(resources.get("GPU", 0.0)),
        )
        threads = max(1, int(cpus))
        kwargs.setdefault("num_threads", threads)
        kwargs.setdefault("num_workers", max(1, min(4, threads)))
        if gpus_per_actor <= 0:
            kwargs.setdefault("device", "cpu")
        context = ray.data.DataContext.get_current()
        saved = (context.enable_progress_bars, context.raise_original_map_exception)
        context.enable_progress_bars = False
        # The actor's own error, not a UserCodeException whose cause is lost on the way back.
        context.raise_original_map_exception = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # Paths, not read_binary_files: one file that vanished would fail the whole dataset
        # (and every resume); the actors read each file and make an error row of it instead.
        names = {path_key(p): p for p in todo}
        ds = ray.data.from_items([{"path": key} for key in names])
        preds = ds.map_batches(
            RayPredictor,
            fn_constructor_kwargs={
                "model": model,
                "topk": topk,
                "score_threshold": score_threshold,
                "predictor_kwargs": kwargs,
            },
            batch_size=int(kwargs["batch_size"]),
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=cpus,
            num_gpus=gpus_per_actor or None,
        )
        meter = make_progress(progress, len(todo), every=progress_every, done=skipped)
        for table in preds.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = table.to_pylist()
            for row in rows:
                row["path"] = names.get(row["path"], row["path"])
                errors += row["error"] is not None
            writer.write(rows)
            predicted += len(rows)
            if meter is not None:
                meter.update(len(rows))
            if on_rows is not None:
                on_rows(rows)
    except Exception as exc:
        cause = _user_error(exc)
        if cause is not None:  # Ray's wrappers around the actor's own error
            raise cause from None
        raise
    finally:
        try:
            writer.close()
        finally:
            if meter is not None:
                meter.close()
            if context is not None:
                context.enable_progress_bars, context.raise_original_map_exception = saved
            if we_started:
                ray.shutdown()
    return RunSummary(
        os.fspath(out),
        len(images),
        predicted,
        skipped,
        errors,
        time.perf_counter() - started,
        "ray",
    )


def _user_error(exc: BaseException) -> BaseException | None:
    """The first exception in ``exc``'s chain that is not one of Ray's wrappers (Ray Data's
    UserCodeException, RayTaskError): the error the actor itself raised."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not type(current).__module__.startswith("ray"):
            return current if current is not exc else None
        current = getattr(current, "cause", None) or current.__cause__
    return None
