"""The registry: name grammar, resolution, listing, cards and the on-disk index."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import omnizoo
from omnizoo import errors, settings
from omnizoo.registry import adapters as adapters_mod
from omnizoo.registry import index as index_mod
from omnizoo.registry.registry import get_card, list_models
from omnizoo.registry.resolution import explain, list_sources
from omnizoo.registry.validate import card_problems, validate_card
from omnizoo.values.card import ModelCard
from omnizoo.values.names import format_name, parse_name, split_body
from versions import is_pinned


# ----------------------------------------------------------------------------- grammar
@pytest.mark.parametrize(
    ("name", "source", "body"),
    [
        ("resnet50", None, "resnet50"),
        ("timm:resnet50.a1_in1k", "timm", "resnet50.a1_in1k"),
        (
            "TIMM:vit_base_patch16_224.augreg2_in21k_ft_in1k",
            "timm",
            "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        ),
        ("onnx:resnet50-v1-7", "onnx", "resnet50-v1-7"),
        ("efficientnet:efficientnet-b0.advprop", "efficientnet", "efficientnet-b0.advprop"),
        (" cadene:se_resnext50_32x4d.imagenet ", "cadene", "se_resnext50_32x4d.imagenet"),
    ],
)
def test_parse_name(name: str, source: str | None, body: str) -> None:
    parsed = parse_name(name)
    assert (parsed.source, parsed.body) == (source, body)


@pytest.mark.parametrize(
    "bad", ["", "  ", "a:b:c", ":resnet50", "timm:", "res net", "resnet50.", "a..b", "timm:.x"]
)
def test_invalid_names(bad: str) -> None:
    with pytest.raises(errors.InvalidNameError):
        parse_name(bad)


def test_split_body_longest_arch_first() -> None:
    assert split_body("a.b.c") == [("a.b.c", None), ("a.b", "c"), ("a", "b.c")]
    assert format_name("timm", "resnet50", None) == "timm:resnet50"


# ----------------------------------------------------------------------------- resolution
def test_source_order_and_explain() -> None:
    from omnizoo.sources.table import source_names

    assert list_sources() == list(source_names())
    res = explain("resnet50")
    assert res.winner == "torchvision:resnet50.IMAGENET1K_V2"
    assert {c.source for c in res.candidates} >= {"torchvision", "timm"}
    assert "torchvision" in res.reason and "order" in res.reason
    assert "resnet50" in str(res)
    # a timm tag on an arch torchvision also has: torchvision is a candidate that lacks it
    res = explain("resnet50.a1_in1k")
    assert res.winner == "timm:resnet50.a1_in1k"
    tv = next(c for c in res.candidates if c.source == "torchvision")
    assert not tv.matched and "a1_in1k" in tv.reason


def test_source_order_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIZOO_SOURCE_ORDER", "timm,torchvision")
    settings.reset()
    assert get_card("resnet50").name == "timm:resnet50.a1_in1k"
    assert list_sources()[:2] == ["timm", "torchvision"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "vit_base_patch16_224.augreg2_in21k_ft_in1k",
            "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k",
        ),
        ("timm:resnet50", "timm:resnet50.a1_in1k"),
        ("torchvision:resnet50.IMAGENET1K_V1", "torchvision:resnet50.IMAGENET1K_V1"),
        ("resnet50.imagenet1k_v1", "torchvision:resnet50.IMAGENET1K_V1"),
        ("torchvision:resnet50.DEFAULT", "torchvision:resnet50.IMAGENET1K_V2"),
        ("convnext_tiny", "torchvision:convnext_tiny.IMAGENET1K_V1"),
        ("timm:vit_base_patch16_224", None),  # default tag, whatever timm says it is
    ],
)
def test_resolve(name: str, expected: str | None) -> None:
    card = get_card(name)
    if expected is not None:
        assert card.name == expected
    else:
        import timm.models

        assert card.tag == timm.models.get_pretrained_cfg("vit_base_patch16_224").tag
        assert card.is_default


def test_unknown_names_suggest() -> None:
    with pytest.raises(errors.UnknownModelError) as info:
        get_card("resnet5")
    assert "torchvision:resnet50" in info.value.suggestions
    assert "did you mean" in str(info.value)
    with pytest.raises(errors.UnknownSourceError):
        get_card("nosuch:resnet50")
    with pytest.raises(errors.NoPretrainedWeightsError, match="IMAGENET1K_V1"):
        get_card("torchvision:resnet50.nosuchtag")


def test_arch_without_weights_resolves_to_bare_card() -> None:
    bare = [
        n
        for n in list_models(source="timm")
        if n not in {m.rsplit(".", 1)[0] for m in list_models(source="timm", pretrained=True)}
    ]
    assert bare, "timm has architectures without weights"
    for name in bare[:20]:
        card = get_card(name)
        assert card.weights is None and card.is_default
        # a bare architecture, or timm's own default tag without weights (".untrained")
        assert card.tag in (None, "untrained"), card.name
    untagged = [n for n in bare if get_card(n).tag is None]
    assert untagged, "some timm architectures have no tag at all"


def test_get_card_from_model_and_card() -> None:
    card = get_card("timm:resnet18.a1_in1k")
    assert get_card(card) is card

    class Fake:
        omnizoo_card = card

    assert get_card(Fake()) is card
    with pytest.raises(errors.UnknownModelError):
        get_card(object())


# ----------------------------------------------------------------------------- listing
def test_counts_match_the_libraries() -> None:
    import timm
    import torchvision.models as tvm

    tv_archs = []
    tv_weights = 0
    for sub in (
        tvm,
        tvm.detection,
        tvm.segmentation,
        tvm.video,
        tvm.optical_flow,
        tvm.quantization,
    ):
        for arch in tvm.list_models(module=sub):
            tv_archs.append(arch)
            tv_weights += len(list(tvm.get_model_weights(arch)))
    assert len(list_models(source="torchvision")) == len(tv_archs) == 121
    assert len(list_models(source="torchvision", pretrained=True)) == tv_weights == 166
    assert len(list_models(source="timm")) == len(timm.list_models())
    ours = {n.split(":", 1)[1] for n in list_models(source="timm", pretrained=True)}
    theirs = set(timm.list_models(pretrained=True))
    assert ours <= theirs
    if not is_pinned("timm"):
        # timm 1.0.9 (the floor) registers the weights of 4 architectures without a tag
        # (tnt_s_patch16_224, sam2_hiera_*): omnizoo lists those as architectures only
        untagged = {n for n in theirs - ours if "." not in n}
        assert {f"timm:{n}" for n in untagged} <= set(list_models(source="timm"))
        theirs -= untagged
    assert len(ours) == len(theirs)


def test_list_models_patterns() -> None:
    with_prefix = list_models("timm:resnet50*")
    without = list_models("resnet50*", source="timm")
    assert with_prefix == without and "timm:resnet50" in with_prefix
    both = list_models("resnet50")
    assert both[:2] == ["torchvision:resnet50", "timm:resnet50"]
    tagged = list_models("resnet50.*", pretrained=True, source="torchvision")
    assert tagged == ["torchvision:resnet50.IMAGENET1K_V1", "torchvision:resnet50.IMAGENET1K_V2"]
    assert "timm:resnet50d" not in list_models("resnet50*", exclude=["*d"])
    assert list_models(["resnet18", "resnet34"], source="torchvision") == [
        "torchvision:resnet18",
        "torchvision:resnet34",
    ]
    det = list_models(source="torchvision", task="detection")
    assert "torchvision:fasterrcnn_resnet50_fpn" in det and len(det) == 11
    assert list_models(source="torchvision", task="keypoints") == [
        "torchvision:keypointrcnn_resnet50_fpn"
    ]
    assert all(n.startswith("torchvision:") for n in list_models(source="torchvision"))
    # The default task is stored compactly (left out of the index): it still filters.
    classifiers = list_models(pretrained=True, task="classification", source="torchvision")
    assert "torchvision:resnet50.IMAGENET1K_V2" in classifiers
    assert "torchvision:fasterrcnn_resnet50_fpn.COCO_V1" not in classifiers
    assert len(list_models(pretrained=True, task="classification")) > 1500
    assert list_models("resnet50.*", pretrained=True, task="detection") == []


# ----------------------------------------------------------------------------- cards
# Every card of every source is checked by tests/test_registry_sweep.py
# (test_one_default_per_architecture: the schema, unique names, one default per architecture).


def test_validate_card_catches_problems() -> None:
    good = ModelCard(source="timm", arch="resnet50")
    validate_card(good)
    bad = ModelCard(source="nope", arch="x", tag="t", top1=120.0, num_classes=-1)
    problems = card_problems(bad)
    assert any("unknown source" in p for p in problems)
    assert any("weights" in p for p in problems)
    assert any("top1" in p for p in problems)
    with pytest.raises(errors.ConfigurationError):
        validate_card(bad)


@pytest.mark.parametrize(
    ("name", "top1", "top5"),
    [
        ("torchvision:resnet50.IMAGENET1K_V1", 76.130, 92.862),
        ("torchvision:resnet50.IMAGENET1K_V2", 80.858, 95.434),
        ("torchvision:vit_b_16.IMAGENET1K_V1", 81.072, 95.318),
        ("torchvision:efficientnet_v2_l.IMAGENET1K_V1", 85.808, 97.788),
        ("torchvision:mobilenet_v3_large.IMAGENET1K_V2", 75.274, 92.566),
    ],
)
def test_torchvision_published_accuracies(name: str, top1: float, top5: float) -> None:
    card = get_card(name)
    assert card.top1 == pytest.approx(top1) and card.top5 == pytest.approx(top5)
    assert card.metrics_dataset == "ImageNet-1K"


def test_torchvision_card_contents() -> None:
    import torchvision.models as tvm

    card = get_card("torchvision:resnet50.IMAGENET1K_V2")
    w = tvm.ResNet50_Weights.IMAGENET1K_V2
    assert card.weights is not None and card.weights.url == w.url
    assert card.weights.hash_prefix == "11ad3fa6"
    assert card.num_params == w.meta["num_params"] and card.gflops == w.meta["_ops"]
    assert card.data.resize_size == 232 and card.data.crop_size == (224, 224)
    assert card.label_set == "imagenet-1k" and card.num_classes == 1000
    assert card.first_conv == "conv1" and card.classifier == ("fc",)
    det = get_card("torchvision:fasterrcnn_resnet50_fpn")
    assert det.task == "detection" and det.categories and det.num_classes == 91
    assert dict(det.extra_metrics)["box_map"] == 37.0
    flow = get_card("raft_large")
    assert flow.task == "optical_flow" and flow.num_classes == 0
    q = get_card("torchvision:quantized_resnet18")
    assert q.task == "quantized_classification"
    noprefix = get_card("torchvision:quantized_resnet18.IMAGENET1K_FBGEMM_V1")
    assert noprefix.weights is not None and noprefix.weights.hash_prefix is None
    assert any("sha256" in n for n in noprefix.notes)


def test_timm_card_contents() -> None:
    from timm.models import get_pretrained_cfg

    card = get_card("timm:vit_base_patch16_224.augreg2_in21k_ft_in1k")
    cfg = get_pretrained_cfg("vit_base_patch16_224.augreg2_in21k_ft_in1k")
    assert card.weights is not None
    assert card.weights.url == (
        "https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
        "/resolve/main/model.safetensors"
    )
    assert card.weights.format == "safetensors" and card.weights.hf_hub_id == cfg.hf_hub_id
    assert card.data.mean == tuple(cfg.mean) and card.data.crop_pct == cfg.crop_pct
    assert card.data.interpolation == cfg.interpolation
    assert card.first_conv == "patch_embed.proj" and card.classifier == ("head",)
    assert card.extra["module"] == "vision_transformer"
    url_only = get_card("timm:legacy_seresnet18.in1k")
    assert url_only.weights is not None and url_only.weights.hf_hub_id is None
    assert url_only.weights.url.endswith(".pth")


# ----------------------------------------------------------------------------- the index
def test_index_is_cached_and_fresh_process_imports_no_torch(session_home) -> None:
    list_models()  # builds (or reuses) every index in this home
    files = {p.name for p in (session_home / "index").glob("*.json")}
    for source in ("torchvision", "timm"):
        key = adapters_mod.get_adapter(source).index_key()
        # saved in this home, or shipped prebuilt for the pinned library versions
        assert index_mod._index_path(source, key).name in files or (
            index_mod.prebuilt_path(key).is_file()
        ), key
    code = (
        "import sys, time; t = time.perf_counter(); import omnizoo; "
        "n = len(omnizoo.list_models()); c = omnizoo.get_card('resnet50'); "
        "c2 = omnizoo.get_card('timm:vit_base_patch16_224'); dt = time.perf_counter() - t; "
        "import json; print(json.dumps({'n': n, 'dt': dt, 'top1': c.top1, "
        "'mods': [m for m in ('torch', 'timm', 'torchvision', 'importlib.metadata') "
        "if m in sys.modules]}))"
    )
    env = {"OMNIZOO_HOME": str(session_home), "PATH": "/usr/bin:/bin"}
    if os.environ.get("PYTHONPATH"):  # a source checkout run without installing it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["mods"] == []
    # This process may hold models that earlier tests registered (register_model,
    # @timm.register_model); a fresh one lists the zoo only.
    assert 1000 < data["n"] <= len(list_models())
    assert data["top1"] == 80.858
    # Speed is benchmarks/bench_create.py's job (its last line times this); here only what
    # was imported is checked, which no machine load can change.


def test_index_write_is_atomic_and_keyed(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Tiny(omnizoo.sources.base.SourceAdapter):  # type: ignore[name-defined]
        name = "timm"
        distribution = "timm"

        def build_cards(self):
            calls.append(1)
            return [ModelCard(source="timm", arch="tiny", is_default=True)]

        def create(self, card, request):
            raise NotImplementedError

    monkeypatch.setenv("OMNIZOO_HOME", str(tmp_path))
    settings.reset()
    index_mod.reset_indexes()
    monkeypatch.setitem(adapters_mod._adapters, "timm", Tiny())
    try:
        idx = index_mod.load_index("timm")
        assert list(idx.archs) == ["tiny"] and calls == [1]
        files = list((tmp_path / "index").iterdir())
        assert [f.name for f in files] == [f"{Tiny().index_key()}.json"]
        index_mod._indexes.clear()
        idx = index_mod.load_index("timm")
        assert calls == [1]  # read back from disk, not rebuilt
        # cards are decoded one by one, on demand
        assert all(isinstance(v, str) for v in idx.raw._items.values())  # type: ignore[attr-defined]
        assert idx.card("timm:tiny").arch == "tiny"
        assert isinstance(idx.raw._items["timm:tiny"], dict)  # type: ignore[attr-defined]
        # an index in the first (nested objects) layout is rebuilt, not misread
        files[0].write_text(json.dumps({"key": Tiny().index_key(), "cards": [{"arch": "x"}]}))
        index_mod._indexes.clear()
        assert list(index_mod.load_index("timm").archs) == ["tiny"] and calls == [1, 1]
        calls.pop()
        files[0].write_text("{corrupt")
        index_mod._indexes.clear()
        index_mod.load_index("timm")
        assert calls == [1, 1]  # a corrupt file is rebuilt
        monkeypatch.setenv("OMNIZOO_CARD_CACHE", "0")
        settings.reset()
        index_mod._indexes.clear()
        index_mod.load_index("timm")
        index_mod.load_index("timm")
        assert len(calls) == 3  # no disk cache: built once per process
    finally:
        index_mod.reset_indexes()


@pytest.mark.parametrize(
    "dist", ["timm", "torchvision", "pretrainedmodels", "efficientnet_pytorch"]
)
def test_source_versions_match_importlib_metadata(dist: str) -> None:
    import importlib.metadata

    from omnizoo.sources.base import _dist_info_version

    assert _dist_info_version(dist) == importlib.metadata.version(dist)
    assert _dist_info_version("no-such-distribution") is None


def test_broken_source_does_not_break_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(omnizoo.sources.base.SourceAdapter):  # type: ignore[name-defined]
        name = "onnx"
        distribution = "onnx"

        def build_cards(self):
            raise RuntimeError("boom")

        def create(self, card, request):
            raise NotImplementedError

    monkeypatch.setitem(adapters_mod._adapters, "onnx", Broken())
    for key in [k for k in index_mod._indexes if k[0] == "onnx"]:
        monkeypatch.delitem(index_mod._indexes, key)
    with pytest.warns(UserWarning, match="onnx"):
        names = list_models("resnet18")
    assert "torchvision:resnet18" in names
    with pytest.raises(RuntimeError):
        list_models(source="onnx")


def test_warm_listing_reads_and_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the indexes are loaded, listing and cards come from memory: no index file is read
    again, no prebuilt index decoded, nothing built (what kept a warm list fast; its speed is
    benchmarks/bench_create.py's to measure)."""
    list_models()
    get_card("convnext_tiny")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a warm listing went back to disk or the library: {args!r}")

    for name in ("_read_index", "_read_prebuilt", "_build"):
        monkeypatch.setattr(index_mod, name, refuse)
    assert "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k" in list_models(
        "*vit*", pretrained=True
    )
    assert get_card("convnext_tiny").name == "torchvision:convnext_tiny.IMAGENET1K_V1"


def test_dotted_arch_names_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX zoo arch names contain dots (squeezenet1.0-12): the arch/tag split must find them."""
    from pathlib import Path

    manifest = Path(__file__).resolve().parents[2] / "shared/reference/onnx_hub_manifest.json"
    if not manifest.is_file():
        pytest.skip("the pinned ONNX manifest reference copy is not available")
    monkeypatch.setenv("OMNIZOO_ONNX_MANIFEST_URL", str(manifest))
    settings.reset()
    try:
        idx = index_mod.load_index("onnx")
    except errors.DependencyError as exc:
        pytest.skip(f"onnx adapter not available: {exc}")
    if "squeezenet1.0-12" not in idx.archs:
        pytest.skip("the onnx source lists no squeezenet1.0-12")
    assert get_card("onnx:squeezenet1.0-12").arch == "squeezenet1.0-12"
    card = get_card("squeezenet1.0-12.imagenet")
    assert (card.source, card.arch, card.tag) == ("onnx", "squeezenet1.0-12", "imagenet")
    assert get_card("resnet50-v1-7").source == "onnx"
    assert "onnx:squeezenet1.0-12" in list_models("squeezenet1.0*")
