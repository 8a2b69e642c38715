"""timm's published results on timm's cards: ImageNet-1k top-1/top-5, the robustness sets,
parameter counts and GMACs, from the tables of pytorch-image-models' ``results/`` folder.

The tables ship as ``omnizoo/data/timm_results.json.gz``, derived by
``scripts/derive_timm_results.py`` (its provenance: the commit and the sha256 of every CSV).
Accuracies are per ``arch.tag`` and image size; GMACs and parameter counts per ``arch`` and
image size from the inference benchmarks. A card takes:

* accuracies from the row at the card's input size (else the table's first row for that tag),
  the other sizes as ``top1@<size>``/``top5@<size>`` extra metrics, and each robustness set at
  the same size as ``<set>:top1``/``<set>:top5`` (``imagenet-real``, ``imagenetv2``,
  ``imagenet-sketch``, ``imagenet-a``, ``imagenet-r``);
* GMACs (as ``gflops``) and, when the accuracy table has no parameter count, the parameter
  count of the benchmark row at the card's input size, for a card whose head has the size
  timm's benchmark built (the architecture's default). The CPU benchmark is preferred: the GPU
  one measured re-parameterised (BN-fused) models, so its rows are not used for the timm
  modules where the two runs disagree on a parameter count.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from ..package_data import package_data, read_json

__all__ = ["DATASET", "ROBUSTNESS", "TimmResults", "load_results"]

DATASET = "ImageNet-1K"
ROBUSTNESS = ("imagenet-real", "imagenetv2", "imagenet-sketch", "imagenet-a", "imagenet-r")
FILENAME = "timm_results.json.gz"


class TimmResults:
    """The derived tables, and what they say about one card."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        prov = data["provenance"]
        self.where = f"timm results/ @ {prov['commit'][:10]}"
        self.imagenet: dict[str, list[list[Any]]] = data["imagenet"]
        self.robustness: dict[str, dict[str, list[list[Any]]]] = data["robustness"]
        self.benchmarks: dict[str, dict[str, Any]] = data["benchmarks"]
        self.disagree: tuple[str, ...] = tuple(data.get("param_count_differs") or ())

    def card_fields(
        self,
        name: str,
        arch: str,
        input_size: tuple[int, int, int],
        *,
        head_is_default: bool,
        skip_gpu: bool,
    ) -> dict[str, Any]:
        """The card fields (top1, top5, metrics_dataset, extra_metrics, num_params, gflops,
        provenance pairs) the tables give for the card ``name`` (``arch.tag``)."""
        out: dict[str, Any] = {}
        provenance: list[tuple[str, str]] = []
        extra: list[tuple[str, float]] = []
        square = input_size[1] == input_size[2]
        size = input_size[1]
        rows = self.imagenet.get(name)
        if rows:
            row = next((r for r in rows if square and r[0] == size), rows[0])
            img, top1, top5, param_count, crop_pct, interp = row
            out.update(top1=top1, top5=top5, metrics_dataset=DATASET)
            eval_at = f"{img}x{img}, crop_pct {crop_pct}, {interp}"
            provenance += [
                ("top1", f"{self.where} results-imagenet.csv ({eval_at})"),
                ("top5", f"{self.where} results-imagenet.csv ({eval_at})"),
            ]
            out["num_params"] = round(param_count * 1e6)
            provenance.append(
                ("num_params", f"{self.where} results-imagenet.csv ({param_count} M, rounded)")
            )
            for other in rows:
                if other is not row and other[0] != img:
                    extra += [(f"top1@{other[0]}", other[1]), (f"top5@{other[0]}", other[2])]
            for key in ROBUSTNESS:
                found = self.robustness.get(key, {}).get(name)
                if not found:
                    continue
                at = next((r for r in found if r[0] == img), None)
                if at is None:
                    continue
                extra += [(f"{key}:top1", at[1]), (f"{key}:top5", at[2])]
            if extra:
                provenance.append(("extra_metrics", f"{self.where} results-*.csv"))
        if head_is_default and square:
            for table in ("cpu", "gpu"):
                if table == "gpu" and skip_gpu:
                    continue
                bench = self.benchmarks[table]
                hit = next((r for r in bench["rows"].get(arch, ()) if r[0] == size), None)
                if hit is None:
                    continue
                out["gflops"] = hit[1]
                provenance.append(("gflops", f"{self.where} {bench['file']} (GMACs at {size})"))
                if "num_params" not in out:
                    out["num_params"] = round(hit[2] * 1e6)
                    provenance.append(
                        ("num_params", f"{self.where} {bench['file']} ({hit[2]} M, rounded)")
                    )
                break
        if extra:
            out["extra_metrics"] = tuple(extra)
        out["provenance"] = tuple(provenance)
        return out

    def unreliable_modules(self, module_of: dict[str, str]) -> Collection[str]:
        """The timm modules of the archs whose parameter counts differ between the two
        benchmark runs (their GPU-table rows are not used)."""
        return {module_of[a] for a in self.disagree if a in module_of}


@functools.lru_cache(maxsize=1)
def load_results() -> TimmResults | None:
    """The shipped tables (None when the file is missing from the install)."""
    path = package_data(FILENAME)
    if not path.is_file():
        return None
    return TimmResults(read_json(path))
