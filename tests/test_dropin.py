"""The drop-in contract: what a user who swaps ``timm.create_model`` or
``torchvision.models.get_model`` for ``omnizoo.create_model`` gets (docs/design.md).

Same architecture and seeded init, train mode, timm's ``out_indices``, strict checkpoint keys,
a fine-tuned head of the requested size kept, torchvision's default ``weights_backbone``
(through the verified cache), timm's untrained tags, ``pretrained_cfg(_overlay)`` sources,
``local-dir:``/``hf-hub:`` names, one ``feature_info`` type, ``device``/``dtype`` at build time.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import omnizoo
from omnizoo import create_model, errors, get_card, list_models, list_sources, settings
from tolerance import assert_state_dicts_equal
from versions import needs_timm_hub_names, timm_reads_hub_configs

torch.set_num_threads(2)

#: One small classifier per torch source, and its upstream builder.
TORCH_SOURCES = {
    "torchvision": "torchvision:resnet18",
    "timm": "timm:resnet18",
    "cadene": "cadene:resnet18",
    "efficientnet": "efficientnet:efficientnet-b0",
}


def _random_model(source: str, num_classes: int) -> torch.nn.Module:
    """The source's own model, built by the upstream library (not by omnizoo)."""
    if source == "torchvision":
        import torchvision.models as tvm

        return tvm.resnet18(num_classes=num_classes)
    if source == "timm":
        import timm

        return timm.create_model("resnet18", num_classes=num_classes)
    if source == "cadene":
        model = create_model("cadene:resnet18", num_classes=num_classes)
        return model
    from efficientnet_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-b0", num_classes=num_classes)


def test_every_source_is_covered() -> None:
    # user: models registered in this process, no upstream to drop in for (test_register.py)
    assert set(TORCH_SOURCES) | {"onnx", "user"} == set(list_sources())


# ----------------------------------------------------------------------------- the adapter contract
@pytest.mark.parametrize("source", sorted(TORCH_SOURCES))
def test_contract_fine_tuned_head_is_kept(source: str, tmp_path: Path) -> None:
    """A checkpoint whose head has the requested size loads whole (timm's documented way to
    reload a fine-tune: create_model(name, num_classes=10, checkpoint_path=f))."""
    torch.manual_seed(3)
    trained = _random_model(source, 10)
    f = tmp_path / "ten.pth"
    torch.save(trained.state_dict(), f)
    model = create_model(TORCH_SOURCES[source], num_classes=10, checkpoint_path=f)
    report = model.omnizoo_load_report
    assert report.ok and not report.reinitialized, str(report)
    assert_state_dicts_equal(model.state_dict(), trained.state_dict())
    assert get_card(model).num_classes == 10


@pytest.mark.parametrize("source", sorted(TORCH_SOURCES))
def test_contract_missing_keys_raise_unless_not_strict(source: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    sd = _random_model(source, 1000).state_dict()
    dropped = [k for k in sd if k.startswith(("layer4.", "_blocks.15.", "features.7"))][:30]
    dropped = dropped or list(sd)[-6:-2]
    for key in dropped:
        del sd[key]
    f = tmp_path / "partial.pth"
    torch.save(sd, f)
    with pytest.raises(errors.CheckpointError, match=r"missing") as info:
        create_model(TORCH_SOURCES[source], checkpoint_path=f)
    assert dropped[0] in str(info.value) and "strict=False" in str(info.value)
    model = create_model(TORCH_SOURCES[source], checkpoint_path=f, strict=False)
    assert sorted(model.omnizoo_load_report.missing) == sorted(dropped)


@pytest.mark.parametrize("source", sorted(TORCH_SOURCES))
def test_contract_unexpected_keys_raise(source: str, tmp_path: Path) -> None:
    sd = _random_model(source, 1000).state_dict()
    sd["extra.weight"] = torch.zeros(3)
    f = tmp_path / "extra.pth"
    torch.save(sd, f)
    with pytest.raises(errors.CheckpointError, match=r"unexpected \(extra.weight\)"):
        create_model(TORCH_SOURCES[source], checkpoint_path=f)
    model = create_model(TORCH_SOURCES[source], checkpoint_path=f, strict=False)
    assert model.omnizoo_load_report.unexpected == ["extra.weight"]


@pytest.mark.parametrize("source", sorted(TORCH_SOURCES))
def test_contract_train_mode_as_upstream(source: str, tmp_path: Path) -> None:
    """Upstream builders return train mode; so does omnizoo, with and without weights."""
    assert create_model(TORCH_SOURCES[source]).training
    f = tmp_path / "w.pth"
    torch.save(_random_model(source, 1000).state_dict(), f)
    model = create_model(TORCH_SOURCES[source], checkpoint_path=f)
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize("source", sorted(TORCH_SOURCES))
def test_contract_new_head_only_when_asked(source: str, tmp_path: Path) -> None:
    torch.manual_seed(4)
    trained = _random_model(source, 1000)
    f = tmp_path / "w.pth"
    torch.save(trained.state_dict(), f)
    model = create_model(TORCH_SOURCES[source], num_classes=5, checkpoint_path=f)
    report = model.omnizoo_load_report
    assert len(report.reinitialized) == 2 and not report.missing, str(report)
    kept = {k: v for k, v in trained.state_dict().items() if k not in report.reinitialized}
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in kept.items())


# ----------------------------------------------------------------------------- seeded init
def test_seeded_random_init_equals_torchvision_on_a_cold_home(tmp_path: Path) -> None:
    """Building the card index (first call on an empty OMNIZOO_HOME) must not draw from the
    global generator: torchvision's ViT builders draw their class token even on meta."""
    code = (
        "import sys, torch, torchvision.models as tvm, omnizoo\n"
        "torch.manual_seed(0); ours = omnizoo.create_model('torchvision:resnet18')\n"
        "torch.manual_seed(0); ref = tvm.resnet18()\n"
        "same = all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), "
        "ref.state_dict().values()))\n"
        "print('same' if same else 'different')\n"
    )
    for state in ("cold", "warm"):
        env = {"OMNIZOO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
        env.update({k: v for k, v in __import__("os").environ.items() if k == "PYTHONPATH"})
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert out.stdout.strip() == "same", (state, out.stdout, out.stderr[-2000:])


def test_index_build_leaves_the_rng_alone(isolated_home: Path) -> None:
    from omnizoo.registry.index import load_index

    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    load_index("cadene")  # builds (its meta builds run torchvision code)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:vit_tiny_patch16_224"])
def test_seeded_random_init_equals_timm(name: str) -> None:
    import timm

    torch.manual_seed(0)
    ref = timm.create_model(name.split(":", 1)[1])
    torch.manual_seed(0)
    ours = create_model(name)
    assert_state_dicts_equal(ours.state_dict(), ref.state_dict())


# ----------------------------------------------------------------------------- out_indices
def test_out_indices_int_means_the_last_levels() -> None:
    x = torch.randn(1, 3, 64, 64)
    for name in ("timm:resnet18", "torchvision:resnet18"):
        last2 = create_model(name, features_only=True, out_indices=2).eval()
        assert [f.shape[1] for f in last2(x)] == [256, 512], name
        assert last2.feature_info.channels() == [256, 512], name
        neg = create_model(name, features_only=True, out_indices=(0, -1)).eval()
        assert [f.shape[1] for f in neg(x)] == [64, 512], name
    eff = create_model("efficientnet:efficientnet-b0", features_only=True, out_indices=2).eval()
    assert [f.shape[1] for f in eff(x)] == [320, 1280]
    with pytest.raises(errors.UnsupportedError, match="out_indices=9"):
        create_model("torchvision:resnet18", features_only=True, out_indices=9)


@pytest.mark.parametrize(
    "name", ["timm:resnet18", "torchvision:resnet18", "efficientnet:efficientnet-b0"]
)
def test_one_feature_info_type_with_timms_api(name: str) -> None:
    model = create_model(name, features_only=True).eval()
    info = model.feature_info
    assert isinstance(info, omnizoo.FeatureInfo)
    feats = model(torch.randn(1, 3, 64, 64))
    assert info.channels() == [int(f.shape[1]) for f in feats]
    assert info.reduction() == [64 // int(f.shape[-1]) for f in feats]
    assert all(isinstance(n, str) and n for n in info.module_name())
    assert len(info.get_dicts()) == len(feats)


# ----------------------------------------------------------------------------- device / dtype
@pytest.mark.parametrize(
    "name",
    [
        "timm:vit_large_patch16_224",
        "torchvision:vit_l_16",
        "cadene:resnet18",
        "efficientnet:efficientnet-b7",
    ],
)
def test_meta_device_builds_no_tensors(name: str) -> None:
    model = create_model(name, device="meta", pretrained=True)  # nothing is downloaded either
    assert all(t.is_meta for t in model.state_dict().values())
    assert "device='meta'" in str(model.omnizoo_load_report)


def test_dtype_is_applied_while_loading(tmp_path: Path) -> None:
    import timm

    ref = timm.create_model("resnet18")
    f = tmp_path / "w.pth"
    torch.save(ref.state_dict(), f)
    model = create_model("timm:resnet18", checkpoint_path=f, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.equal(model.fc.weight, ref.fc.weight.to(torch.bfloat16))


def test_bad_dtype_is_named() -> None:
    with pytest.raises(errors.ConfigurationError, match="'float13'"):
        create_model("timm:resnet18", dtype="float13")


# ----------------------------------------------------------------------------- torchvision
def test_torchvision_weights_keyword(tmp_path: Path) -> None:
    assert not create_model("torchvision:resnet18", weights=None).omnizoo_load_report.source_file
    with settings.override(offline=True), pytest.raises(errors.OfflineError) as info:
        create_model("resnet18", weights="DEFAULT")
    assert "resnet18" in str(info.value)
    import torchvision.models as tvm

    with settings.override(offline=True), pytest.raises(errors.OfflineError):
        create_model("resnet18", weights=tvm.ResNet18_Weights.IMAGENET1K_V1)


def test_default_backbone_offline_names_the_way_out() -> None:
    with settings.override(offline=True), pytest.raises(errors.OfflineError) as info:
        create_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    text = str(info.value)
    assert "MobileNet_V3_Large_Weights.IMAGENET1K_V1" in text and "weights_backbone=None" in text


def test_default_backbone_comes_through_the_verified_cache(
    weight_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision's default ``weights_backbone`` (an ImageNet backbone with FrozenBatchNorm)
    is fetched like any weights file: verified by the file-name hash prefix, read safely."""
    import torchvision.models as tvm
    from torchvision.ops.misc import FrozenBatchNorm2d

    member = tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    torch.manual_seed(5)
    backbone = tvm.mobilenet_v3_large()
    buf = io.BytesIO()
    torch.save(backbone.state_dict(), buf)
    data = buf.getvalue()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    url = weight_server.add(f"/tv/mobilenet_v3_large-{prefix}.pth", data)
    monkeypatch.setattr(member.value, "url", url)
    model = create_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert model.training
    body = model.backbone.body
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    first = body["0"][0].weight
    assert torch.equal(first, backbone.features[0][0].weight)
    # offline now: the verified copy in the cache is used, no second download
    with settings.override(offline=True):
        again = create_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert torch.equal(again.backbone.body["0"][0].weight, first)
    ref_bytes = weight_server.stats()
    assert sum(v.get("bodies", 0) for k, v in ref_bytes.items() if "mobilenet" in k) == 1


def test_weights_backbone_none_is_upstreams_random_backbone() -> None:
    import torchvision.models as tvm

    torch.manual_seed(0)
    ref = tvm.get_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights_backbone=None)
    torch.manual_seed(0)
    ours = create_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", weights_backbone=None)
    assert_state_dicts_equal(ours.state_dict(), ref.state_dict())


# ----------------------------------------------------------------------------- timm names
def test_untrained_tags_build_and_are_not_pretrained() -> None:
    card = get_card("timm:coatnet_pico_rw_224.untrained")
    assert card.tag == "untrained" and card.weights is None
    assert get_card("timm:coatnet_pico_rw_224").tag == "untrained"  # timm's default tag
    assert list_models("coatnet_pico*", source="timm", pretrained=True) == []
    model = create_model("timm:coatnet_pico_rw_224.untrained")
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    with pytest.raises(errors.NoPretrainedWeightsError):
        create_model("timm:coatnet_pico_rw_224.untrained", pretrained=True)


def test_pretrained_cfg_overlay_file_loads_that_file(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(6)
    src = timm.create_model("resnet18")
    f = tmp_path / "native.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(f))
    with settings.override(offline=True):  # the published weights are never fetched
        model = create_model(
            "timm:resnet18.a1_in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(f))
        )
        sd_model = create_model(
            "timm:resnet18", pretrained=True, pretrained_cfg={"state_dict": src.state_dict()}
        )
    assert_state_dicts_equal(model.state_dict(), src.state_dict())
    assert_state_dicts_equal(sd_model.state_dict(), src.state_dict())
    assert model.omnizoo_load_report.source_file == str(f)


def test_pretrained_cfg_overlay_file_is_read_safely(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> Any:
            return (exec, ("raise SystemExit('ran')",))

    f = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, f)
    with settings.override(trust_pickle=True), pytest.raises(errors.UnsafeCheckpointError):
        create_model("timm:resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(f)))


@pytest.mark.skipif(timm_reads_hub_configs(), reason="this timm reads hub configs")
def test_hub_names_on_an_older_timm_name_the_timm_they_need(tmp_path: Path) -> None:
    """timm 1.0.9 (the floor) .. 1.0.19: a DependencyError naming timm >= 1.0.20, before
    anything is read or downloaded (offline: a download would raise OfflineError)."""
    (tmp_path / "config.json").write_text("{}")
    with settings.override(offline=True):
        for name in ("hf-hub:someone/tiny", f"local-dir:{tmp_path}"):
            with pytest.raises(errors.DependencyError, match=r'"timm>=1\.0\.20"'):
                create_model(name, pretrained=True)


@needs_timm_hub_names
def test_local_dir_names(tmp_path: Path) -> None:
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(7)
    src = timm.create_model("resnet18", num_classes=4)
    save_for_hf(src, str(tmp_path), model_config={"num_classes": 4})
    for name in (f"local-dir:{tmp_path}", f"timm:local-dir:{tmp_path}"):
        model = create_model(name, pretrained=True)
        assert model.training
        assert_state_dicts_equal(model.state_dict(), src.state_dict())
        assert get_card(model).num_classes == 4
    eight = create_model(f"local-dir:{tmp_path}", pretrained=True, in_chans=8)
    assert eight.conv1.weight.shape[1] == 8
    with pytest.raises(errors.ConfigurationError, match=r"config\.json"):
        create_model(f"local-dir:{tmp_path / 'nowhere'}")


@needs_timm_hub_names
def test_hf_hub_names_download_through_the_cache(
    weight_server: Any, monkeypatch: pytest.MonkeyPatch, hub_home: Path
) -> None:
    """``hf-hub:org/repo``: config.json and the weights both come from the Hub through the
    verified cache (git blob sha1 and LFS sha256 announced by the origin)."""
    import timm
    from safetensors.torch import save

    from hubfiles import HubRepo

    torch.manual_seed(8)
    src = timm.create_model("resnet18", num_classes=3)
    config = {
        "architecture": "resnet18",
        "num_classes": 3,
        "pretrained_cfg": dict(src.pretrained_cfg, num_classes=3),
    }
    config["pretrained_cfg"].pop("hf_hub_id", None)
    repo = HubRepo(weight_server, "someone/tiny-resnet")
    repo.add("config.json", json.dumps(config, default=list).encode(), lfs=False)
    weights = save({k: v.contiguous() for k, v in src.state_dict().items()})
    repo.add("model.safetensors", weights)
    monkeypatch.setenv("OMNIZOO_HF_ORIGIN", repo.base)
    settings.reset()
    model = create_model("hf-hub:someone/tiny-resnet", pretrained=True)
    assert_state_dicts_equal(model.state_dict(), src.state_dict())
    assert get_card(model).num_classes == 3
    assert repo.bodies(weights) == 1
    with settings.override(offline=True):  # everything is in the cache now
        again = create_model("timm:hf-hub:someone/tiny-resnet@main", pretrained=True)
    assert_state_dicts_equal(again.state_dict(), src.state_dict())


def test_scheme_names_are_parsed_in_one_place() -> None:
    from omnizoo.values.names import parse_name

    assert parse_name("hf_hub:timm/x").scheme == "hf-hub"
    assert parse_name("timm:local-dir:C:/models/x").body == "C:/models/x"
    with pytest.raises(errors.InvalidNameError, match="read by the timm source"):
        parse_name("torchvision:hf-hub:timm/x")
    with pytest.raises(errors.InvalidNameError, match="no repo id"):
        parse_name("hf-hub:")
