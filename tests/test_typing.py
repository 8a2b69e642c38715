"""Contracts in signatures, checked by a type checker: a small user script is run through
mypy's API with the strict flags (inline, for that file only, so the project's own mypy cache
is reused; ``--strict`` on the command line would re-check torch: ~15 s of CPU cold).

The script fails to type-check if ``create_model`` returns ``Any`` again (``assert_type``), if
an ``onnx:`` name stops being typed ``OnnxModel``, or if ``device``/``dtype``/``task`` go back
to ``Any`` (a ``# type: ignore`` that is no longer needed is an error: warn_unused_ignores).
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import omnizoo
from omnizoo.sources.onnx.zoo_names import OnnxZooName

ROOT = Path(__file__).resolve().parents[1]

#: mypy's --strict, as inline flags (the global ones, warn-unused-configs and
#: warn-redundant-casts, are set by the project's config or irrelevant to one file).
STRICT = (
    "disallow-any-generics, disallow-subclassing-any, disallow-untyped-calls, "
    "disallow-untyped-defs, disallow-incomplete-defs, check-untyped-defs, "
    "disallow-untyped-decorators, warn-unused-ignores, warn-return-any, no-implicit-reexport, "
    "strict-equality, extra-checks"
)

USER_SCRIPT = f"""\
# mypy: {STRICT}
from pathlib import Path
from typing import assert_type

import torch
from torch import nn

import omnizoo
from omnizoo.sources.onnx.model import OnnxModel


def build(name: str) -> nn.Module:
    return omnizoo.create_model(name, pretrained=True)


assert_type(omnizoo.create_model("resnet50", pretrained=True), nn.Module)
assert_type(
    omnizoo.create_model(
        "timm:resnet18", num_classes=10, device=torch.device("cpu"), dtype=torch.float16
    ),
    nn.Module,
)
assert_type(omnizoo.create_model("resnet18", device="meta", dtype="bfloat16"), nn.Module)
assert_type(omnizoo.create_model(Path("runs/finetune")), nn.Module)
assert_type(omnizoo.create_model(omnizoo.get_card("resnet18")), nn.Module)
assert_type(omnizoo.create_model("onnx:resnet50-v1-7", pretrained=True), OnnxModel)
assert_type(omnizoo.create_model("onnx:resnet50-v1-7.imagenet"), OnnxModel)

omnizoo.create_model("resnet50", device=3.5)  # type: ignore[call-overload]
omnizoo.create_model("resnet50", dtype=[16])  # type: ignore[call-overload]
omnizoo.list_models(task="detections")  # type: ignore[arg-type]
omnizoo.ModelCard(source="timm", arch="x", task="detections")  # type: ignore[arg-type]
omnizoo.Predictor("resnet50", device=object())  # type: ignore[arg-type]
omnizoo.Predictor("resnet50", task="detections")  # type: ignore[arg-type]
"""


def _mypy(script: str, tmp_path: Path) -> tuple[str, int]:
    from mypy import api

    path = tmp_path / "user_script.py"
    path.write_text(script, encoding="utf-8")
    out, err, status = api.run(
        [
            str(path),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--show-error-codes",
            "--no-pretty",
        ]
    )
    return out + err, status


def test_a_user_script_type_checks_strictly(tmp_path: Path) -> None:
    out, status = _mypy(USER_SCRIPT, tmp_path)
    assert status == 0, out


def test_an_any_return_is_caught(tmp_path: Path) -> None:
    # the guard itself: assert_type fails on Any, so create_model -> Any cannot come back
    script = USER_SCRIPT.split("\n\n\n", 1)[0] + "\n\nfrom typing import Any\n"
    script += "def f() -> Any: ...\nassert_type(f(), nn.Module)\n"
    out, status = _mypy(script, tmp_path)
    assert status == 1 and 'Expression is of type "Any"' in out and "[assert-type]" in out, out


def test_the_onnx_name_literal_is_the_registry() -> None:
    names = set(omnizoo.list_models(source="onnx"))
    names |= set(omnizoo.list_models(source="onnx", pretrained=True))
    typed = set(get_args(OnnxZooName))
    assert typed == names, (
        "src/omnizoo/sources/onnx/zoo_names.py and the ONNX-zoo manifest part: "
        f"add {sorted(names - typed)}, remove {sorted(typed - names)}"
    )
