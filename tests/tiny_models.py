"""Tiny configurations of torchvision's transformer-era families, for fast head/export tests."""

from __future__ import annotations

from typing import Any


def tiny_vit() -> Any:
    import torchvision

    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )


def tiny_swin(*, v2: bool = False) -> Any:
    from torchvision.models.swin_transformer import SwinTransformer, SwinTransformerBlockV2

    extra: dict[str, Any] = {"block": SwinTransformerBlockV2} if v2 else {}
    return SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=[2, 2],
        **extra,
    )


def tiny_maxvit() -> Any:
    from torchvision.models.maxvit import MaxVit

    return MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=2,
        block_channels=[16, 32],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
    )


def tiny_convnext() -> Any:
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)])
