"""freeze / unfreeze / frozen BatchNorm statistics / trainable_summary."""

from __future__ import annotations

import copy
import pickle

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch import nn  # noqa: E402

from omnizoo.errors import ConfigurationError  # noqa: E402
from omnizoo.finetune.freeze import (  # noqa: E402
    freeze,
    freeze_bn_stats,
    is_bn_frozen,
    trainable_summary,
    unfreeze,
)


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_default_freezes_everything_but_the_head() -> None:
    model = torchvision.models.resnet18()
    changed = freeze(model)
    assert _trainable(model) == {"fc.weight", "fc.bias"}
    assert "conv1.weight" in changed and "fc.weight" not in changed
    assert freeze(model) == []  # nothing left to change


def test_default_freezes_all_heads_of_a_multi_head_model() -> None:
    model = torchvision.models.googlenet(init_weights=False, aux_logits=True)
    freeze(model)
    assert _trainable(model) == {
        "fc.weight",
        "fc.bias",
        "aux1.fc2.weight",
        "aux1.fc2.bias",
        "aux2.fc2.weight",
        "aux2.fc2.bias",
    }


def test_up_to_a_named_stage() -> None:
    model = torchvision.models.resnet18()
    freeze(model, up_to="layer3")
    trainable = _trainable(model)
    assert all(n.startswith(("layer4.", "fc.")) for n in trainable)
    assert "layer4.0.conv1.weight" in trainable and "layer3.1.bn2.bias" not in trainable


def test_up_to_a_nested_stage_and_root_parameters() -> None:
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    freeze(model, up_to="encoder.layers.encoder_layer_1")
    trainable = _trainable(model)
    assert "class_token" not in trainable and "conv_proj.weight" not in trainable
    assert "encoder.pos_embedding" not in trainable
    assert not any(n.startswith("encoder.layers.encoder_layer_1.") for n in trainable)
    assert any(n.startswith("encoder.layers.encoder_layer_2.") for n in trainable)
    assert "heads.head.weight" in trainable


def test_patterns_and_gradual_unfreezing() -> None:
    model = torchvision.models.resnet18()
    freeze(model, patterns=["conv1.*", "bn1.*", "layer1.*"])
    trainable = _trainable(model)
    assert not any(n.startswith(("conv1.", "bn1.", "layer1.")) for n in trainable)
    assert "layer2.0.conv1.weight" in trainable
    freeze(model)
    unfreeze(model, patterns="layer4.*")
    assert {n.split(".")[0] for n in _trainable(model)} == {"layer4", "fc"}
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_selectors() -> None:
    model = torchvision.models.resnet18()
    with pytest.raises(ConfigurationError, match="layer9"):
        freeze(model, up_to="layer9")
    with pytest.raises(ConfigurationError, match="not both"):
        freeze(model, up_to="layer1", patterns=["fc.*"])
    assert all(p.requires_grad for p in model.parameters())


def _bn_stats(model: nn.Module) -> list:
    return [t.clone() for n, t in model.state_dict().items() if "running" in n]


def test_frozen_bn_survives_train_and_keeps_statistics() -> None:
    model = torchvision.models.resnet18()
    freeze(model, freeze_bn=True)
    before = _bn_stats(model)
    model.train()
    assert model.training and not model.bn1.training and not model.layer4[1].bn2.training
    assert is_bn_frozen(model.bn1)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.randn(4, 3, 64, 64)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    after = _bn_stats(model)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # setting .training by hand is undone by the forward pre-hook
    model.bn1.training = True
    model(torch.randn(2, 3, 64, 64))
    assert not model.bn1.training
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model), strict=True))


def test_without_freeze_bn_the_statistics_move() -> None:
    model = torchvision.models.resnet18()
    freeze(model)
    before = _bn_stats(model)
    model.train()(torch.randn(4, 3, 64, 64))
    assert not all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model), strict=True))


def test_freeze_bn_only_in_the_selected_region() -> None:
    model = torchvision.models.resnet18()
    freeze(model, up_to="layer2", freeze_bn=True)
    model.train()
    assert not model.layer2[1].bn2.training
    assert model.layer3[0].bn1.training


def test_unfreeze_releases_bn() -> None:
    model = torchvision.models.resnet18()
    freeze(model, freeze_bn=True)
    unfreeze(model)
    assert not is_bn_frozen(model.bn1)
    model.train()
    assert model.bn1.training
    model.eval()
    assert not model.bn1.training


def test_frozen_bn_survives_deepcopy_and_pickle() -> None:
    model = torchvision.models.resnet18()
    freeze(model, freeze_bn=True)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        clone.train()
        assert clone.training and not clone.bn1.training
        assert clone.bn1.train.module is clone.bn1  # bound to the copy, not the original
        before = _bn_stats(clone)
        clone(torch.randn(2, 3, 32, 32))
        assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(clone), strict=True))
    assert set(model.state_dict()) == set(torchvision.models.resnet18().state_dict())


def test_freeze_bn_stats_alone_does_not_touch_parameters() -> None:
    model = torchvision.models.resnet18()
    locked = freeze_bn_stats(model)
    assert "bn1" in locked and len(locked) == 20
    assert all(p.requires_grad for p in model.parameters())


def test_other_sources() -> None:
    timm = pytest.importorskip("timm")
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    tm = timm.create_model("resnet18")  # BatchNormAct2d subclasses BatchNorm2d
    freeze(tm, freeze_bn=True)
    assert _trainable(tm) == {"fc.weight", "fc.bias"}
    assert not tm.train().bn1.training
    em = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0")
    freeze(em, up_to="_blocks.10", freeze_bn=True)
    em.train()
    assert not em._bn0.training and not em._blocks[10]._bn2.training
    assert em._blocks[11]._bn2.training and em._blocks[11]._bn2.weight.requires_grad


def test_trainable_summary() -> None:
    model = torchvision.models.resnet18()
    freeze(model, freeze_bn=True)
    text = trainable_summary(model)
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:] if line[:1] != "-"}
    assert lines["fc"][:2] == ["513,000", "0"]
    assert lines["layer1"][0] == "0" and lines["layer1"][2] == "4"
    total = sum(p.numel() for p in model.parameters())
    assert lines["total"][0] == "513,000"
    assert lines["total"][1] == f"{total - 513_000:,}"
