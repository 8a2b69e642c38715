"""``omnizoo benchmark MODEL...``: latency (batch 1) and throughput (best batch size) of each
model on this machine, per backend, precision, thread count and device; medians with the
interquartile range, warm-up excluded, peak memory. Random weights (speed does not depend on
them; nothing is downloaded but ONNX-zoo graphs). The figures are recorded for this machine
(``--no-record`` not to), so that ``omnizoo compare`` and ``omnizoo plot --measured`` show
them. See :mod:`omnizoo.inference.benchmark`.

    omnizoo benchmark resnet50 mobilenet_v3_large --backend torch,onnxruntime
    omnizoo benchmark convnext_tiny --precision fp32,int8-dynamic --threads 1,4 --format csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import textwrap
from typing import Any

__all__ = ["register"]

_COLUMNS = ["backend", "precision", "thr", "ms b=1", "IQR", "batch", "img/s", "peak MB"]


def _list(kind: type, what: str) -> Any:
    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{what}: give one value or several, comma-separated")
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a list of numbers") from None

    return parse


def register(subparsers: Any) -> None:
    """Add the ``benchmark`` command."""
    p = subparsers.add_parser(
        "benchmark",
        help="measure latency and throughput on this machine",
        description="Latency (batch 1) and throughput (best batch size) of each model on this "
        "machine per backend, precision, thread count and device, on random input "
        "(pretrained=False: weights do not change speed). Medians and interquartile ranges "
        "of --repeats timed calls after --warmup untimed ones. Recorded for this machine "
        "unless --no-record (shown by `omnizoo compare` and `omnizoo plot --measured`).",
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument(
        "--backend",
        type=_list(str, "--backend"),
        default=["auto"],
        help="torch, onnxruntime, auto (comma-separated; default auto)",
    )
    p.add_argument(
        "--precision",
        type=_list(str, "--precision"),
        default=["auto"],
        help="auto, fp32, bf16, fp16, int8-dynamic, int8 (comma-separated; default auto)",
    )
    p.add_argument(
        "--threads",
        type=_list(int, "--threads"),
        default=[None],
        help="forward-pass thread counts, e.g. 1,4 (default: the libraries' own)",
    )
    p.add_argument(
        "--device", type=_list(str, "--device"), default=["auto"], help="cpu, cuda (default auto)"
    )
    p.add_argument(
        "--batch-sizes",
        type=_list(int, "--batch-sizes"),
        default=[1, 8, 32],
        help="batch sizes to time (1 is always timed: the latency); default 1,8,32",
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per batch size (3)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per batch size (10)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument(
        "--no-record", action="store_true", help="do not keep the figures for this machine"
    )
    p.set_defaults(func=run_benchmark)


def _machine_line(report: Any) -> str:
    m = report.machine
    gpu = "no GPU" if m.get("gpu") == "none" else m.get("gpu", "?")
    return (
        f"machine {report.fingerprint}: {m.get('cpu')}, {m.get('cores')} cores, "
        f"{m.get('memory_gib')} GiB, {gpu}; torch {m.get('torch')}, "
        f"onnxruntime {m.get('onnxruntime')}"
    )


def _table(report: Any, width: int) -> list[str]:
    from .table import columns

    def para(text: str) -> list[str]:
        return textwrap.wrap(text, width, subsequent_indent="  ")

    sizes = ", ".join(map(str, report.batch_sizes))
    lines = para(_machine_line(report))
    lines += para(
        "random weights (pretrained=False: weights do not change speed); "
        f"{report.warmup} warm-up and {report.repeats} timed calls per batch size ({sizes}); "
        "ms b=1: median latency at batch 1, IQR: its interquartile range, batch: the "
        "batch size of the highest throughput (img/s)"
    )
    lines += para(f"{report.load_before} before, {report.load_after.split(' ', 2)[2]} after")
    auto_reasons: list[str] = []
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in report.results:
        groups.setdefault((r.model, r.device), []).append(r)
    for (model, device), results in groups.items():
        rows = []
        for r in results:
            row = r.row()
            backend = r.ran
            if r.backend == "auto":
                backend += "*"
                auto_reasons.append(f"{model.split(':', 1)[-1]}: {r.ran} ({r.reason})")
            mem = row["peak_memory_mb"]
            rows.append(
                [
                    backend,
                    r.precision,
                    str(r.threads),
                    f"{row['latency_ms']:.2f}",
                    f"{row['latency_iqr_ms']:.2f}",
                    str(row["best_batch"]),
                    f"{row['throughput_ips']:.1f}",
                    "-" if mem is None else str(mem),
                ]
            )
        lines += ["", f"{model} ({device})"]
        lines += ["  " + line for line in columns(_COLUMNS, rows, right=6)]
    if auto_reasons:
        lines.append("")
        lines += para("* chosen by backend='auto': " + "; ".join(auto_reasons))
    for what, why in report.skipped:
        lines += para(f"skipped {what}: {why}")
    if report.recorded:
        note = "recorded for this machine: `omnizoo compare` and `omnizoo plot --measured` show it"
        lines += ["", *para(note)]
    return lines


def run_benchmark(args: argparse.Namespace) -> int:
    from ..inference.benchmark import benchmark
    from .table import terminal_width

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = benchmark(
        args.models,
        backends=args.backend,
        precisions=args.precision,
        threads=args.threads,
        devices=args.device,
        batch_sizes=args.batch_sizes,
        warmup=args.warmup,
        repeats=args.repeats,
        record=not args.no_record,
        progress=progress if sys.stderr.isatty() else None,
    )
    out = sys.stdout
    if args.format == "json":
        doc = {
            "fingerprint": report.fingerprint,
            "machine": report.machine,
            "pretrained": report.pretrained,
            "warmup": report.warmup,
            "repeats": report.repeats,
            "batch_sizes": list(report.batch_sizes),
            "load_before": report.load_before,
            "load_after": report.load_after,
            "results": report.rows(),
            "skipped": [{"configuration": w, "reason": y} for w, y in report.skipped],
            "recorded": report.recorded,
        }
        out.write(json.dumps(doc, indent=1) + "\n")
    elif args.format == "csv":
        rows = report.rows()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["model"])
        writer.writeheader()
        writer.writerows(rows)
        for what, why in report.skipped:
            print(f"skipped {what}: {why}", file=sys.stderr)
    else:
        out.write("\n".join(_table(report, terminal_width())) + "\n")
    out.flush()
    return 0 if report.results else 1
