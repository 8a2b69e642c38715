"""What the oldest supported versions (pyproject's lower bounds, ``make test-oldest``) needed
from the loading code, checked on whatever versions are installed:

* a module whose loaded parameter sits beside a buffer still on the meta device keeps the
  loaded values when that buffer is materialised (timm 1.0.9's SwinV2-CR: its
  ``relative_coordinates_log`` is derived on meta beside the loaded ``logit_scale``);
* timm's per-model filter fns get the file's tensors in the model's own key order (timm <
  1.0.14's LeViT pairs them by position; a safetensors file comes back sorted by name).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from omnizoo.loading.fit import FitPlan, fit_state_dict
from omnizoo.loading.meta import meta_params


class _Scaled(nn.Module):
    """A parameter and, beside it, a non-persistent buffer computed from a parameter at init
    (so it stays on the meta device when built inside ``meta_params``)."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(4)))
        self.register_buffer("coords", torch.sign(self.logit_scale) * 2.0, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale.exp() + self.coords


def test_a_loaded_parameter_beside_a_meta_buffer_keeps_its_values() -> None:
    with meta_params():
        model = nn.Sequential(_Scaled())
    assert model[0].coords.is_meta and model[0].logit_scale.is_meta
    values = torch.arange(4, dtype=torch.float32) + 0.5
    report = fit_state_dict(model, {"0.logit_scale": values.clone()}, FitPlan(name="scaled"))
    assert torch.equal(model[0].logit_scale.detach(), values)
    assert not model[0].coords.is_meta
    assert report.loaded == ["0.logit_scale"]
    assert any("0.coords was on the meta device" in note for note in report.notes)


def test_timm_filter_fns_get_the_state_dict_in_the_models_key_order() -> None:
    import timm
    import timm.models._builder as builder

    from omnizoo.loading.report import LoadReport
    from omnizoo.sources.timm.build import _fast_pretrained

    model = timm.create_model("resnet10t", pretrained=False, num_classes=5)
    sd = {k: v.clone() for k, v in sorted(model.state_dict().items())}  # as safetensors reads
    assert list(sd) != list(model.state_dict())
    seen: list[list[str]] = []

    def filter_fn(state_dict: dict[str, Any], model: nn.Module) -> dict[str, Any]:
        seen.append(list(state_dict))
        return state_dict

    with _fast_pretrained(sd, FitPlan(name="resnet10t"), LoadReport()):
        builder.load_pretrained(model, model.pretrained_cfg, num_classes=5, filter_fn=filter_fn)
    assert seen == [list(model.state_dict())]
