"""ONNX zoo cards: one per classifier file of the manifest, with its family's preprocessing.

Accuracies: the top-1/top-5 the zoo's READMEs publish per model file, shipped as
``omnizoo/data/onnx_zoo_metrics.json`` (derived by ``scripts/derive_onnx_metrics.py`` from the
READMEs at onnx/models b1eeaa1a, each README's sha256 recorded), cited on the card. The READMEs
give figures for 53 of the 113 files (none for the opset 3-9 duplicates of the Caffe models,
the Caffe2 conversions, Inception-2 and R-CNN).

Parameter counts and GFLOPs: not on ONNX cards. The zoo publishes neither, and counting them
needs the graph itself (hundreds of MB each, not in the manifest); see docs/models/README.md.
"""

from __future__ import annotations

import functools
from typing import Any

from ...values.card import ModelCard, WeightsFile
from ..package_data import package_data, read_json
from .families import FAMILIES, ZooEntry, classify_manifest
from .manifest import HF_REPO, model_urls, try_manifest

__all__ = ["build_cards", "card_for", "readme_metrics"]

_ZOO_TREE = "https://github.com/onnx/models/tree/main/"


def build_cards() -> list[ModelCard]:
    """Every classifier of the pinned manifest (none while the manifest is unavailable)."""
    manifest = try_manifest()
    if manifest is None:
        return []
    return [card_for(entry) for entry in classify_manifest(manifest)]


@functools.lru_cache(maxsize=1)
def readme_metrics() -> dict[str, Any]:
    """The shipped README figures (``{"provenance": ..., "metrics": {model_path: ...}}``;
    empty metrics when the file is missing from the install)."""
    path = package_data("onnx_zoo_metrics.json")
    if not path.is_file():
        return {"provenance": {}, "metrics": {}}
    data: dict[str, Any] = read_json(path)
    return data


def _metric_fields(model_path: str) -> dict[str, Any]:
    data = readme_metrics()
    found = data["metrics"].get(model_path)
    if not found:
        return {}
    commit = str(data["provenance"].get("commit", ""))[:8]
    where = f"onnx/models @ {commit} {found['readme']} (row {found['row']!r})"
    fields: dict[str, Any] = {"metrics_dataset": "ImageNet-1K"}
    provenance = []
    for key in ("top1", "top5"):
        if found.get(key) is not None:
            fields[key] = float(found[key])
            provenance.append((key, where))
    fields["provenance"] = tuple(provenance)
    return fields


def card_for(entry: ZooEntry) -> ModelCard:
    meta = entry.raw.get("metadata") or {}
    family = FAMILIES[entry.family]
    data = family.data
    if entry.layout != data.layout:  # the graph says otherwise: trust the graph
        data = data.replace(layout=entry.layout)
    notes = [f"preprocessing ({entry.family}): {family.note}"]
    if not family.verified:
        notes.append("preprocessing unverified (DataConfig.verified=False)")
    if not entry.loadable:
        notes.append(
            f"opset {entry.opset} < 7: onnxruntime cannot load it (it only supports opset >= 7);"
            " use a higher-opset file of the same model"
        )
    if entry.io_inferred:
        notes.append(
            "the manifest has no io_ports for this opset; taken from the same model's other opset"
        )
    if entry.softmax_in_graph:
        notes.append("softmax is part of the graph: outputs are probabilities")
    if len(entry.output_shape) == 4:
        notes.append(f"graph output {list(entry.output_shape)} is flattened to [N, classes]")
    if entry.fixed_batch:
        notes.append("graph has a fixed batch of 1: batches run one sample at a time")
    notes.append(
        "no parameter count or GFLOPs: the zoo publishes none, and the graph is not read when "
        "the cards are built"
    )
    imagenet = entry.num_classes == 1000
    if not imagenet:
        notes.append(
            f"{entry.num_classes} ILSVRC2013 detection classes (R-CNN SVM scores), not the "
            "ImageNet-1k label set"
        )
    test_data = None
    if meta.get("model_with_data_path"):
        test_data = {
            "path": meta["model_with_data_path"],
            "sha256": meta.get("model_with_data_sha"),
            "size": meta.get("model_with_data_bytes"),
        }
    directory = entry.model_path.rsplit("/", 1)[0]
    if directory.endswith("/model"):
        directory = directory[: -len("/model")]
    return ModelCard(
        source="onnx",
        arch=entry.arch,
        tag="imagenet" if imagenet else "ilsvrc13_det",
        task="classification",
        weights=WeightsFile(
            urls=model_urls(entry.model_path),
            filename=entry.model_path.rsplit("/", 1)[-1],
            sha256=meta.get("model_sha"),
            size=meta.get("model_bytes"),
            format="onnx",
            hf_hub_id=HF_REPO,
        ),
        is_default=True,
        num_classes=entry.num_classes,
        label_set="imagenet-1k" if imagenet else None,
        data=data,
        output="probabilities" if entry.softmax_in_graph else "logits",
        license="apache-2.0",
        origin=_ZOO_TREE + directory,
        **_metric_fields(entry.model_path),
        notes=tuple(notes),
        extra={
            "zoo_model": entry.model,
            "zoo_file": entry.stem,
            "model_path": entry.model_path,
            "opset": entry.opset,
            "onnx_version": entry.raw.get("onnx_version"),
            "family": entry.family,
            "preprocessing_sources": list(family.sources),
            "precision": entry.precision,
            "layout": entry.layout,
            "input_name": entry.input_name,
            "input_shape": list(entry.input_shape),
            "output_name": entry.output_name,
            "output_shape": list(entry.output_shape),
            "softmax_in_graph": entry.softmax_in_graph,
            "onnxruntime_loadable": entry.loadable,
            "io_ports_inferred": entry.io_inferred,
            "test_data": test_data,
        },
    )
