"""``omnizoo finetune --engine ray``: the same :func:`~omnizoo.finetune.fit` in every worker of
a Ray Train ``TorchTrainer``, with the same ``--out`` format at the end.

Ray Train starts ``num_workers`` processes and joins them in a torch process group (gloo on
CPU, NCCL on GPU); :func:`fit` finds the group and trains with DDP, exactly as under
torchrun. Rank 0 writes its run folder in a scratch directory of its node and reports it to
Ray after every epoch (``ray.train.report(metrics, checkpoint=...)``): Ray persists it under
``storage_path`` (default ``OUT/ray``; a shared file system or a cloud URI on a multi-node
cluster), keeps the best ``keep`` checkpoints by validation top-1, and gives it back to the
workers when it restarts them after a failure (``max_failures``). At the end, the driver
copies the last checkpoint's ``best/``, ``last.pt`` and records into ``OUT``, so the result
is the folder a one-machine run writes. ``resume=True`` starts from the newest checkpoint
Ray stored for the run.

The images are read by the workers: on a cluster, the data paths must be visible on every
node (a shared file system).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["fit_ray"]

_FILES = ("last.pt", "metrics.jsonl", "bad_images.jsonl", "curves.png")


def _ray_train() -> Any:
    from ..errors import DependencyError

    try:
        import ray
        import ray.train
        import ray.train.torch
    except ImportError as exc:
        hint = ""
        if "pydantic" in str(exc):
            hint = " (this Ray's Train v2 needs pydantic; or set RAY_TRAIN_V2_ENABLED=0)"
        raise DependencyError(
            f"--engine ray needs Ray Train: pip install 'ray[train]'{hint}: {exc}"
        ) from exc
    return ray


def _worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker``: one :func:`fit` per Ray worker."""
    import ray.train

    from .training import fit

    rank = ray.train.get_context().get_world_rank()
    scratch = Path(tempfile.mkdtemp(prefix="omnizoo-ray-"))
    local = scratch / "run"
    start = ray.train.get_checkpoint()  # set when Ray restarted the workers after a failure
    if rank == 0:
        if start is not None:
            with start.as_directory() as folder:
                shutil.copytree(folder, local)
        elif config["resume_dir"]:
            shutil.copytree(config["resume_dir"], local)
    # only rank 0 claims the folder; the others follow its answer
    resume = start is not None or bool(config["resume_dir"])

    def report(row: dict[str, Any]) -> None:
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float, str))}
        if rank == 0:
            checkpoint = ray.train.Checkpoint.from_directory(str(local))
            ray.train.report(metrics, checkpoint=checkpoint)
        else:
            ray.train.report(metrics)

    try:
        fit(
            config["model"],
            config["data"],
            out=local if rank == 0 else scratch / "unused",
            val=config["val"],
            recipe=config["recipe"],
            pretrained=config["pretrained"],
            checkpoint_path=config["checkpoint_path"],
            device=config["device"],
            workers=config["workers"],
            resume=resume,
            progress=config["progress"],
            on_epoch=report,
            **config["knobs"],
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fit_ray(
    model: str,
    data: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    num_workers: int = 2,
    address: str | None = None,
    use_gpu: bool = False,
    storage_path: str | None = None,
    resume: bool = False,
    keep: int = 2,
    max_failures: int = 0,
    cpus_per_worker: float | None = None,
    **fit_kwargs: Any,
) -> Any:
    """Run :func:`~omnizoo.finetune.fit` on Ray Train (see the module docstring); returns its
    :class:`~omnizoo.finetune.training.FitResult` (read from the final checkpoint).

    ``cpus_per_worker``: the CPUs each worker reserves (default 1, or a share of the
    cluster's CPUs when it has fewer than ``num_workers``: fractions are fine, and the
    trainer's own coordinator reserves none, so a 2-CPU machine runs 2 workers).
    ``fit_kwargs``: ``val``, ``recipe`` (or its fields), ``pretrained``, ``checkpoint_path``,
    ``workers``, ``progress``, as for :func:`fit`.

    Raises:
        DependencyError: Ray Train is not installed.
        ConfigurationError: ``num_workers`` < 1, an ``out`` folder that is not ours, nothing to
            resume, an ``address`` where no Ray cluster answers.
    """
    from ..errors import ConfigurationError
    from ..inference.ray_inputs import check_address
    from .run_dir import RunDir

    if num_workers < 1:
        raise ConfigurationError(f"--num-workers {num_workers}: give at least 1")
    ray = _ray_train()
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run = RunDir(out)
    resuming = run.claim(resume=resume)
    storage = storage_path or str((run.path / "ray").resolve())
    recipe = fit_kwargs.pop("recipe", None)
    knobs = {k: fit_kwargs.pop(k) for k in list(fit_kwargs) if k in _recipe_fields()}
    resume_dir = None
    if resuming:
        latest = _latest(Path(storage))
        resume_dir = str(latest if latest is not None else run.path)
    config = {
        "model": model,
        "data": os.fspath(Path(data).resolve()),
        "val": None
        if fit_kwargs.get("val") is None
        else os.fspath(Path(fit_kwargs["val"]).resolve()),
        "recipe": recipe,
        "knobs": knobs,
        "pretrained": fit_kwargs.get("pretrained", True),
        "checkpoint_path": fit_kwargs.get("checkpoint_path"),
        "device": "cuda" if use_gpu else "cpu",
        "workers": int(fit_kwargs.get("workers", 0)),
        "progress": bool(fit_kwargs.get("progress", True)),
        "resume_dir": resume_dir,
    }
    started = not ray.is_initialized()
    if started:
        check_address(address)
        import logging

        ray.init(address=address, logging_level=logging.WARNING)
    try:
        if cpus_per_worker is None:
            total = float(ray.cluster_resources().get("CPU", 1.0))
            cpus_per_worker = min(1.0, total / num_workers)
        workers: dict[str, Any] = {"num_workers": num_workers, "use_gpu": use_gpu}
        workers["resources_per_worker"] = {"CPU": cpus_per_worker}
        try:  # Train v1 reserves a CPU for its coordinator unless told not to
            scaling = ScalingConfig(**workers, trainer_resources={"CPU": 0})
        except (DeprecationWarning, TypeError):  # Train v2: the coordinator takes none
            scaling = ScalingConfig(**workers)
        trainer = TorchTrainer(
            _worker,
            train_loop_config=config,
            scaling_config=scaling,
            run_config=RunConfig(
                name="finetune",
                storage_path=storage,
                checkpoint_config=CheckpointConfig(
                    num_to_keep=keep,
                    checkpoint_score_attribute="val_top1",
                    checkpoint_score_order="max",
                ),
                failure_config=FailureConfig(max_failures=max_failures),
            ),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
    latest = _latest(Path(storage))
    if latest is None:
        raise ConfigurationError(f"Ray Train stored no checkpoint under {storage}")
    _copy_result(latest, run)
    return _result(run)


def _recipe_fields() -> set[str]:
    import dataclasses

    from .recipe import Recipe

    return {f.name for f in dataclasses.fields(Recipe)}


def _latest(storage: Path) -> Path | None:
    """The newest checkpoint Ray stored (by the epoch its ``last.pt`` reached)."""
    found = [p.parent for p in storage.glob("**/checkpoint_*/last.pt") if p.is_file()]
    return max(found, key=lambda p: (p.name, p.stat().st_mtime), default=None)


def _copy_result(checkpoint: Path, run: Any) -> None:
    from ..weights import fsafe

    for name in _FILES:
        src = checkpoint / name
        if fsafe.lstat_regular(src) is not None:
            fsafe.write_atomic(run.path / name, fsafe.read_regular(src, 1 << 40))
    best = checkpoint / "best"
    if best.is_dir():
        run.save_best(lambda folder: shutil.copytree(best, folder))


def _result(run: Any) -> Any:
    from ..saved.folder import read_card
    from .training import FitResult

    state = run.load_checkpoint()
    best = state["best"]
    recipe_epochs = int(state["recipe"]["epochs"])
    status = "done" if int(state["epoch"]) >= recipe_epochs else "early-stop"
    classes = tuple(read_card(run.best).categories or ())
    return FitResult(
        out=run.path,
        best=run.best,
        best_top1=float(best["top1"]),
        best_epoch=int(best["epoch"]),
        status=status,
        classes=classes,
        history=list(state["history"]),
    )
