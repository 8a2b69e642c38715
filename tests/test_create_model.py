"""create_model: parity with the upstream libraries, adaptation, safety, the end-to-end path.

Parity: a checkpoint file f is generated from the upstream model's random init, then
``create_model(name, checkpoint_path=f)`` must give exactly the outputs of the upstream
library's own model loading f (torchvision: the builder with the Weights enum, whose
``get_state_dict`` returns f's contents; timm: ``timm.create_model`` + ``load_state_dict``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from omnizoo import create_model, errors, get_card, get_labels, settings
from omnizoo.loading import state_dict_files as loading
from omnizoo.loading import unwrap
from omnizoo.registry.registry import list_models
from tolerance import assert_outputs_close, assert_state_dicts_equal

torch.set_num_threads(2)


def _tv_params() -> list[Any]:
    """Every torchvision classification architecture in the registry (the big ones: slow)."""
    out = []
    for name in list_models(source="torchvision", task="classification"):
        card = get_card(name)
        big = (card.num_params or 0) > 30_000_000
        marks = [pytest.mark.slow] if big else []
        out.append(pytest.param(card.arch, marks=marks, id=card.arch))
    return out


def _tv_reference(
    arch: str,
    tag: str,
    sd: dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    **kwargs: Any,
) -> torch.nn.Module:
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch)[tag]
    monkeypatch.setattr(type(weights), "get_state_dict", lambda self, *a, **k: sd)
    model = tvm.get_model(arch, weights=weights, **kwargs)
    monkeypatch.undo()
    return model.eval()


def _input_for(card: Any, batch: int = 2) -> torch.Tensor:
    min_h, min_w = (card.extra.get("min_size") or [1, 1])[:2]
    h = max(64, int(min_h))
    w = max(64, int(min_w))
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, h, w, generator=g)


@pytest.mark.parametrize("arch", _tv_params())
def test_torchvision_parity(arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models as tvm

    card = get_card(f"torchvision:{arch}")
    assert card.tag is not None
    torch.manual_seed(0)
    with _nowarn():
        src = tvm.get_model(arch, weights=None, num_classes=card.num_classes)
    f = tmp_path / "w.pth"
    torch.save(src.state_dict(), f)
    del src
    sd = torch.load(f, weights_only=True)
    ref = _tv_reference(arch, card.tag, sd, monkeypatch)
    ours = create_model(card.name, checkpoint_path=f)
    assert ours.training  # as torchvision returns it
    report = ours.omnizoo_load_report
    assert report.ok, str(report)
    assert not any(p.is_meta for p in ours.parameters())
    assert_state_dicts_equal(ours.state_dict(), ref.state_dict())
    x = _input_for(card)
    with torch.no_grad():
        assert_outputs_close(ours.eval()(x), ref(x))
    # a local checkpoint is not the published weights: the architecture's name, no tag
    assert get_card(ours).name == f"torchvision:{arch}"


class _nowarn:
    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


def _timm_family_params() -> list[Any]:
    """One pretrained tag per timm module (the smallest-sounding arch of each family:
    atto/femto/.../tiny/small first, then the shortest name)."""
    small = (
        "atto",
        "femto",
        "pico",
        "nano",
        "tiny",
        "xxs",
        "xs",
        "mini",
        "small",
        "lite",
        "_s",
        "050",
        "075",
        "100",
    )

    def size_rank(full: str) -> tuple[int, int, str]:
        arch = full.split(".", 1)[0]
        rank = next((i for i, k in enumerate(small) if k in arch), len(small))
        return (rank, len(full), full)

    by_module: dict[str, str] = {}
    names = [n.split(":", 1)[1] for n in list_models(source="timm", pretrained=True)]
    for full in sorted(names, key=size_rank):
        module = str(get_card(f"timm:{full}").extra.get("module", "?"))
        by_module.setdefault(module, full)
    # Families whose smallest pretrained model is still large (or high resolution): slow.
    heavy = {
        "beit",
        "csatv2",
        "deepseek_vit",
        "eva",
        "gemma4_vit",
        "hieradet_sam2",
        "mobilenetv5",
        "naflexvit",
        "nasnet",
        "pnasnet",
        "qwen3_vit",
        "regnet",
        "senet",
        "tresnet",
        "vision_transformer_sam",
        "focalnet",
        "gcvit",
        "fasternet",
        "inception_resnet_v2",
        "volo",
    }
    out = []
    for module, full in sorted(by_module.items()):
        marks = [pytest.mark.slow] if module.rsplit(".", 1)[-1] in heavy else []
        out.append(pytest.param(full, marks=marks, id=module.rsplit(".", 1)[-1]))
    return out


@pytest.mark.parametrize("full", _timm_family_params())
def test_timm_parity(full: str, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = timm.create_model(full, pretrained=False).eval()
    f = tmp_path / "model.safetensors"
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    try:
        save_file(sd, str(f))
    except Exception:  # shared tensors: fall back to a torch file
        f = tmp_path / "model.pth"
        torch.save(sd, f)
    ref.load_state_dict(loading.load_checkpoint(f))
    ours = create_model(f"timm:{full}", checkpoint_path=f)
    assert ours.training  # as timm returns it
    ours.eval()
    assert ours.omnizoo_load_report.ok, str(ours.omnizoo_load_report)
    assert_state_dicts_equal(ours.state_dict(), ref.state_dict())
    assert not any(p.is_meta for p in ours.parameters())
    assert not any(b.is_meta for b in ours.buffers())
    cfg = ref.pretrained_cfg
    native = tuple(cfg.get("input_size", (3, 224, 224)))
    small = (native[0], min(native[1], 160), min(native[2], 160))
    with torch.no_grad():
        try:  # a smaller input where the architecture allows it
            x = torch.randn(1, *small, generator=torch.Generator().manual_seed(0))
            a = ref(x)
        except (AssertionError, RuntimeError, ValueError):
            x = torch.randn(1, *native, generator=torch.Generator().manual_seed(0))
            a = ref(x)
        b = ours(x)
    assert_outputs_close(b, a)


# ----------------------------------------------------------------------------- adaptation
@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torchvision.models as tvm

    torch.manual_seed(1)
    f = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.save(tvm.resnet18().state_dict(), f)
    return f


def test_num_classes_and_in_chans_torchvision(resnet18_file: Path) -> None:
    sd = torch.load(resnet18_file, weights_only=True)
    m = create_model(
        "torchvision:resnet18", checkpoint_path=resnet18_file, num_classes=10, in_chans=1
    )
    r = m.omnizoo_load_report
    assert sorted(r.reinitialized) == ["fc.bias", "fc.weight"]
    assert r.adapted == ["conv1.weight"] and not r.missing and not r.unexpected
    assert torch.allclose(m.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(m.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])
    assert m(torch.randn(2, 1, 64, 64)).shape == (2, 10)
    card = get_card(m)
    assert card.num_classes == 10 and card.label_set == "generic" and card.data.input_size[0] == 1
    assert get_labels(m)[:2] == ["class_0", "class_1"]
    m5 = create_model("torchvision:resnet18", checkpoint_path=resnet18_file, in_chans=5)
    w = m5.conv1.weight
    assert w.shape[1] == 5
    assert torch.allclose(w[:, :3], sd["conv1.weight"] * 3 / 5)


def test_num_classes_pretrained_timm(tmp_path: Path) -> None:
    import timm

    ref = timm.create_model("resnet18").eval()
    f = tmp_path / "r.pth"
    torch.save(
        {"state_dict_ema": {"module." + k: v for k, v in ref.state_dict().items()}, "epoch": 3}, f
    )
    m = create_model("timm:resnet18.a1_in1k", checkpoint_path=f, num_classes=0)
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    m = create_model("timm:resnet18.a1_in1k", checkpoint_path=f, num_classes=4, in_chans=2)
    r = m.omnizoo_load_report
    assert sorted(r.reinitialized) == ["fc.bias", "fc.weight"] and r.adapted == ["conv1.weight"]
    assert m(torch.randn(1, 2, 64, 64)).shape == (1, 4)


def test_user_checkpoint_head_size_is_inferred(tmp_path: Path) -> None:
    import timm

    ref = timm.create_model("resnet18", num_classes=7).eval()
    f = tmp_path / "ft.pth"
    torch.save({"model": ref.state_dict()}, f)
    m = create_model("timm:resnet18", checkpoint_path=f)
    assert m.omnizoo_load_report.ok and get_card(m).num_classes == 7
    assert_state_dicts_equal(m.state_dict(), ref.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_outputs_close(m.eval()(x), ref(x))


def test_features_only(resnet18_file: Path) -> None:
    m = create_model("torchvision:resnet18", checkpoint_path=resnet18_file, features_only=True)
    feats = m(torch.randn(1, 3, 224, 224))
    assert [f.shape[1] for f in feats] == [64, 64, 128, 256, 512]
    assert [f.shape[-1] for f in feats] == [112, 56, 28, 14, 7]
    m = create_model("torchvision:resnet18", features_only=True, out_indices=(2, 4))
    assert [f.shape[1] for f in m(torch.randn(1, 3, 224, 224))] == [128, 512]
    t = create_model("timm:resnet18", features_only=True, out_indices=(1, 2))
    assert [f.shape[1] for f in t(torch.randn(1, 3, 64, 64))] == [64, 128]
    with pytest.raises(errors.UnsupportedError):
        create_model("torchvision:vit_b_16", features_only=True)


def test_device_dtype_and_report(resnet18_file: Path) -> None:
    m = create_model("resnet18", checkpoint_path=resnet18_file, dtype=torch.bfloat16, device="cpu")
    assert next(m.parameters()).dtype == torch.bfloat16
    assert m.training
    assert "loaded" in m.omnizoo_load_report.summary()


def test_random_init_builds() -> None:
    m = create_model("torchvision:resnet18", num_classes=3, in_chans=4)
    assert m(torch.randn(1, 4, 64, 64)).shape == (1, 3)
    assert not any(p.is_meta for p in m.parameters())
    assert torch.isfinite(m.conv1.weight).all() and m.conv1.weight.std() > 0


# ----------------------------------------------------------------------------- safety
class _Evil:
    def __reduce__(self) -> Any:
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_payload_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    import torchvision.models as tvm

    f = tmp_path / "evil.pth"
    torch.save({"state_dict": tvm.resnet18().state_dict(), "payload": _Evil()}, f)
    with pytest.raises(errors.UnsafeCheckpointError, match="unpickling"):
        create_model("torchvision:resnet18", checkpoint_path=f)
    # trust_pickle does not apply to an unverified local file either
    with settings.override(trust_pickle=True), pytest.raises(errors.UnsafeCheckpointError):
        create_model("torchvision:resnet18", checkpoint_path=f)
    assert not (tmp_path / "PWNED").exists()


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.CheckpointError, match="not found"):
        create_model("torchvision:resnet18", checkpoint_path=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(errors.CheckpointError):
        create_model("torchvision:resnet18", checkpoint_path=junk)
    import torchvision.models as tvm

    bad = tmp_path / "r34.pth"
    torch.save(tvm.resnet34().state_dict(), bad)
    with pytest.raises(errors.CheckpointError):  # resnet34 keys/shapes into resnet18 head
        create_model("torchvision:resnet50", checkpoint_path=bad)


def test_clean_state_dict_and_unwrap() -> None:
    t = torch.zeros(1)
    sd = unwrap.clean_state_dict({"module._orig_mod.a": t, "_orig_mod.module.b": t, "c": t})
    assert sorted(sd) == ["a", "b", "c"]
    assert list(unwrap.unwrap_checkpoint({"state_dict": {"x": t}, "epoch": 1})) == ["x"]
    assert list(unwrap.unwrap_checkpoint({"model_ema": {"e": t}, "model": {"m": t}})) == ["e"]
    assert list(
        unwrap.unwrap_checkpoint({"model_ema": {"e": t}, "model": {"m": t}}, use_ema=False)
    ) == ["m"]
    with pytest.raises(errors.CheckpointError):
        unwrap.unwrap_checkpoint({"epoch": 1})


def test_adapt_input_conv() -> None:
    from omnizoo.loading import surgery

    w = torch.randn(8, 3, 3, 3)
    assert torch.allclose(surgery.adapt_input_conv(1, w), w.sum(1, keepdim=True))
    w6 = surgery.adapt_input_conv(6, w)
    assert torch.allclose(w6, torch.cat([w, w], 1) * 0.5)
    assert surgery.adapt_input_conv(3, w) is w


# ----------------------------------------------------------------------------- end to end
def test_pretrained_end_to_end_timm_over_http(
    weight_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pretrained=True: card URL -> the origin's sha256 (a Hub-like HEAD) -> HF_ENDPOINT on
    loopback at the pinned commit -> verified cache -> safe load."""
    import timm
    from safetensors.torch import save

    from hubfiles import COMMIT, HubRepo

    card = get_card("timm:resnet18.a1_in1k")
    assert card.weights is not None and card.weights.hf_hub_id
    torch.manual_seed(123)
    ref = timm.create_model("resnet18").eval()
    data = save({k: v.contiguous() for k, v in ref.state_dict().items()})
    HubRepo(weight_server, card.weights.hf_hub_id).add("model.safetensors", data)
    path = f"/{card.weights.hf_hub_id}/resolve/{COMMIT}/model.safetensors"
    weight_server.add(path, data)
    monkeypatch.setenv("HF_ENDPOINT", weight_server.url(""))
    monkeypatch.setenv("OMNIZOO_HF_ORIGIN", weight_server.url("/hub"))
    settings.reset()
    m = create_model("timm:resnet18.a1_in1k", pretrained=True)
    assert_state_dicts_equal(m.state_dict(), ref.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_outputs_close(m.eval()(x), ref(x))
    assert m.omnizoo_load_report.ok
    assert get_card(m).name == "timm:resnet18.a1_in1k"
    stats = weight_server.stats()
    assert any(path in k for k in stats)


def test_pretrained_torchvision_wrong_bytes_are_rejected(
    weight_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The torchvision card carries the file's sha256 prefix; random bytes served through an
    OMNIZOO_MIRRORS rewrite fail verification and nothing is loaded."""
    import torchvision.models as tvm

    card = get_card("torchvision:resnet18.IMAGENET1K_V1")
    assert card.weights is not None and card.weights.hash_prefix == "f37072fd"
    buf = io.BytesIO()
    torch.save(tvm.resnet18().state_dict(), buf)
    weight_server.add("/tv/" + card.weights.filename, buf.getvalue())
    monkeypatch.setenv(
        "OMNIZOO_MIRRORS",
        json.dumps({"https://download.pytorch.org/models/": weight_server.url("/tv/")}),
    )
    monkeypatch.setenv("OMNIZOO_RETRIES", "1")
    settings.reset()
    with pytest.raises((errors.IntegrityError, errors.DownloadError)):
        create_model("torchvision:resnet18.IMAGENET1K_V1", pretrained=True)


def test_no_weights_error() -> None:
    bare = next(n for n in list_models(source="timm") if get_card(n).weights is None)
    with pytest.raises(errors.NoPretrainedWeightsError):
        create_model(bare, pretrained=True)


# ----------------------------------------------------------------------------- slow sweeps
def _other_tv() -> list[Any]:
    return [
        pytest.param(name, marks=[pytest.mark.slow], id=name.split(":", 1)[1])
        for name in list_models(source="torchvision")
        if get_card(name).task != "classification"
    ]


@pytest.mark.parametrize("name", _other_tv())
def test_torchvision_other_tasks_build_and_run(name: str) -> None:
    import inspect

    import torchvision.models as tvm

    card = get_card(name)
    builder = tvm.get_model_builder(card.arch)
    # offline: no ImageNet backbone (the default one is tested over loopback elsewhere)
    kwargs = (
        {"weights_backbone": None}
        if "weights_backbone" in inspect.signature(builder).parameters
        else {}
    )
    m = create_model(name, **kwargs).eval()
    with torch.no_grad():
        if card.task in ("detection", "keypoints"):
            out = m([torch.rand(3, 128, 128)])
            assert isinstance(out, list) and "boxes" in out[0]
        elif card.task == "segmentation":
            assert m(torch.randn(1, 3, 96, 96))["out"].shape[1] == card.num_classes
        elif card.task == "video":
            t = int(card.extra.get("min_temporal_size") or 16)
            _, h, w = card.data.input_size
            assert m(torch.randn(1, 3, t, h, w)).shape == (1, card.num_classes)
        elif card.task == "optical_flow":
            flows = m(torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128), num_flow_updates=2)
            assert flows[-1].shape == (1, 2, 128, 128)
        else:
            assert m(torch.randn(1, 3, 224, 224)).shape == (1, card.num_classes)


def _all_timm() -> list[Any]:
    return [
        pytest.param(n, marks=[pytest.mark.slow], id=n.split(":", 1)[1])
        for n in list_models(source="timm")
    ]


@pytest.mark.parametrize("name", _all_timm())
def test_timm_every_arch_builds(name: str) -> None:
    card = get_card(name)
    m = create_model(name).eval()
    size = card.data.input_size
    x = torch.randn(1, *size)
    with torch.no_grad():
        out = m(x)
    assert out.shape[0] == 1


@pytest.mark.parametrize("arch", ["quantized_resnet18", "quantized_mobilenet_v2"])
def test_torchvision_quantized_parity(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quantized weights hold packed params and dtypes (not only tensors); built with
    ``quantize=True`` like upstream, loaded with a plain copy."""
    import torchvision.models as tvm

    engines = torch.backends.quantized.supported_engines
    card = get_card(f"torchvision:{arch}")
    backend = "qnnpack" if "qnnpack" in (card.tag or "").lower() else "fbgemm"
    if backend not in engines:
        pytest.skip(f"quantized engine {backend} not available")
    torch.backends.quantized.engine = backend
    torch.manual_seed(0)
    src = tvm.get_model(arch, weights=None, quantize=True)
    f = tmp_path / "q.pth"
    torch.save(src.state_dict(), f)
    sd = torch.load(f, weights_only=True)
    ref = _tv_reference(arch, str(card.tag), sd, monkeypatch, quantize=True)
    ours = create_model(card.name, checkpoint_path=f)
    assert ours.omnizoo_load_report.ok, str(ours.omnizoo_load_report)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_outputs_close(ours.eval()(x), ref(x))
