"""Objects that show themselves (issue 21): a short one-line ``repr``, a multi-line
``_repr_pretty_`` for IPython and an escaped ``_repr_html_`` table for Jupyter, for cards,
load reports, resolutions, listings and prediction results. Before, a card's repr was the
dataclass's (kilobytes on one line) and none had an HTML form."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import omnizoo
from omnizoo.errors import ImageLoadError
from omnizoo.inference.results import Detection, Keypoint, Prediction, PredictionResults
from omnizoo.loading.report import LoadReport
from omnizoo.registry.registry import ModelList

HOSTILE = "<script>alert('x')</script>"


class TinyPrinter:
    """The part of IPython's pretty-printer protocol omnizoo's ``_repr_pretty_`` uses (IPython
    is not a dependency); :func:`pretty` uses IPython's own when it is installed."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def text(self, s: str) -> None:
        self.out.append(s)

    def break_(self) -> None:
        self.out.append("\n")


def pretty(obj: Any) -> str:
    try:
        from IPython.lib.pretty import pretty as ipython_pretty
    except ImportError:
        printer = TinyPrinter()
        obj._repr_pretty_(printer, False)
        return "".join(printer.out)
    return str(ipython_pretty(obj))


def short(text: str) -> bool:
    return len(text) <= 200 and "\n" not in text


def hostile_card() -> omnizoo.ModelCard:
    card = omnizoo.get_card("timm:resnet50.a1_in1k")
    return dataclasses.replace(
        card,
        categories=tuple([HOSTILE] * card.num_classes),
        license=HOSTILE,
        notes=(HOSTILE, "x" * 5000),
        lineage={"summary": HOSTILE * 100},
    )


def test_card_repr_is_one_short_line() -> None:
    card = omnizoo.get_card("timm:resnet50.a1_in1k")
    assert len(repr(dataclasses.asdict(card))) > 1000  # what the dataclass repr printed
    text = repr(card)
    assert short(text), text
    assert text.startswith("ModelCard('timm:resnet50.a1_in1k', task='classification'")
    assert "top1=80.38" in text and "params='25.6M'" in text
    assert short(repr(hostile_card()))


def test_card_pretty_and_html() -> None:
    card = hostile_card()
    lines = pretty(card).splitlines()
    assert lines[0] == "ModelCard:" and "  name: timm:resnet50.a1_in1k" in lines
    assert any(line.startswith("  top1: 80.38") for line in lines)
    assert all(len(line) <= 200 for line in lines)
    page = card._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)" in page
    assert len(page) < 5000


def test_cycle_is_short() -> None:
    printer = TinyPrinter()
    omnizoo.get_card("resnet50")._repr_pretty_(printer, True)
    assert printer.out == ["ModelCard(...)"]


def test_load_report() -> None:
    keys = [f"layer{i}.weight" for i in range(500)]
    report = LoadReport(source_file="ck.pth", loaded=keys, missing=[HOSTILE], notes=[HOSTILE])
    text = repr(report)
    assert short(text) and "loaded=500" in text and "missing=1" in text, text
    assert pretty(report).splitlines()[1].strip() == report.summary()
    page = report._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "(+492)" in page


def test_resolution() -> None:
    found = omnizoo.explain("resnet50")
    text = repr(found)
    assert short(text) and "winner='torchvision:resnet50.IMAGENET1K_V2'" in text, text
    assert "why:" in pretty(found)
    page = found._repr_html_()
    assert "torchvision:resnet50.IMAGENET1K_V2" in page and "<td" in page


def test_listing() -> None:
    names = omnizoo.list_models(pretrained=True)
    assert isinstance(names, list) and len(names) > 1000
    assert short(repr(names)) and repr(names).startswith(f"ModelList({len(names)} names: ")
    few = omnizoo.list_models("resnet50.*", source="torchvision", pretrained=True)
    assert repr(few) == repr(list(few)) and few == list(few)  # a short listing: the list
    assert isinstance(names, ModelList)  # typed list[str]: user code slicing it stays typed
    page = names._repr_html_()
    assert page.count("<tr>") == 32  # header, 30 rows, "... more"
    assert f"{len(names) - 30} more" in page and "<th" in page
    lines = pretty(names).splitlines()
    assert lines[0] == f"ModelList ({len(names)} names):" and len(lines) == 32


def test_prediction_results() -> None:
    top = [Prediction(HOSTILE * 50, 3, 0.9), Prediction("cat", 1, 0.05)]
    assert short(repr(top[0])) and repr(top[1]) == "Prediction(label='cat', index=1, score=0.05)"
    results = PredictionResults(
        [top] * 999 + [[]],
        errors={999: ImageLoadError("broken.jpg: not an image Pillow can read")},
    )
    text = repr(results)
    assert short(text) and "images=1000" in text and "errors=1" in text, text
    page = results._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "970 more" in page
    assert "1000 images, 1 unreadable" in page
    lines = pretty(results).splitlines()
    assert lines[0] == "PredictionResults (1000 images):" and lines[-1].endswith("(970 more)")
    assert all(len(line) <= 200 for line in lines)
    tail = PredictionResults([[]], errors={0: ImageLoadError("broken.jpg: unreadable")})
    assert pretty(tail).splitlines()[1] == "  [0] error: broken.jpg: unreadable"


def test_detection_with_keypoints_is_one_line() -> None:
    points = tuple(Keypoint(f"point{i}", 1.0, 2.0, 0.5) for i in range(17))
    found = Detection("person", 1, 0.98765, (1.0, 2.0, 30.25, 40.5), keypoints=points)
    text = repr(found)
    assert short(text), text
    assert text == (
        "Detection(label='person', index=1, score=0.9877, box=(1.0, 2.0, 30.2, 40.5), keypoints=17)"
    )


@pytest.mark.parametrize("name", ["resnet50", "timm:convnext_tiny", "onnx:resnet50-v1-7"])
def test_every_card_kind_shows_itself(name: str) -> None:
    card = omnizoo.get_card(name)
    assert short(repr(card)) and "<table>" in card._repr_html_() and pretty(card)
