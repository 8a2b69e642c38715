"""BatchNorm folding for inference (omnizoo.inference.fold): same outputs, user's model untouched,
wrong folds refused, and the Predictor using it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch import nn

from lite0_weights import CAT_CLASSES, IMAGES, lite0_model
from omnizoo import Predictor, create_model, resolve_data_config
from omnizoo.inference.fold import fold_batchnorm

# Registry names from every source whose models carry BatchNorm after convolutions, with the
# input size used for the probe (small where the architecture allows it, to stay quick).
MODELS = [
    ("torchvision:resnet18", 64),
    ("torchvision:mobilenet_v3_small", 64),
    ("torchvision:efficientnet_b0", 64),
    ("torchvision:densenet121", 64),
    ("torchvision:regnet_y_400mf", 64),
    ("torchvision:googlenet", 64),
    ("torchvision:inception_v3", 299),
    ("torchvision:shufflenet_v2_x0_5", 64),
    ("torchvision:mnasnet0_5", 64),
    ("timm:resnet18", 64),
    ("timm:efficientnet_b0", 64),  # BatchNormAct2d: activation kept after the fold
    ("timm:mobilenetv3_small_100", 64),
    ("timm:regnety_002", 64),
    ("timm:dla34", 64),
    ("timm:tf_efficientnet_lite0", 64),  # Conv2dSame ("same" padding)
    ("cadene:bninception", 224),
    ("cadene:dpn68", 224),
    ("efficientnet:efficientnet-b0", 64),  # efficientnet_pytorch's static-same-padding convs
]


def _randomise_batchnorm(model: nn.Module) -> None:
    """Non-trivial statistics, so that a fold that ignored them would show."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


@pytest.mark.parametrize(("name", "size"), MODELS, ids=[m for m, _ in MODELS])
def test_fold_keeps_outputs_and_leaves_the_model_alone(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    _randomise_batchnorm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, size, size)
    folded, count = fold_batchnorm(model, x[:1])
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert count > 0.4 * n_bn, f"{name}: folded {count} of {n_bn} BatchNorm layers"
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert left == n_bn - count
    with torch.inference_mode():
        ref, out = model(x), folded(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    # The model passed in is untouched; what was not folded is shared, not copied.
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ours = {id(p) for p in model.parameters()}
    shared = [p for p in folded.parameters() if id(p) in ours]
    assert shared, "the folded copy should share the unfolded parameters"
    assert type(folded) is type(model)


class _ConvReuse(nn.Module):
    """The conv output feeds the BatchNorm *and* a residual: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class _WeightPeek(nn.Module):
    """Reads the conv weight directly: a fold changes that read, which only the probe sees."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.conv.weight.sum()


class _Untraceable(nn.Module):
    """Data-dependent control flow (fx cannot trace it) around a plain Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if float(y.mean()) > -1e9 else -y


class _Shared(nn.Module):
    """One BatchNorm module used after two convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
        self.b = nn.Sequential(nn.Conv2d(3, 3, 1), self.a[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


def _prepared(model: nn.Module) -> nn.Module:
    _randomise_batchnorm(model)
    return model.eval()


def test_conv_output_used_elsewhere_is_not_folded() -> None:
    model = _prepared(_ConvReuse())
    folded, count = fold_batchnorm(model, torch.randn(1, 3, 8, 8))
    assert count == 0 and folded is model


def test_probe_refuses_a_fold_that_changes_the_output(caplog: pytest.LogCaptureFixture) -> None:
    model = _prepared(_WeightPeek())
    x = torch.randn(1, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="omnizoo.inference.fold"):
        folded, count = fold_batchnorm(model, x)
    assert count == 0 and folded is model
    assert "running it unfolded" in caplog.text and "_WeightPeek" in caplog.text
    # without the probe the (wrong) fold is made: the probe is what refused it
    unchecked, n = fold_batchnorm(model, None)
    assert n == 1
    with torch.inference_mode():
        assert not torch.allclose(unchecked(x), model(x))


def test_untraceable_models_fold_inside_sequentials() -> None:
    model = _prepared(_Untraceable())
    x = torch.randn(2, 3, 8, 8)
    folded, count = fold_batchnorm(model, x[:1])
    assert count == 1 and isinstance(folded.body[1], nn.Identity)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_shared_batchnorm_is_not_folded() -> None:
    model = _prepared(_Shared())
    folded, count = fold_batchnorm(model, torch.randn(1, 3, 4, 4))
    assert count == 0 and folded is model


def test_layers_with_hooks_are_left_alone() -> None:
    model = _prepared(
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    )
    seen: list[tuple[int, ...]] = []
    model[1].register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    folded, count = fold_batchnorm(model, torch.randn(1, 3, 4, 4))
    assert count == 1 and isinstance(folded[3], nn.Identity) and type(folded[1]) is nn.BatchNorm2d
    seen.clear()
    with torch.inference_mode():
        folded(torch.randn(2, 3, 4, 4))
    assert seen == [(2, 4, 4, 4)]  # the user's hook still fires


def test_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match=r"eval\(\)"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), None)


def test_models_without_batchnorm_come_back_as_they_are() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()).eval()
    assert fold_batchnorm(model, torch.randn(1, 3, 4, 4)) == (model, 0)


def test_predictor_folds_on_real_weights_without_touching_the_model() -> None:
    model = lite0_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = Predictor(model, device="cpu", batch_size=2, num_workers=1, backend="torch")
    plain = Predictor(
        lite0_model(), device="cpu", batch_size=2, num_workers=1, fold_bn=False, backend="torch"
    )
    assert folded._run.folded > 40 and plain._run.folded == 0
    images: list[Any] = [IMAGES / "cat.jpg", IMAGES / "coffee.jpg"]
    a, b = folded.scores(images), plain.scores(images)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert folded.predict(images[:1], topk=1)[0][0].label in CAT_CLASSES
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k].contiguous()) for k in before)
    assert resolve_data_config(folded.model) == resolve_data_config(model)
