"""Images per second of omnizoo's Predictor against a plain loop and the forward-pass ceiling.

    .venv/bin/python benchmarks/bench_predict.py     # 2,000 JPEGs, resnet50/mobilenet/vit_b_16
    .venv/bin/python benchmarks/bench_predict.py --images 96 --models mobilenet_v3_large
    .venv/bin/python benchmarks/bench_predict.py --images 100 --precision int8 bf16
    .venv/bin/python benchmarks/bench_predict.py --models resnet50 --ray-actors 1 2

For each model (random init: speed does not depend on the weights' values) it times, over the
same real JPEGs (2,000 by default; scikit-image's sample photographs, randomly cropped and
resized to varied sizes around 500x375, written to a temporary directory):

* plain loop: for each batch of 32: ``PIL.Image.open(...).convert("RGB")``, torchvision's
  ``weights.transforms()``, ``torch.stack``, ``model(x)`` under ``torch.no_grad()`` — what a
  user writes by hand;
* Predictor (torch): ``omnizoo.Predictor(model, ...).predict(paths)``;
* Predictor (onnxruntime): the same with ``backend="onnxruntime"`` (exported once with
  ``torch.onnx.export``, export time not counted);
* forward alone: the model as given on ready, preprocessed tensors (inference_mode,
  channels_last) — the ceiling for a pipeline that hides decoding entirely;
* forward alone, BN folded: the same through the Predictor's own runner, which folds BatchNorm
  into the convolutions (``fold_bn=True``, the default): the Predictor's real ceiling;
* Predictor (auto): ``backend="auto"``, the default (the choice and its reason are printed);
* onnxruntime forward alone: the exported graph on the ready tensors, the onnxruntime ceiling;
* Predictor (bf16 / int8-dynamic / int8): ``precision=...`` (``--precision``), bf16 only where
  the CPU has it natively; ``min_agreement=0`` because random weights make the accuracy guard
  meaningless (its figure is printed all the same); quantization time not counted;
* Ray, N actors (``--ray-actors 1 2``): ``omnizoo.inference.distributed.predict_ray`` on a
  local Ray cluster started beforehand (its start is not counted; the actors' start is), the
  model pickled to each actor, ``backend="auto"``, rows written to a Parquet file. Printed: the
  whole run, and the rate after the first rows arrived (the actors' steady state).

The load averages are printed before and after each model (the machine is shared).
Each timing is the best of ``--repeats`` runs after one warm-up batch. Besides images per
second (wall clock), it prints images per CPU-second of the process: on a shared machine the
wall figure also measures the neighbours (a process with more runnable threads gets a larger
share of a loaded CPU), the CPU figure much less so. On a shared VM, "forward alone" can even
come out slower than the Predictor: the same forward pass runs faster while decoding threads
keep the other vCPUs busy (see docs/inference.md).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def make_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` JPEGs around 500x375 cut from scikit-image's sample photographs."""
    import skimage.data as D
    from PIL import Image

    rng = random.Random(seed)
    sources = [
        Image.fromarray(getattr(D, n)()).convert("RGB")
        for n in ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field")
    ]
    paths = []
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = rng.randint(int(w * 0.6), w), rng.randint(int(h * 0.6), h)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = src.crop((left, top, left + cw, top + ch))
        tw = rng.randint(420, 580)
        th = rng.randint(300, 450) if i % 4 else rng.randint(520, 640)  # some portraits
        crop = crop.resize((tw, th), Image.Resampling.BICUBIC)
        path = folder / f"img{i:04d}.jpg"
        crop.save(path, quality=rng.randint(80, 95))
        paths.append(path)
    return paths


CPU_SECONDS: dict[str, float] = {}


def best_of(fn: Callable[[], Any], repeats: int, label: str = "") -> float:
    """Best wall time of ``repeats`` runs; the CPU seconds of that run go to CPU_SECONDS."""
    from omnizoo.inference.timing import timed_runs

    wall, cpu = min(timed_runs(fn, repeats=repeats))
    CPU_SECONDS[label] = cpu
    return wall


def bench_model(name: str, paths: list[Path], args: argparse.Namespace) -> dict[str, float]:
    import torch
    import torchvision
    from PIL import Image

    from omnizoo import Predictor, resolve_data_config
    from omnizoo.data.transforms import ImageTransform
    from omnizoo.inference.precision import cpu_bf16_support

    weights = torchvision.models.get_model_weights(name).DEFAULT
    reference = weights.transforms()
    model = torchvision.models.get_model(name, weights=None).eval()
    config = resolve_data_config(f"torchvision:{name}.{weights.name}")
    labels = [str(i) for i in range(1000)]
    bs = args.batch_size
    n = len(paths)

    # The Predictor moves its model to channels_last in place: the plain loop gets its own
    # (untouched, default-format) instance of the same architecture.
    plain_model = torchvision.models.get_model(name, weights=None).eval()

    def plain() -> None:
        with torch.no_grad():
            for i in range(0, n, bs):
                batch = [reference(Image.open(p).convert("RGB")) for p in paths[i : i + bs]]
                plain_model(torch.stack(batch))

    predictor = Predictor(
        model,
        data_config=config,
        labels=labels,
        device="cpu",
        batch_size=bs,
        num_workers=args.workers,
    )
    transform = ImageTransform(config)
    ready = [
        torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i : i + bs]])
        for i in range(0, n, bs)
    ]
    runner = predictor._run  # the Predictor's own model runner (BN folded, channels_last, ...)
    # The model as given, with the same settings but nothing folded: the ceiling.
    from omnizoo.inference.backends import TorchRunner

    as_given = TorchRunner(
        torchvision.models.get_model(name, weights=None).eval(), torch.device("cpu"), fold_bn=False
    )

    def forward_only() -> None:
        for x in ready:
            as_given(x)

    def forward_runner() -> None:
        for x in ready:
            runner(x)

    results: dict[str, float] = {}
    plain_first = [reference(Image.open(p).convert("RGB")) for p in paths[:bs]]
    with torch.no_grad():
        plain_model(torch.stack(plain_first))  # warm-up
    results["plain loop"] = n / best_of(plain, args.repeats, "plain loop")
    model_cl = predictor.predict(paths[:bs])  # warm-up (also converts to channels_last)
    del model_cl
    results["Predictor (torch)"] = n / best_of(
        lambda: predictor.predict(paths), args.repeats, "Predictor (torch)"
    )
    results["forward alone"] = n / best_of(forward_only, args.repeats, "forward alone")
    results["forward alone, BN folded"] = n / best_of(
        forward_runner, args.repeats, "forward alone, BN folded"
    )
    if not args.no_onnx:
        ort_model = torchvision.models.get_model(name, weights=None).eval()
        ort = Predictor(
            ort_model,
            data_config=config,
            labels=labels,
            device="cpu",
            batch_size=bs,
            num_workers=args.workers,
            backend="onnxruntime",
        )
        ort.predict(paths[:bs])
        results["Predictor (onnxruntime)"] = n / best_of(
            lambda: ort.predict(paths), args.repeats, "Predictor (onnxruntime)"
        )
        ort_run = ort._run

        def ort_forward() -> None:
            for x in ready:
                ort_run(x)

        results["onnxruntime forward alone"] = n / best_of(
            ort_forward, args.repeats, "onnxruntime forward alone"
        )
        auto = Predictor(
            ort_model,  # the same weights: the export cached above is reused
            data_config=config,
            labels=labels,
            device="cpu",
            batch_size=bs,
            num_workers=args.workers,
        )
        print(f"{name}: backend='auto' chose {auto.backend_choice}")
        auto.predict(paths[:bs])
        results["Predictor (auto)"] = n / best_of(
            lambda: auto.predict(paths), args.repeats, "Predictor (auto)"
        )
        for precision in args.precision:
            if precision == "bf16" and not cpu_bf16_support()[0]:
                print(f"{name}: bf16 skipped: {cpu_bf16_support()[1]}")
                continue
            reduced = Predictor(
                ort_model,
                data_config=config,
                labels=labels,
                device="cpu",
                batch_size=bs,
                num_workers=args.workers,
                precision=precision,
                min_agreement=0,  # random weights: the agreement says nothing; speed does
            )
            print(f"{name}: precision={precision!r}: {reduced.backend_choice}")
            reduced.predict(paths[:bs])
            label = f"Predictor ({precision})"
            results[label] = n / best_of(lambda r=reduced: r.predict(paths), args.repeats, label)
        for actors in args.ray_actors:
            total, steady = bench_ray(ort_model, config, labels, paths, actors, bs)
            results[f"Ray, {actors} actor(s), whole run"] = total
            results[f"Ray, {actors} actor(s), steady"] = steady
    return results


def bench_ray(
    model: Any, config: Any, labels: list[str], paths: list[Path], actors: int, bs: int
) -> tuple[float, float]:
    """(images/s of the whole run, images/s after the first rows arrived) on Ray."""
    import ray

    from omnizoo.inference.distributed import predict_ray

    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    arrivals: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="omnizoo-bench-ray-") as out:
        start = time.perf_counter()
        summary = predict_ray(
            model,
            [str(p) for p in paths],
            Path(out) / "preds.parquet",
            actors=actors,
            batch_size=bs,
            predictor_kwargs={"data_config": config, "labels": labels},
            progress="none",
            on_rows=lambda rows: arrivals.append((time.perf_counter(), len(rows))),
        )
        total = time.perf_counter() - start
    assert summary.predicted == len(paths) and summary.errors == 0, summary
    first_t, first_n = arrivals[0]
    steady_s = arrivals[-1][0] - first_t
    steady = (len(paths) - first_n) / steady_s if steady_s > 0 else 0.0
    return len(paths) / total, steady


def uptime() -> str:
    """The load averages (1, 5, 15 min), as ``uptime`` prints them: neighbours' load."""
    from omnizoo.inference.timing import load_average

    return load_average()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument(
        "--models", nargs="+", default=["resnet50", "mobilenet_v3_large", "vit_b_16"]
    )
    parser.add_argument(
        "--precision",
        nargs="*",
        default=["bf16", "int8-dynamic", "int8"],
        help="reduced precisions to time (bf16 only where the CPU has it natively)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="Predictor decode threads")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument(
        "--ray-actors", type=int, nargs="*", default=[], help="also run on Ray with N actors"
    )
    args = parser.parse_args()

    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"{os.cpu_count()} CPUs, {uptime()}"
    )
    with tempfile.TemporaryDirectory(prefix="omnizoo-bench-") as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        print(f"{len(paths)} JPEGs around 500x375 in {tmp}, batch size {args.batch_size}\n")
        for name in args.models:
            res = bench_model(name, paths, args)
            print(f"{name} ({uptime()} after it)")
            plain = res["plain loop"]
            ceiling = res["forward alone"]
            for label, ips in res.items():
                extra = f"{ips / plain:5.2f}x plain loop, {ips / ceiling:5.2f}x forward alone"
                per_cpu = len(paths) / CPU_SECONDS[label] if CPU_SECONDS.get(label) else 0.0
                if label.startswith("Ray"):  # the work is in the actors: no CPU figure
                    extra += f", {ips / res['Predictor (auto)']:5.2f}x Predictor (auto)"
                print(f"  {label:<28} {ips:8.1f} img/s {per_cpu:8.1f} img/CPU-s   {extra}")
            if "Predictor (onnxruntime)" in res:
                ratio = res["Predictor (onnxruntime)"] / res["Predictor (torch)"]
                print(f"  onnxruntime / torch backend: {ratio:.2f}x")
                best = max(res["forward alone, BN folded"], res["onnxruntime forward alone"])
                print(
                    f"  auto: {res['Predictor (auto)'] / plain:.2f}x plain loop, "
                    f"{res['Predictor (auto)'] / best:.2f}x the faster forward-only ceiling"
                )
            print()


if __name__ == "__main__":
    main()
