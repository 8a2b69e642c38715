"""The epoch loop behind :func:`omnizoo.finetune.fit`: phases, gradient accumulation, EMA,
checkpoints that resume bit for bit, SIGTERM, early stopping.

A checkpoint is taken at an optimizer-step boundary and holds everything the next step
depends on: the weights, the optimizer, the schedule, the EMA, the fp16 scaler, the
micro-batches already done in the epoch (the data order of an epoch is a function of the seed
and the epoch, :func:`.batches.epoch_order`, so the rest of the epoch is the same list), every
process's torch and Python RNG states (dropout, drop-path), the epoch's running sums, the
history and the best epoch. Augmentation is seeded per image (:mod:`.batches`), so loader
workers and the resume point do not change it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .batches import ImageSet, collate, epoch_order, shard
from .ddp import World
from .loop import Amp, Meter, build_optimizer, evaluate, make_ema
from .recipe import Recipe
from .run_dir import RunDir

__all__ = ["Trainer"]

FORMAT = "omnizoo.finetune"


@dataclass
class Progress:
    """Where the run is: the epoch being trained, the micro-batches done in it, the running
    sums of this process (loss, correct, images), the history and the best epoch."""

    epoch: int = 0
    step: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float = -1.0
    best_epoch: int = -1
    stale_epochs: int = 0
    bad: dict[str, str] = field(default_factory=dict)


class Trainer:
    """One run: ``model`` (the bare module, on ``device``), the two image sets, the recipe."""

    def __init__(
        self,
        model: Any,
        train: ImageSet,
        val: ImageSet,
        recipe: Recipe,
        *,
        device: Any,
        amp: Amp,
        channels_last: bool,
        world: World,
        run: RunDir | None,
        workers: int,
        save_best: Callable[[Any, dict[str, Any]], None],
        progress: bool,
        on_step: Callable[[dict[str, Any]], Any] | None = None,
        on_epoch: Callable[[dict[str, Any]], Any] | None = None,
        freeze_bn: bool = False,
    ) -> None:
        self.model, self.train_set, self.val_set, self.recipe = model, train, val, recipe
        self.device, self.amp, self.channels_last, self.world = device, amp, channels_last, world
        self.run, self.workers, self.save_best = run, workers, save_best
        self.progress, self.on_step, self.on_epoch = progress, on_step, on_epoch
        self.state = Progress()
        self.freeze_bn = freeze_bn
        self.phase: str | None = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.ddp: Any = None
        self.ema = make_ema(model, recipe.ema_decay) if recipe.ema else None
        self.stop_requested = False
        self.train_seconds = 0.0  # this process's training time in the current epoch
        per_rank = -(-len(train) // world.size)
        self.micro_batches = -(-per_rank // recipe.batch_size)
        self.steps_per_epoch = -(-self.micro_batches // recipe.accum_steps)

    # -- phases --------------------------------------------------------------------------------

    def phase_of(self, epoch: int) -> str:
        return "head" if epoch < self.recipe.head_epochs else "full"

    def enter(self, phase: str) -> None:
        """Freeze or unfreeze for ``phase``; a fresh optimizer and schedule; DDP wrapped anew
        (DDP registers the parameters that require grad when it is built)."""
        from .freeze import freeze, freeze_bn_stats, unfreeze

        unfreeze(self.model)
        if phase == "head":
            freeze(self.model)
        if self.freeze_bn:
            freeze_bn_stats(self.model)
        self.optimizer, self.scheduler = build_optimizer(
            self.model, self.recipe, phase, self.steps_per_epoch
        )
        if self.amp.scaler is not None:
            import torch

            self.amp.scaler = torch.amp.GradScaler("cuda")
        self.ddp = self.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.phase = phase

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resume needs (see the module docstring); gathered from every process."""
        import torch

        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        every = self.world.gather({"rng": rng, "sums": list(self.state.sums)})
        s = self.state
        return {
            "format": FORMAT,
            "version": 1,
            "recipe": self.recipe.to_dict(),
            "world": self.world.size,
            "epoch": s.epoch,
            "step": s.step,
            "phase": self.phase,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.amp.scaler.state_dict() if self.amp.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ranks": every,
            "history": s.history,
            "best": {"top1": s.best_top1, "epoch": s.best_epoch, "stale": s.stale_epochs},
            "bad": dict(s.bad),
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from :meth:`checkpoint`'s dict."""
        import torch

        from ..errors import CheckpointError

        if int(ckpt["world"]) != self.world.size:
            raise CheckpointError(
                f"the checkpoint was written by {ckpt['world']} processes, this run has "
                f"{self.world.size}: resume with the same number of processes"
            )
        s = self.state
        s.epoch, s.step = int(ckpt["epoch"]), int(ckpt["step"])
        s.history = list(ckpt["history"])
        best = ckpt["best"]
        s.best_top1, s.best_epoch, s.stale_epochs = (
            float(best["top1"]),
            int(best["epoch"]),
            int(best["stale"]),
        )
        s.bad = dict(ckpt["bad"])
        self.model.load_state_dict(ckpt["model"])
        if ckpt["phase"] is not None and s.epoch < self.recipe.epochs:
            self.enter(str(ckpt["phase"]))
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.amp.scaler is not None and ckpt["scaler"] is not None:
                self.amp.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt["ema"] is not None:
            self.ema.load_state_dict(ckpt["ema"])
        mine = ckpt["ranks"][self.world.rank]
        s.sums = [float(v) for v in mine["sums"]]
        torch.set_rng_state(mine["rng"]["torch"])
        random.setstate(_as_state(mine["rng"]["python"]))
        if "cuda" in mine["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["rng"]["cuda"], self.device)

    def _save(self) -> None:
        state = self.checkpoint()
        if self.run is not None and self.world.main:
            self.run.save_checkpoint(state)
            self.run.write_jsonl("metrics.jsonl", self.state.history)
            bad = [{"path": p, "error": e} for p, e in sorted(self.state.bad.items())]
            self.run.write_jsonl("bad_images.jsonl", bad)
        self.world.barrier()

    # -- the loop ------------------------------------------------------------------------------

    def run_all(self) -> str:
        """Train to the end; returns ``"done"``, ``"early-stop"`` or ``"interrupted"``.
        ``curves.png`` is drawn when the run stops (drawing costs about a second)."""
        status = self._epochs()
        if self.run is not None and self.world.main and self.state.history:
            self.run.write_curves(self.state.history)
        return status

    def _epochs(self) -> str:
        r = self.recipe
        while self.state.epoch < r.epochs:
            epoch = self.state.epoch
            if self.phase != self.phase_of(epoch):
                self.enter(self.phase_of(epoch))
            if not self._train_epoch(epoch):
                self._save()
                return "interrupted"
            row = self._finish_epoch(epoch)
            self._save()
            if self.on_epoch is not None:
                self.on_epoch(row)
            stale = r.patience is not None and self.state.stale_epochs >= r.patience
            if stale and self.state.epoch < r.epochs:
                return "early-stop"
        return "done"

    def _loader(self, dataset: ImageSet, indices: list[int], batch_size: int) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=batch_size,
            sampler=indices,
            collate_fn=collate,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )

    def _train_epoch(self, epoch: int) -> bool:
        """Train from ``state.step`` to the end of ``epoch``; False when stopped by SIGTERM
        (or ``on_step``) after a checkpoint-ready optimizer step."""
        import contextlib

        import torch

        r, s, w = self.recipe, self.state, self.world
        self.train_set.epoch = epoch
        order = epoch_order(len(self.train_set), r.seed, epoch, w.rank, w.size)
        done = s.step
        loader = self._loader(self.train_set, order[done * r.batch_size :], r.batch_size)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=r.label_smoothing)
        started = time.perf_counter()
        meter = Meter(epoch, r.epochs, self.micro_batches, done, enabled=self.progress and w.main)
        self.ddp.train()
        try:
            for index, batch in enumerate(loader, start=done):
                for bad in batch.bad:
                    s.bad.setdefault(bad.path, bad.error)
                group_start = index - index % r.accum_steps
                group = min(r.accum_steps, self.micro_batches - group_start)
                last = index + 1 == group_start + group
                sync = contextlib.nullcontext()
                if w.distributed and not last:
                    sync = self.ddp.no_sync()
                with sync:
                    loss, correct, n = self._forward_backward(batch, criterion, group)
                s.sums[0] += loss * n
                s.sums[1] += correct
                s.sums[2] += n
                s.step = index + 1
                meter.update(n, s.sums[0] / max(1, s.sums[2]), 100 * s.sums[1] / max(1, s.sums[2]))
                if last:
                    self._optimizer_step()
                    if self._should_stop(epoch, index + 1):
                        return False
        finally:
            meter.close()
            self.train_seconds += time.perf_counter() - started
        return True

    def _forward_backward(self, batch: Any, criterion: Any, group: int) -> tuple[float, int, int]:
        import torch

        if batch.labels is None:
            if not self.world.distributed:
                return 0.0, 0, 0
            # every process must run backward for DDP's all-reduce: a zero-weighted dummy
            size = self.val_set.transform.config.input_size  # type: ignore[attr-defined]
            x = torch.zeros((1, *size), device=self.device)
            y = torch.zeros(1, dtype=torch.long, device=self.device)
            weight = 0.0
        else:
            from .loop import _to

            x, y = _to(batch, self.device, self.channels_last)
            weight = 1.0
        with self.amp.autocast():
            logits = self.ddp(x)
            loss = criterion(logits.float(), y)
        scaled = loss * (weight / group)
        if self.amp.scaler is not None:
            scaled = self.amp.scaler.scale(scaled)
        scaled.backward()
        if not weight:
            return 0.0, 0, 0
        correct = int((logits.argmax(dim=1) == y).sum())
        return float(loss.detach()), correct, int(y.shape[0])

    def _optimizer_step(self) -> None:
        import torch

        r, opt = self.recipe, self.optimizer
        scaler = self.amp.scaler
        if r.clip_grad is not None:
            if scaler is not None:
                scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, r.clip_grad)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def _should_stop(self, epoch: int, step: int) -> bool:
        if self.on_step is not None and self.world.main:
            info = {"epoch": epoch, "step": step, "lr": self.scheduler.get_last_lr()[0]}
            if self.on_step(info):
                self.stop_requested = True
        if not self.world.distributed:
            return self.stop_requested
        # every process stops at the same step, or the next all-reduce would hang
        return self.world.all_sum([1.0 if self.stop_requested else 0.0])[0] > 0

    def _finish_epoch(self, epoch: int) -> dict[str, Any]:
        """Validate, record the epoch, keep the best model; returns the metrics row."""
        r, s, w = self.recipe, self.state, self.world
        started = time.perf_counter()
        model = self.ema.module if self.ema is not None else self.model
        val_loader = self._loader(
            self.val_set, shard(len(self.val_set), w.rank, w.size), 2 * r.batch_size
        )
        metrics = evaluate(model, val_loader, self.device, self.amp, self.channels_last, w, s.bad)
        loss, correct, n = w.all_sum(s.sums)
        bad = {p: e for rank_bad in w.gather(s.bad) for p, e in rank_bad.items()}
        s.bad = bad
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "lr": self.scheduler.get_last_lr()[0],
            "train_loss": loss / max(1.0, n),
            "train_top1": 100 * correct / max(1.0, n),
            **metrics,
            "train_images": int(n),
            "val_images": len(self.val_set),
            "bad_images": len(bad),
            "train_seconds": round(self.train_seconds, 3),
            "images_per_s": round(n / self.train_seconds, 1) if self.train_seconds else None,
            "val_seconds": round(time.perf_counter() - started, 3),
        }
        self.train_seconds = 0.0
        if not math.isfinite(row["train_loss"]):
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"the training loss is {row['train_loss']} at epoch {epoch + 1}: the learning "
                f"rate ({r.lr:g}) is too high for this model; lower --lr"
            )
        s.history.append(row)
        improved = row["val_top1"] > s.best_top1
        if improved:
            s.best_top1, s.best_epoch, s.stale_epochs = row["val_top1"], epoch + 1, 0
            if w.main:
                self.save_best(model, row)
        else:
            s.stale_epochs += 1
        if self.progress and w.main:
            print(
                f"epoch {epoch + 1}/{r.epochs} ({self.phase}): train loss {row['train_loss']:.4f} "
                f"top-1 {row['train_top1']:.1f}% | val loss {row['val_loss']:.4f} "
                f"top-1 {row['val_top1']:.2f}%" + (" (best)" if improved else ""),
                flush=True,
            )
        s.epoch, s.step, s.sums = epoch + 1, 0, [0.0, 0.0, 0.0]
        return row


def _as_state(value: Any) -> Any:
    """``random.getstate()`` comes back from a checkpoint with lists where it had tuples."""
    if isinstance(value, list):
        return tuple(_as_state(v) for v in value)
    return value
