"""Finding and comparing models: list_models' sort and metric filters, ``omnizoo list``'s
columns and formats, ``omnizoo compare``, ``omnizoo plot`` and the docs tables."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest

from omnizoo import errors
from omnizoo.cli import compare as cli_compare
from omnizoo.cli import models as cli_models
from omnizoo.cli import plot as cli_plot
from omnizoo.overview.plot import pareto_front, plot_zoo, plottable
from omnizoo.registry.registry import get_card, list_models


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="omnizoo")
    sub = parser.add_subparsers(dest="command")
    for module in (cli_models, cli_compare, cli_plot):
        module.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


# ----------------------------------------------------------------------------- list_models
def test_sort_by_top1_puts_the_best_first_and_unknown_last() -> None:
    names = list_models("resnet50.*", pretrained=True, sort="top1")
    top1 = [get_card(n).top1 for n in names]
    known = [v for v in top1 if v is not None]
    assert known == sorted(known, reverse=True) and len(known) > 20
    first_none = top1.index(None) if None in top1 else len(top1)  # older timm: none unknown
    assert all(v is None for v in top1[first_none:])
    assert names[0] == "timm:resnet50.fb_swsl_ig1b_ft_in1k"
    # sources mixed: torchvision's V2 sits between timm's by its accuracy
    assert names.index("torchvision:resnet50.IMAGENET1K_V2") < names.index("timm:resnet50.a1_in1k")


@pytest.mark.parametrize("key", ["params", "gflops"])
def test_sort_by_cost_smallest_first_and_reversed(key: str) -> None:
    names = list_models("convnext_*", pretrained=True, sort=key)
    values = [get_card(n).metric(key) for n in names]
    known = [v for v in values if v is not None]
    assert known == sorted(known) and len(known) > 10
    backwards = list_models("convnext_*", pretrained=True, sort=f"-{key}")
    reversed_known = [get_card(n).metric(key) for n in backwards][: len(known)]
    assert reversed_known == sorted(known, reverse=True)


def _without_top1() -> str:
    """A pretrained card with no top-1 (timm:resnet50.bamboo where timm has it; older timm
    versions, as ``make test-oldest`` installs, have other such tags)."""
    if "timm:resnet50.bamboo" in list_models("resnet50.*", pretrained=True):
        return "timm:resnet50.bamboo"
    return next(n for n in list_models("timm:*", pretrained=True) if get_card(n).top1 is None)


def test_metric_filters() -> None:
    strong = list_models(pretrained=True, min_top1=88)
    assert strong and all((get_card(n).top1 or 0) >= 88 for n in strong)
    small = list_models(pretrained=True, max_params=3, sort="top1")
    assert small and all((get_card(n).num_params or 0) <= 3e6 for n in small)
    cheap = list_models(pretrained=True, max_gflops=0.1, min_top1=60)
    for name in cheap:
        card = get_card(name)
        assert card.gflops is not None and card.gflops <= 0.1 and (card.top1 or 0) >= 60
    # a name without the metric is left out by a filter on it
    unknown = _without_top1()
    assert unknown in list_models(pretrained=True)
    assert unknown not in list_models(pretrained=True, min_top1=0)
    # architectures are filtered on their default weights
    # (torchvision's IMAGENET1K_V2: 80.858; timm's a1_in1k: 80.382; cadene's: 76.002)
    assert list_models("resnet50", min_top1=80.5) == ["torchvision:resnet50"]
    assert list_models("resnet50", min_top1=80.3) == ["torchvision:resnet50", "timm:resnet50"]


def test_the_readme_examples() -> None:
    best = list_models(pretrained=True, sort="top1", max_gflops=5, max_params=30)
    assert best[:2] == [
        "timm:tf_efficientnet_b4.ns_jft_in1k",
        "timm:tiny_vit_21m_224.dist_in22k_ft_in1k",
    ]
    card = get_card("resnet50")
    assert (card.num_params, card.gflops) == (25557032, 4.089)
    assert "ResNet50_Weights.IMAGENET1K_V2.meta _metrics" in (card.cited("top1") or "")


def test_bad_sort_key() -> None:
    with pytest.raises(errors.ConfigurationError, match="sort by one of"):
        list_models(sort="accuracy")


def test_sort_by_name_across_sources() -> None:
    names = list_models("resnet1*", sort="name")
    assert [n.split(":", 1)[1].lower() for n in names] == sorted(
        n.split(":", 1)[1].lower() for n in names
    )


# ----------------------------------------------------------------------------- omnizoo list
def test_list_table_json_csv(capsys: pytest.CaptureFixture[str]) -> None:
    cols = "name,top1,params,gflops,size"
    argv = ["list", "resnet50.*", "--pretrained", "--sort", "top1", "--columns", cols]
    assert _run([*argv, "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "top1", "params", "gflops", "size"]
    assert len(lines) == 4
    assert lines[1].split()[:2] == ["timm:resnet50.fb_swsl_ig1b_ft_in1k", "81.15"]
    assert _run([*argv, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == {
        "name": "timm:resnet50.fb_swsl_ig1b_ft_in1k",
        "top1": 81.146,
        "params": 25.56,
        "gflops": 4.11,
        "size": "224",
    }
    assert [r["name"] for r in rows] == list_models("resnet50.*", pretrained=True, sort="top1")
    assert _run([*argv, "--format", "csv", "--limit", "2"]) == 0
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in parsed] == [r["name"] for r in rows[:2]]
    assert parsed[1]["top1"] == str(rows[1]["top1"])


def test_list_default_output_is_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["list", "resnet5*", "--source", "torchvision"]) == 0
    assert capsys.readouterr().out.split() == ["torchvision:resnet50"]
    # an architecture's row shows the architecture, with its default weights' figures
    assert _run(["list", "resnet50", "--source", "torchvision", "--columns", "name,top1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["torchvision:resnet50", "80.86"]


def test_list_bad_columns() -> None:
    with pytest.raises(errors.ConfigurationError, match="unknown column"):
        _run(["list", "--columns", "name,accuracy"])


# ----------------------------------------------------------------------------- compare
def test_compare(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one block: the fields of all three side by side
    assert _run(["compare", "resnet50", "timm:resnet50.a1_in1k", "onnx:resnet50-v1-7"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ", 1)[0].strip(): line for line in out.splitlines()}
    assert "torchvision:resnet50.IMAGENET1K_V2" in rows["name"]
    assert "80.858" in rows["top1"] and "80.382" in rows["top1"] and "74.93" in rows["top1"]
    assert "results-imagenet.csv" in rows["top1 from"]
    assert "232 -> 224x224" in rows["resize/crop"]
    assert "sha256 prefix 11ad3fa6" in rows["verified by"]
    assert "Hugging Face Hub" in rows["verified by"] and "pinned" in rows["verified by"]
    assert "97.8" in rows["file size (MB)"] and "102.6" in rows["file size (MB)"]
    assert "no (" in rows["cached"]
    assert "85.712" in rows["imagenet-real:top1"]
    assert _run(["compare", "resnet50", "convnext_tiny", "--format", "json"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["name"] for o in objs] == [
        "torchvision:resnet50.IMAGENET1K_V2",
        "torchvision:convnext_tiny.IMAGENET1K_V1",
    ]
    assert objs[0]["verified_by"].startswith("sha256 prefix")
    with pytest.raises(errors.UnknownModelError):
        _run(["compare", "resnet50", "resnet5"])


# ----------------------------------------------------------------------------- plot
def test_pareto_front() -> None:
    pts = [("a", 1.0, 70.0), ("b", 2.0, 69.0), ("c", 4.0, 80.0), ("d", 4.0, 75.0)]
    assert pareto_front(pts) == ["a", "c"]
    assert pareto_front([]) == []
    assert pareto_front([("x", 3.0, 50.0), ("y", 1.0, 50.0)]) == ["y"]


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_command(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / f"zoo{suffix}"
    assert _run(["plot", "resnet*", "--max-gflops", "10", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:500]
    message = capsys.readouterr().out
    n = int(message.rsplit(":", 1)[1].split()[0])
    names = list_models("resnet*", pretrained=True, max_gflops=10)
    assert n == len(plottable([get_card(x) for x in names])) > 50
    if suffix == ".svg":  # every source present is named in the legend
        for source in {x.split(":")[0] for x in names}:
            assert source.encode() in data


def test_plot_refuses_what_it_cannot_draw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = get_card("timm:resnet50.a1_in1k")
    with pytest.raises(errors.ConfigurationError, match=r"\.png"):
        plot_zoo([card], tmp_path / "zoo.jpg")
    with pytest.raises(errors.ConfigurationError, match="no model"):
        plot_zoo([get_card(_without_top1())], tmp_path / "zoo.png")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(errors.DependencyError, match=r"omnizoo\[plot\]"):
        plot_zoo([card], tmp_path / "zoo.png")


# ----------------------------------------------------------------------------- docs tables
def test_doctables_carry_metrics_and_the_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from omnizoo.overview import tables as doctables

    written = doctables.write_tables(tmp_path, ["torchvision", "timm", "onnx"])
    assert {p.name for p in written} == {
        "torchvision.md",
        "timm.md",
        "onnx.md",
        "README.md",
        "zoo.png",
    }
    timm_md = (tmp_path / "timm.md").read_text()
    row = next(x for x in timm_md.splitlines() if "`timm:resnet50.a1_in1k`" in x)
    assert "| 80.382 | 94.598 | 85.712 | 68.47 |" in row and "| 25.56 | 4.11 |" in row
    # the counts depend on the installed timm (1266 of 2052 on timm 1.0.31): the statement,
    # not the number, is what is promised on every supported version
    covered = re.search(r"\*\*top-1\*\*: (\d+) of (\d+) cards: (\d+) from timm results/", timm_md)
    assert covered and covered.group(1) == covered.group(3)
    assert 0 < int(covered.group(1)) <= int(covered.group(2))
    index = (tmp_path / "README.md").read_text()
    assert "![top-1 against GFLOPs" in index and "## The Pareto front" in index
    assert f"| {covered.group(1)} |" in next(
        x for x in index.splitlines() if x.startswith("| timm |")
    )


def test_doctables_leave_out_an_empty_source(tmp_path: Path) -> None:
    # `make docs` wrote a `user` table of 0 models (the in-process source, empty there)
    from omnizoo.overview import tables as doctables

    names = {p.name for p in doctables.write_tables(tmp_path, plot=False)}
    assert "user.md" not in names and {"torchvision.md", "README.md"} <= names
    assert "| user |" not in (tmp_path / "README.md").read_text()
