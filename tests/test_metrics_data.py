"""The metrics on the cards: derived package data equal to what the scripts make from the
reference tables, in step with the installed timm, on every card they cover, and the README
accuracies of Cadene, EfficientNet and the ONNX zoo."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from omnizoo.registry.index import load_index
from omnizoo.registry.registry import get_card
from omnizoo.sources.package_data import package_data, read_json
from versions import is_pinned

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
TIMM_RESULTS = REFERENCE / "timm_results"
ONNX_READMES = ROOT / "scripts" / "inputs" / "onnx-models-b1eeaa1a"

needs_timm_reference = pytest.mark.skipif(
    not (TIMM_RESULTS / "SOURCE.md").is_file(), reason="no ../shared/reference/timm_results"
)


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timm_data() -> dict[str, Any]:
    data: dict[str, Any] = read_json(package_data("timm_results.json.gz"))
    return data


# ----------------------------------------------------------------------------- timm tables
@needs_timm_reference
def test_timm_results_are_derived_from_the_reference_tables() -> None:
    derive = _script("derive_timm_results")
    fresh = derive.derive(TIMM_RESULTS)
    assert fresh == _timm_data()
    # byte for byte, as the script writes it
    assert derive.encode(fresh) == package_data("timm_results.json.gz").read_bytes()
    for name, digest in fresh["provenance"]["inputs"].items():
        assert hashlib.sha256((TIMM_RESULTS / name).read_bytes()).hexdigest() == digest
    assert fresh["provenance"]["commit"] in (TIMM_RESULTS / "SOURCE.md").read_text()


def test_timm_tables_and_installed_timm_tags() -> None:
    """On the timm the tables are derived for (the pinned one), every tag they name exists
    (none is guessed); on any timm, a tag it lacks makes no card, and the tags it has that the
    tables do not cover carry no accuracy."""
    import timm

    data = _timm_data()
    tags = set(timm.list_models(pretrained=True))
    archs = set(timm.list_models())
    named = set(data["imagenet"]).union(*data["robustness"].values())
    not_in_timm = sorted(named - tags)
    bench_archs = set().union(*(set(b["rows"]) for b in data["benchmarks"].values()))
    idx = load_index("timm")
    if is_pinned("timm"):
        assert not_in_timm == [], f"tables name tags the installed timm lacks: {not_in_timm}"
        assert sorted(bench_archs - archs) == []
    else:  # an older or newer timm: the tables' other tags are no cards of its index
        assert [n for n in not_in_timm if f"timm:{n}" in idx.raw] == []
    uncovered = sorted(tags - set(data["imagenet"]))
    print(f"{len(uncovered)} of {len(tags)} timm tags have no row in results-imagenet.csv")
    for name in uncovered:
        card = idx.card(f"timm:{name}")
        assert card.top1 is None and card.cited("top1") is None, name


def test_every_covered_timm_card_carries_the_table_figures() -> None:
    """Every card of a tag the tables cover carries their figures: all 1266 on the pinned timm,
    on another timm those of the tags it has."""
    data = _timm_data()
    idx = load_index("timm")
    covered = 0
    for name, rows in data["imagenet"].items():
        if f"timm:{name}" not in idx.raw and not is_pinned("timm"):
            continue  # a tag this timm does not have (test above)
        card = idx.card(f"timm:{name}")
        size = card.data.input_size[1]
        row = next((r for r in rows if r[0] == size), rows[0])
        assert (card.top1, card.top5) == (row[1], row[2]), name
        assert card.num_params == round(row[3] * 1e6), name
        assert card.metrics_dataset == "ImageNet-1K"
        assert "results-imagenet.csv" in (card.cited("top1") or "")
        assert card.gflops is not None and card.num_params is not None, name
        covered += 1
    if is_pinned("timm"):
        assert covered == len(data["imagenet"]) == 1266
    else:
        assert covered > 1000, covered  # timm 1.0.9 (the floor): 1177


def test_timm_card_figures_exact() -> None:
    card = get_card("timm:resnet50.a1_in1k")
    assert (card.top1, card.top5, card.num_params, card.gflops) == (80.382, 94.598, 25560000, 4.11)
    extra = dict(card.extra_metrics)
    assert extra["top1@288"] == 81.24 and extra["imagenet-real:top1"] == 85.712
    assert extra["imagenetv2:top1"] == 68.47 and extra["imagenet-a:top1"] == 9.973
    assert "224x224" in (card.cited("top1") or "")
    assert "benchmark-infer-fp32" in (card.cited("gflops") or "")
    # the GPU benchmark measured re-parameterised RepVGG (14.34 M): not used for its card
    repvgg = get_card("timm:repvgg_b0")
    assert repvgg.gflops == 3.41 and "fp32" in (repvgg.cited("gflops") or "")


@pytest.mark.parametrize("arch", ["resnet50", "vit_base_patch16_224", "convnext_tiny"])
def test_counting_agrees_with_timms_published_figures(arch: str) -> None:
    """The counter's convention (multiply-adds) is timm's: a counted figure and the table's
    agree, so counted and published cards can be compared."""
    import timm

    from omnizoo.sources.param_flops import count_gflops, count_params, meta_build

    card = get_card(f"timm:{arch}")
    assert card.gflops is not None and card.num_params is not None
    with meta_build():
        model = timm.create_model(arch)
    assert count_gflops(model, card.data.input_size) == pytest.approx(card.gflops, rel=0.01)
    assert count_params(model) == pytest.approx(card.num_params, abs=5e3)


# ----------------------------------------------------------------------------- READMEs
def test_onnx_metrics_are_derived_from_the_vendored_readmes() -> None:
    derive = _script("derive_onnx_metrics")
    fresh = derive.derive(ONNX_READMES)
    shipped = read_json(package_data("onnx_zoo_metrics.json"))
    assert fresh == shipped
    for rel, digest in fresh["provenance"]["inputs"].items():
        assert hashlib.sha256((ONNX_READMES / rel).read_bytes()).hexdigest() == digest
    assert len(fresh["metrics"]) == 53
    # every figure names a file of the pinned manifest
    from omnizoo.sources.onnx.manifest import load_manifest

    paths = {e["model_path"] for e in load_manifest(fetch=False)}
    assert set(fresh["metrics"]) <= paths
    shuffle = fresh["metrics"][
        "validated/vision/classification/shufflenet/model/shufflenet-v2-10.onnx"
    ]
    assert (shuffle["top1"], shuffle["top5"]) == (69.36, 88.32)  # 100 - the README's errors


def test_onnx_cards_cite_the_readme() -> None:
    card = get_card("onnx:resnet50-v1-7")
    assert (card.top1, card.top5) == (74.93, 92.38)
    assert "resnet/README.md" in (card.cited("top1") or "")
    assert get_card("onnx:bvlcalexnet-3").top1 is None  # the README gives no figure for it
    cards = list(load_index("onnx").cards())
    assert sum(c.top1 is not None for c in cards) == 53
    for c in cards:
        assert c.num_params is None and c.gflops is None


def test_cadene_readme_accuracies() -> None:
    import pretrainedmodels

    from omnizoo.sources.cadene.cards import readme_accuracies
    from omnizoo.sources.readme import distribution_readme

    readme, version = distribution_readme("pretrainedmodels")
    found, unmatched = readme_accuracies(readme, list(pretrainedmodels.model_names))
    assert unmatched == []
    assert {a for a, _ in found} == set(pretrainedmodels.model_names)
    assert found[("se_resnext50_32x4d", "imagenet")][:2] == (79.076, 94.434)
    assert found[("xception", "imagenet")][:2] == (78.888, 94.292)  # "Our porting", not Keras
    assert found[("dpn92", "imagenet+5k")][:2] == (79.4, 94.62)
    card = get_card("cadene:se_resnext50_32x4d")
    assert (card.top1, card.top5) == (79.076, 94.434)
    assert f"pretrainedmodels {version} README" in (card.cited("top1") or "")
    background = get_card("cadene:inceptionv4.imagenet_background")  # the same file
    assert background.top1 == get_card("cadene:inceptionv4.imagenet").top1 == 80.062


def test_efficientnet_readme_accuracies() -> None:
    from omnizoo.sources.efficientnet.cards import readme_top1
    from omnizoo.sources.readme import distribution_readme

    top1 = readme_top1(distribution_readme("efficientnet_pytorch")[0])
    assert top1 == {
        f"efficientnet-b{i}": v
        for i, v in enumerate((76.3, 78.8, 79.8, 81.1, 82.6, 83.3, 84.0, 84.4))
    }
    card = get_card("efficientnet:efficientnet-b0.imagenet")
    assert card.top1 == 76.3 and card.top5 is None
    assert get_card("efficientnet:efficientnet-b0.advprop").top1 is None


# ----------------------------------------------------------------------------- every card
@pytest.mark.parametrize("source", ["torchvision", "timm", "cadene", "efficientnet"])
def test_every_torch_card_has_params_and_gflops(source: str) -> None:
    missing = []
    for card in load_index(source).cards():
        if card.num_params is None or card.gflops is None:
            missing.append(card.name)
            assert any("not counted" in n for n in card.notes), card.name
        else:
            assert card.cited("num_params") and card.cited("gflops"), card.name
    if source == "timm" and not is_pinned("timm"):
        # an older timm registers a few architectures with no pretrained cfg at all (1.0.9:
        # vit_betwixt_patch16_gap_256, built at 256 while the default cfg says 224, so it
        # cannot run at its card's size): those may stay uncounted, with the note
        from timm.models import get_pretrained_cfg

        missing = [n for n in missing if get_pretrained_cfg(n.split(":", 1)[1]) is not None]
    assert missing == [], missing


def test_card_json_carries_provenance() -> None:
    card = get_card("timm:resnet50.a1_in1k")
    data = json.loads(json.dumps(card.to_dict()))
    assert dict(data["provenance"])["top1"] == card.cited("top1")
