"""``omnizoo.finetune.fit``: fine-tune a model on a labelled image folder or CSV, in one call.

The run writes a run directory (:mod:`.run_dir`) whose ``best/`` is a ``save_pretrained``
folder: ``create_model(out / "best")``, ``omnizoo predict OUT/best img.jpg`` and ``omnizoo
export OUT/best m.onnx`` use it with the data set's class names. The same call runs in one
process, under ``torchrun`` (DDP, :mod:`.ddp`) and in a Ray Train worker (:mod:`.ray_train`).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .recipe import Recipe

__all__ = ["FitResult", "fit"]


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` did: ``status`` is ``"done"``, ``"early-stop"`` or ``"interrupted"``
    (SIGTERM or ``on_step``: resume with ``resume=True``); ``best`` the saved model's folder
    (None on processes other than rank 0), with its validation top-1 (percent) and epoch."""

    out: Path
    best: Path | None
    best_top1: float
    best_epoch: int
    status: str
    classes: tuple[str, ...]
    history: list[dict[str, Any]] = field(default_factory=list)


def fit(
    model: Any,
    data: Any,
    *,
    out: str | os.PathLike[str],
    val: Any = None,
    recipe: Recipe | None = None,
    pretrained: bool = True,
    checkpoint_path: str | os.PathLike[str] | None = None,
    device: Any = "auto",
    workers: int = 0,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict[str, Any]], Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], Any] | None = None,
    **knobs: Any,
) -> FitResult:
    """Fine-tune ``model`` on ``data`` and save the best epoch in ``out/best``.

    ``model``: a model name (built with ``create_model(name, pretrained=pretrained,
    checkpoint_path=..., num_classes=<classes>, labels=<classes>)``, once per node under DDP)
    or a model from ``create_model`` (its head is replaced when its width differs). ``data``:
    an ImageFolder tree or a CSV/JSONL of ``path,label`` (:func:`omnizoo.data.labelled.
    read_labelled`); ``val``: the validation set, else ``val_fraction`` of ``data`` is held
    out with the recipe's seed. ``recipe``: a :class:`~omnizoo.finetune.recipe.Recipe`; any of
    its fields may be given as keyword arguments instead (``epochs=3, lr=1e-3``).
    ``resume=True`` continues the run in ``out`` where its last checkpoint left it, with the
    same recipe. ``on_step(info)`` is called after every optimizer step on rank 0; a true
    return value stops the run as SIGTERM does (a checkpoint, then ``status="interrupted"``).
    ``on_epoch(row)`` is called on every process after each epoch's checkpoint, with the
    epoch's ``metrics.jsonl`` row (Ray Train reports its checkpoints from there).

    >>> import omnizoo
    >>> result = omnizoo.finetune.fit("timm:resnet18", "photos/", out="runs/r18",
    ...                               epochs=5)                        # doctest: +SKIP
    >>> omnizoo.create_model(result.best)                                # doctest: +SKIP

    Raises:
        ConfigurationError: a recipe value out of range, an ``out`` folder that is not empty
            and not a run (or a run without ``resume``), a data set with fewer than two
            classes, validation classes the training set lacks, a device that is absent.
        MetadataError: a bad row in a CSV/JSONL list (see ``read_labelled``).
        CheckpointError: ``resume`` with a checkpoint that cannot be read, or written by
            another number of processes.
    """
    from .ddp import join, once_per_node
    from .loop import make_amp, resolve_device
    from .run_dir import RunDir

    _check_knobs(knobs)
    dev = resolve_device(device)
    world = join(dev)
    try:
        run = RunDir(out)
        resuming = _claim(run, world, resume)
        ckpt = _load(run, world) if resuming else None
        chosen = _recipe(recipe, knobs, ckpt)
        train_set, val_set = _data(data, val, chosen)
        classes = train_set.classes
        built = once_per_node(
            world, lambda: _build(model, classes, chosen, pretrained, checkpoint_path)
        )
        trainer, _ = _trainer(
            built,
            train_set,
            val_set,
            chosen,
            dev,
            make_amp(chosen.precision, dev),
            world,
            run,
            workers,
            progress,
            (on_step, on_epoch),
            data,
        )
        if ckpt is not None:
            trainer.restore(ckpt)
            del ckpt
        status = _with_sigterm(trainer, trainer.run_all)
        s = trainer.state
        return FitResult(
            out=run.path,
            best=run.best if world.main else None,
            best_top1=s.best_top1,
            best_epoch=s.best_epoch,
            status=status,
            classes=tuple(classes),
            history=list(s.history),
        )
    finally:
        world.leave()


def _claim(run: Any, world: Any, resume: bool) -> bool:
    """Rank 0 claims the folder; its answer (or error) reaches every process."""
    answer: Any = None
    if world.main:
        try:
            answer = run.claim(resume=resume)
        except Exception as exc:
            answer = exc
    answer = world.gather(answer)[0] if world.distributed else answer
    if isinstance(answer, Exception):
        raise answer
    return bool(answer)


def _load(run: Any, world: Any) -> dict[str, Any]:
    state = run.load_checkpoint() if world.main else None
    if world.distributed:
        import torch.distributed as dist

        box = [state]
        dist.broadcast_object_list(box, src=0)
        state = box[0]
    assert state is not None
    return state


def _check_knobs(knobs: dict[str, Any]) -> None:
    from ..errors import ConfigurationError

    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(knobs) - fields)
    if unknown:
        raise ConfigurationError(
            f"fit() got {', '.join(unknown)}: not a recipe field; the fields are "
            f"{', '.join(sorted(fields))}"
        )


def _recipe(recipe: Recipe | None, knobs: dict[str, Any], ckpt: dict[str, Any] | None) -> Recipe:
    """The recipe of the run: a resumed run keeps its own, and any value given now must
    agree with it."""
    from ..errors import ConfigurationError

    if ckpt is None:
        return dataclasses.replace(recipe or Recipe(), **knobs)
    stored = Recipe.from_dict(ckpt["recipe"], "last.pt recipe")
    differ = stored.differences(recipe) if recipe is not None else []
    differ += [
        f"{k}: {getattr(stored, k)!r} -> {v!r}" for k, v in knobs.items() if getattr(stored, k) != v
    ]
    if differ:
        raise ConfigurationError(
            "--resume continues the run with its own recipe; these differ: "
            + "; ".join(differ)
            + ". Drop them, or start a new run"
        )
    return stored


def _data(data: Any, val: Any, recipe: Recipe) -> tuple[Any, Any]:
    """(train, val) LabelledSets, both numbering the training set's classes."""
    from ..data.labelled import LabelledSet, read_labelled, split_labelled
    from ..errors import ConfigurationError

    train = data if isinstance(data, LabelledSet) else read_labelled(data)
    if val is None:
        train, held = split_labelled(train, recipe.val_fraction, recipe.seed)
    else:
        held = val if isinstance(val, LabelledSet) else read_labelled(val)
        extra = sorted(set(held.classes) - set(train.classes))
        if extra:
            raise ConfigurationError(
                f"validation classes not in the training set: {', '.join(extra[:10])}; "
                "the model can only learn the training set's classes"
            )
        held = LabelledSet(held.root, held.items, train.classes)
    if len(train.classes) < 2:
        raise ConfigurationError(
            f"{train.root}: {len(train.classes)} class(es); fine-tuning a classifier needs two "
            "or more (one folder per class, or a label column)"
        )
    if not len(held):
        raise ConfigurationError(f"{train.root}: no validation images; give --val")
    return train, held


def _build(model: Any, classes: Any, recipe: Recipe, pretrained: bool, checkpoint_path: Any) -> Any:
    """The model with a ``len(classes)``-way head named by ``classes``, seeded (the new head's
    init is the same in every process and every resume)."""
    import torch

    from ..registry.factory import create_model
    from .heads import reset_classifier

    torch.manual_seed(recipe.seed)
    if isinstance(model, (str, os.PathLike)):
        return create_model(
            model if isinstance(model, str) else Path(model),
            pretrained=pretrained,
            checkpoint_path=checkpoint_path,
            num_classes=len(classes),
            labels=list(classes),
        )
    from ..registry.derive import head_size

    card = getattr(model, "omnizoo_card", None)
    if card is None or head_size(model, card) != len(classes):
        reset_classifier(model, len(classes), labels=list(classes))
    return model


def _trainer(
    model: Any,
    train_set: Any,
    val_set: Any,
    recipe: Recipe,
    device: Any,
    amp: Any,
    world: Any,
    run: Any,
    workers: int,
    progress: bool,
    hooks: tuple[Any, Any],
    data: Any,
) -> tuple[Any, Any]:
    from ..data.resolve import resolve_data_config
    from ..data.transforms import create_transform
    from .batches import ImageSet
    from .trainer import Trainer

    size = {"img_size": recipe.image_size} if recipe.image_size else {}
    config = resolve_data_config(model, **size)
    index = {name: i for i, name in enumerate(train_set.classes)}
    train_tf = create_transform(
        config, train=True, scale=(recipe.min_crop, 1.0), hflip=recipe.hflip
    )
    eval_tf = create_transform(config)
    train = ImageSet(
        [(str(i.path), index[i.label]) for i in train_set.items],
        train_tf,
        seed=recipe.seed,
        augment=True,
    )
    held = ImageSet([(str(i.path), index[i.label]) for i in val_set.items], eval_tf)
    channels_last = recipe.channels_last
    if channels_last is None:
        channels_last = device.type == "cuda"
    model = model.to(device)
    if channels_last:
        import torch

        model = model.to(memory_format=torch.channels_last)
    from .result_card import saver

    # the card names the data by where it lives (a LabelledSet's repr lists every image)
    where = str(train_set.root) if not isinstance(data, str | os.PathLike) else os.fspath(data)
    save = saver(run, model, train_set.classes, recipe, config, len(val_set), where, amp.name)
    trainer = Trainer(
        model,
        train,
        held,
        recipe,
        device=device,
        amp=amp,
        channels_last=channels_last,
        world=world,
        run=run,
        workers=workers,
        save_best=save,
        progress=progress,
        on_step=hooks[0],
        on_epoch=hooks[1],
        freeze_bn=_freeze_bn(recipe, model),
    )
    return trainer, config


def _freeze_bn(recipe: Recipe, model: Any) -> bool:
    """``Recipe.freeze_bn``, with None decided by where the weights came from."""
    if recipe.freeze_bn is not None:
        return recipe.freeze_bn
    card = getattr(model, "omnizoo_card", None)
    lineage = getattr(card, "lineage", None) or {}
    return lineage.get("start") != "random"


def _with_sigterm(trainer: Any, body: Callable[[], str]) -> str:
    """Run ``body`` with SIGTERM asking ``trainer`` to checkpoint and stop (main thread only:
    Ray runs the loop in a thread, and Ray stops its workers itself)."""
    if threading.current_thread() is not threading.main_thread():
        return body()

    def ask(signum: int, frame: Any) -> None:
        trainer.stop_requested = True

    previous = signal.signal(signal.SIGTERM, ask)
    try:
        return body()
    finally:
        signal.signal(signal.SIGTERM, previous)
