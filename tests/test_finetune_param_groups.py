"""param_groups: weight decay exclusions, head learning rate, layer-wise lr decay."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch import nn  # noqa: E402

from omnizoo.errors import ConfigurationError  # noqa: E402
from omnizoo.finetune.freeze import freeze  # noqa: E402
from omnizoo.finetune.param_groups import layer_ids, param_groups  # noqa: E402


def _by_param(groups: list[dict]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in out, "a parameter is in two groups"
            out[id(p)] = g
    return out


def _tiny_vit() -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64
    )


def test_no_decay_on_biases_and_norms_and_adamw_accepts() -> None:
    model = torchvision.models.resnet18()
    groups = param_groups(model, lr=1e-3, weight_decay=0.05)
    where = _by_param(groups)
    assert len(where) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        expected = 0.0 if p.ndim <= 1 else 0.05
        assert where[id(p)]["weight_decay"] == expected, name
        assert where[id(p)]["lr"] == 1e-3
    opt = torch.optim.AdamW(groups)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()


def test_vit_tokens_and_position_embeddings_are_not_decayed() -> None:
    model = _tiny_vit()
    where = _by_param(param_groups(model, lr=1e-3, weight_decay=0.1))
    named = dict(model.named_parameters())
    assert where[id(named["class_token"])]["weight_decay"] == 0.0
    assert where[id(named["encoder.pos_embedding"])]["weight_decay"] == 0.0
    assert where[id(named["conv_proj.weight"])]["weight_decay"] == 0.1


def test_timm_no_weight_decay_list_is_used() -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224")
    where = _by_param(param_groups(model, lr=1e-3, weight_decay=0.1, no_weight_decay=["*.qkv.*"]))
    named = dict(model.named_parameters())
    for name in ("cls_token", "pos_embed", "blocks.0.attn.qkv.weight"):
        assert where[id(named[name])]["weight_decay"] == 0.0, name
    assert where[id(named["blocks.0.mlp.fc1.weight"])]["weight_decay"] == 0.1


def test_head_lr() -> None:
    model = torchvision.models.resnet18()
    groups = param_groups(model, lr=1e-4, weight_decay=0.01, head_lr=1e-2)
    where = _by_param(groups)
    assert where[id(model.fc.weight)]["lr"] == 1e-2
    assert where[id(model.fc.weight)]["weight_decay"] == 0.01
    assert where[id(model.fc.bias)]["lr"] == 1e-2
    assert where[id(model.fc.bias)]["weight_decay"] == 0.0
    assert where[id(model.conv1.weight)]["lr"] == 1e-4
    assert {g["group_name"] for g in groups} == {
        "all_decay",
        "all_no_decay",
        "head_decay",
        "head_no_decay",
    }


def test_frozen_parameters_are_left_out() -> None:
    model = torchvision.models.resnet18()
    freeze(model)
    groups = param_groups(model, lr=1e-3, weight_decay=0.05)
    assert sum(len(g["params"]) for g in groups) == 2


def test_torchvision_resnet_stages() -> None:
    model = torchvision.models.resnet18()
    ids = layer_ids(model)
    assert ids["conv1.weight"] == ids["bn1.weight"] == 0
    for stage in range(1, 5):
        assert ids[f"layer{stage}.0.conv1.weight"] == stage
        assert ids[f"layer{stage}.1.bn2.bias"] == stage
    assert ids["fc.weight"] == ids["fc.bias"] == 5
    groups = param_groups(model, lr=1.0, weight_decay=0.0, layer_decay=0.5)
    where = _by_param(groups)
    assert where[id(model.fc.weight)]["lr"] == 1.0
    assert where[id(model.layer4[0].conv1.weight)]["lr"] == 0.5
    assert where[id(model.conv1.weight)]["lr"] == 0.5**5
    assert where[id(model.conv1.weight)]["lr_scale"] == 0.5**5


def test_torchvision_vit_and_features_models() -> None:
    ids = layer_ids(_tiny_vit())
    assert ids["class_token"] == ids["conv_proj.weight"] == ids["encoder.pos_embedding"] == 0
    assert ids["encoder.layers.encoder_layer_0.ln_1.weight"] == 1
    assert ids["encoder.layers.encoder_layer_2.ln_1.weight"] == 3
    assert ids["encoder.ln.weight"] == 4 and ids["heads.head.weight"] == 5
    eff = layer_ids(torchvision.models.efficientnet_b0())
    assert eff["features.0.0.weight"] == 0 and eff["features.8.0.weight"] == 8
    assert eff["classifier.1.weight"] == 9


def test_cadene_and_lukemelas_stages() -> None:
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    ids = layer_ids(pretrainedmodels.resnet18(pretrained=None))
    assert ids["conv1.weight"] == 0 and ids["layer4.0.conv1.weight"] == 4
    assert ids["last_linear.weight"] == 5
    ids = layer_ids(efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0"))
    assert ids["_conv_stem.weight"] == ids["_bn0.weight"] == 0
    assert ids["_blocks.0._depthwise_conv.weight"] == 1
    assert ids["_blocks.15._project_conv.weight"] == 16
    assert ids["_conv_head.weight"] == ids["_bn1.weight"] == 17
    assert ids["_fc.weight"] == 18


def test_timm_layer_decay_matches_timm() -> None:
    timm = pytest.importorskip("timm")
    try:
        from timm.optim import param_groups_layer_decay
    except ImportError:  # timm 1.0.9 (the floor) has it in optim_factory only
        from timm.optim.optim_factory import param_groups_layer_decay

    model = timm.create_model("vit_tiny_patch16_224")
    ours = _by_param(param_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.7))
    theirs = _by_param(
        param_groups_layer_decay(
            model, weight_decay=0.05, layer_decay=0.7, no_weight_decay_list=model.no_weight_decay()
        )
    )
    for name, p in model.named_parameters():
        assert ours[id(p)]["lr"] == pytest.approx(theirs[id(p)]["lr_scale"]), name
        assert ours[id(p)]["weight_decay"] == theirs[id(p)]["weight_decay"], name


def test_bad_arguments() -> None:
    model = torchvision.models.resnet18()
    with pytest.raises(ConfigurationError):
        param_groups(model, lr=0)
    with pytest.raises(ConfigurationError):
        param_groups(model, lr=1e-3, layer_decay=1.5)
    with pytest.raises(ConfigurationError):
        param_groups(model, lr=1e-3, weight_decay=-1)
