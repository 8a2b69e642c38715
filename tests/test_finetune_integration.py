"""The fine-tuning chain on models from ``create_model``, one per source library:
reset_classifier -> freeze (+BatchNorm) -> param_groups -> a training step -> load_partial ->
export_onnx. Only the head may change; the card follows; the export carries the new labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import omnizoo  # noqa: E402
from omnizoo.export.onnx import export_onnx_report, read_metadata  # noqa: E402
from omnizoo.finetune.heads import find_classifier  # noqa: E402
from omnizoo.finetune.partial_load import load_partial  # noqa: E402

LABELS = ["a", "b", "c"]


@pytest.mark.parametrize(
    "name",
    [
        "torchvision:resnet18",
        "timm:resnet18",
        "cadene:squeezenet1_1",
        "efficientnet:efficientnet-b0",
    ],
)
def test_chain(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = omnizoo.create_model(name)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    omnizoo.reset_classifier(model, 3, labels=LABELS)
    heads = find_classifier(model)
    assert model.omnizoo_card.num_classes == 3 and omnizoo.get_labels(model) == LABELS

    omnizoo.freeze(model, freeze_bn=True)
    groups = omnizoo.param_groups(model, lr=1e-3, weight_decay=0.01, head_lr=1e-2)
    assert {p for g in groups for p in g["params"]} == {
        p for p in model.parameters() if p.requires_grad
    }
    assert all(g["lr"] == 1e-2 for g in groups)  # only the head is left to train
    optimizer = torch.optim.AdamW(groups)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    out = model(torch.randn(4, 3, 64, 64)).flatten(1)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(any(k.startswith(h + ".") for h in heads) for k in changed), changed

    report = load_partial(model, original)
    expected = {f"{h}.{t}" for h in heads for t in ("weight", "bias")} & set(original)
    assert set(report.reinitialized) == expected  # the new head is kept, the rest reloaded
    assert report.ok

    model.eval()
    export = export_onnx_report(model, tmp_path / "m.onnx", input_size=64, fold_preprocessing=True)
    assert export.verified
    meta = read_metadata(export.path)
    assert json.loads(meta["omnizoo.categories"]) == LABELS
    assert meta["omnizoo.num_classes"] == "3"
    assert meta["omnizoo.card"] == model.omnizoo_card.name
