"""reset_classifier / find_classifier on models built directly by every source library."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch import nn  # noqa: E402

from omnizoo.errors import ConfigurationError, UnsupportedError  # noqa: E402
from omnizoo.finetune.heads import find_classifier, init_head, reset_classifier  # noqa: E402
from tiny_models import tiny_convnext, tiny_maxvit, tiny_swin, tiny_vit  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # torchvision init_weights notes


def _tiny_densenet() -> nn.Module:
    return torchvision.models.DenseNet(growth_rate=8, block_config=(1, 1), num_init_features=16)


def _tv(name: str, **kw):
    return lambda: torchvision.models.get_model(name, **kw)


# (builder, input size, expected head paths, feature width with num_classes=0)
TORCHVISION = {
    "resnet18": (_tv("resnet18"), 64, ["fc"], 512),
    "alexnet": (_tv("alexnet"), 64, ["classifier.6"], 4096),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), 64, ["classifier.3"], 1024),
    "mobilenet_v2": (_tv("mobilenet_v2"), 64, ["classifier.1"], 1280),
    "efficientnet_b0": (_tv("efficientnet_b0"), 32, ["classifier.1"], 1280),
    "convnext": (tiny_convnext, 32, ["classifier.2"], 32),
    "vit": (tiny_vit, 32, ["heads.head"], 32),
    "swin": (tiny_swin, 32, ["head"], 32),
    "regnet_x_400mf": (_tv("regnet_x_400mf"), 64, ["fc"], 400),
    "squeezenet1_1": (_tv("squeezenet1_1"), 64, ["classifier.1"], 512),
    "inception_v3": (
        _tv("inception_v3", init_weights=False, aux_logits=True),
        96,
        ["fc", "AuxLogits.fc"],
        2048,
    ),
    "googlenet": (
        _tv("googlenet", init_weights=False, aux_logits=True),
        64,
        ["fc", "aux1.fc2", "aux2.fc2"],
        1024,
    ),
    "densenet": (_tiny_densenet, 32, ["classifier"], 20),
    "shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5"), 64, ["fc"], 1024),
    "mnasnet0_5": (_tv("mnasnet0_5"), 64, ["classifier.1"], 1280),
    "maxvit": (tiny_maxvit, 32, ["classifier.5"], 32),
}


@pytest.mark.parametrize("key", sorted(TORCHVISION))
def test_torchvision_heads(key: str) -> None:
    build, size, heads, width = TORCHVISION[key]
    model = build().eval()
    assert find_classifier(model) == heads
    reset_classifier(model, 3)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert tuple(model(x).shape) == (2, 3)
    for path in heads:
        layer = model.get_submodule(path)
        assert layer.weight.shape[0] == 3
        assert layer.bias is None or torch.count_nonzero(layer.bias) == 0
    reset_classifier(model, 0)
    with torch.no_grad():
        assert tuple(model(x).shape) == (2, width)
    assert isinstance(model.get_submodule(heads[0]), nn.Identity)


@pytest.mark.slow
def test_auxiliary_heads_are_reset_in_training_mode() -> None:
    model = torchvision.models.inception_v3(init_weights=False, aux_logits=True)
    reset_classifier(model, 4)
    out = model.train()(torch.randn(2, 3, 299, 299))
    assert out.logits.shape == (2, 4) and out.aux_logits.shape == (2, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_every_torchvision_classifier(name: str) -> None:
    kw = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
    model = torchvision.models.get_model(name, **kw).eval()
    reset_classifier(model, 5)
    size = 299 if name == "inception_v3" else 224
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, size, size)).shape) == (1, 5)


def test_cadene_last_linear_and_conv_heads() -> None:
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    model = pretrainedmodels.resnet18(num_classes=1000, pretrained=None).eval()
    assert find_classifier(model) == ["last_linear"]
    reset_classifier(model, 6)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 6)
    squeeze = pretrainedmodels.squeezenet1_1(num_classes=1000, pretrained=None).eval()
    assert find_classifier(squeeze) == ["last_conv"]
    reset_classifier(squeeze, 6)
    assert isinstance(squeeze.last_conv, nn.Conv2d) and squeeze.last_conv.out_channels == 6
    with torch.no_grad():  # Cadene's squeezenet returns N x C x 1 x 1 (upstream quirk)
        assert squeeze(torch.randn(1, 3, 64, 64)).flatten(1).shape == (1, 6)


@pytest.mark.slow
def test_cadene_dpn_conv_head() -> None:
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    model = pretrainedmodels.dpn68(num_classes=1000, pretrained=None).eval()
    reset_classifier(model, 2, init="xavier")
    assert isinstance(model.last_linear, nn.Conv2d) and model.last_linear.out_channels == 2
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 2)


def test_lukemelas_efficientnet() -> None:
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    model = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0").eval()
    assert find_classifier(model) == ["_fc"]
    reset_classifier(model, 7)
    assert model._global_params.num_classes == 7
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    reset_classifier(model, 0)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1280)


@pytest.mark.parametrize(
    "name,heads",
    [
        ("resnet18", ["fc"]),
        ("vit_tiny_patch16_224", ["head"]),
        ("deit_tiny_distilled_patch16_224", ["head", "head_dist"]),
        ("convnext_atto", ["head.fc"]),
        ("efficientnet_lite0", ["classifier"]),
    ],
)
def test_timm_uses_its_own_reset(name: str, heads: list[str]) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model(name).eval()
    reset_classifier(model, 3, init="zeros")
    assert model.num_classes == 3
    assert find_classifier(model) == heads
    for path in heads:
        layer = model.get_submodule(path)
        assert layer.out_features == 3
        assert torch.count_nonzero(layer.weight) == 0
    size = model.pretrained_cfg["input_size"][1]
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 3)
    reset_classifier(model, 0)
    assert model.num_classes == 0


@pytest.mark.parametrize("scheme", ["trunc_normal", "normal", "xavier", "kaiming", "zeros"])
def test_init_schemes(scheme: str) -> None:
    torch.manual_seed(0)
    model = reset_classifier(torchvision.models.resnet18(), 1000, init=scheme)
    w = model.fc.weight
    assert torch.count_nonzero(model.fc.bias) == 0
    std = float(w.detach().std())
    expected = {
        "trunc_normal": 0.02 * 0.88,  # N(0, 0.02) truncated at 2 sigma has std ~0.88 sigma
        "normal": 0.01,
        "xavier": (2.0 / (512 + 1000)) ** 0.5,
        "kaiming": 1 / 512**0.5,
        "zeros": 0.0,
    }[scheme]
    assert std == pytest.approx(expected, rel=0.05, abs=1e-9)
    if scheme == "trunc_normal":
        assert float(w.detach().abs().max()) <= 0.04 + 1e-6


def test_callable_init_and_bad_arguments() -> None:
    model = torchvision.models.resnet18()
    reset_classifier(model, 2, init=lambda m: nn.init.constant_(m.weight, 0.5))
    assert torch.all(model.fc.weight == 0.5)
    with pytest.raises(ConfigurationError, match="init="):
        reset_classifier(model, 2, init="orthogonal")
    with pytest.raises(ConfigurationError, match="num_classes"):
        reset_classifier(model, -1)
    with pytest.raises(ConfigurationError, match="labels"):
        reset_classifier(model, 2, labels=["a"])
    with pytest.raises(ConfigurationError):
        init_head(model.fc, "nope")


def test_head_keeps_device_and_dtype() -> None:
    model = torchvision.models.resnet18().to(torch.float64)
    reset_classifier(model, 3)
    assert model.fc.weight.dtype == torch.float64


def test_identity_head_cannot_be_resized() -> None:
    model = torchvision.models.resnet18()
    reset_classifier(model, 0)
    reset_classifier(model, 0)  # idempotent
    with pytest.raises(UnsupportedError, match="Identity"):
        reset_classifier(model, 3)


def test_not_a_module_is_refused() -> None:
    class FakeOnnx:
        path = "model.onnx"

    with pytest.raises(UnsupportedError, match=r"nn\.Module"):
        reset_classifier(FakeOnnx(), 3)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedError):
        find_classifier(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))


def test_wrapped_model_is_unwrapped() -> None:
    model = torchvision.models.resnet18()
    wrapped = nn.DataParallel(model)
    assert reset_classifier(wrapped, 3) is wrapped
    assert model.fc.out_features == 3


def test_last_linear_fallback() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4))
    assert find_classifier(model) == ["3"]
    reset_classifier(model, 2)
    assert model(torch.randn(1, 12)).shape == (1, 2)


def test_card_prefixes_win_and_card_is_updated() -> None:
    from omnizoo.values.card import ModelCard

    model = nn.Sequential()
    model.add_module("backbone", nn.Sequential(nn.Flatten(), nn.Linear(12, 8)))
    model.add_module("out", nn.Linear(8, 4))
    model.omnizoo_card = ModelCard(
        source="timm",
        arch="x",
        tag="t",
        classifier=("out",),
        label_set="imagenet-1k",
        num_classes=4,
    )
    assert find_classifier(model) == ["out"]
    reset_classifier(model, 2, labels=["cat", "dog"])
    card = model.omnizoo_card
    assert card.num_classes == 2 and card.categories == ("cat", "dog")
    assert card.label_set is None and card.label_offset == 0
    assert any("reset to 2 classes" in n for n in card.notes)
    reset_classifier(model, 0)
    assert model.omnizoo_card.task == "features"


def test_through_create_model() -> None:
    import omnizoo

    model = omnizoo.create_model("torchvision:resnet18")
    reset_classifier(model, 3, labels=["a", "b", "c"])
    assert model.fc.out_features == 3
    assert model.omnizoo_card.num_classes == 3
    assert omnizoo.get_labels(model) == ["a", "b", "c"]


@pytest.mark.parametrize("name", ["timm:vit_tiny_patch16_224", "torchvision:resnet18"])
def test_features_only_models_have_no_head(name: str) -> None:
    import omnizoo

    model = omnizoo.create_model(name, features_only=True)
    with pytest.raises(UnsupportedError, match="features-only"):
        find_classifier(model)
