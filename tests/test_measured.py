"""The per-machine store of measurements (inference/measured.py) and what reads it: records
round-trip, a damaged or hostile file is survived and never overwritten, concurrent writers
lose nothing, ``compare`` shows measured columns within 80 columns, ``plot --measured`` draws
and names the Pareto front, and the zoo plot's labels stay inside and apart."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from omnizoo.cli.main import main
from omnizoo.errors import ConfigurationError
from omnizoo.inference.measured import (
    machine_fingerprint,
    measured_path,
    read_measured,
    record_accuracy,
    record_speed,
)

EFF = "timm:test_efficientnet.r160_in1k"
BYOB = "timm:test_byobnet.r160_in1k"
CONV = "timm:test_convnext.r160_in1k"


def _speed(model: str, ms: float, batch: int = 1, backend: str = "torch") -> None:
    record_speed(
        model,
        backend=backend,
        precision="fp32",
        device="cpu",
        threads=2,
        batch_size=batch,
        latency_ms_median=ms,
        latency_ms_iqr=ms / 10,
        throughput_ips=batch * 1000 / ms,
        peak_memory_mb=12.5,
    )


def test_records_round_trip_and_replace(isolated_home: Path) -> None:
    _speed(EFF, 10.0)
    _speed(EFF, 30.0, batch=8)
    _speed(EFF, 4.0, backend="onnxruntime")
    _speed(EFF, 9.0)  # the same configuration again: replaces the first
    record_accuracy(
        EFF, dataset="/data/pets", n=50, top1=61.5, top5=90.0, backend="torch", precision="fp32"
    )
    m = read_measured()
    assert m.damaged is None and m.fingerprint == machine_fingerprint()[0]
    assert m.machine == machine_fingerprint()[1]
    assert sorted((r.backend, r.batch_size, r.latency_ms_median) for r in m.speed) == [
        ("onnxruntime", 1, 4.0),
        ("torch", 1, 9.0),
        ("torch", 8, 30.0),
    ]
    assert m.latency(EFF).latency_ms_median == 4.0  # type: ignore[union-attr]
    assert m.throughput(EFF).batch_size == 8  # type: ignore[union-attr]
    acc = m.top1(EFF)
    assert acc is not None
    assert (acc.top1, acc.top5, acc.n, acc.dataset) == (61.5, 90.0, 50, "/data/pets")
    assert m.latency("timm:other") is None and read_measured("0" * 16).speed == ()


@pytest.mark.parametrize("umask", [0o002, 0o077])
def test_the_lock_file_follows_the_umask(isolated_home: Path, umask: int) -> None:
    """Before, on filelock 3.13 (the floor): the lock file was 0644 whatever the umask."""
    import stat

    old = os.umask(umask)
    try:
        _speed(EFF, 10.0)
    finally:
        os.umask(old)
    lock = measured_path().with_name(measured_path().name + ".lock")
    assert stat.S_IMODE(os.lstat(lock).st_mode) == 0o666 & ~umask


def test_bad_figures_are_refused(isolated_home: Path) -> None:
    with pytest.raises(ConfigurationError, match="latency_ms_median"):
        _speed(EFF, float("nan"))
    with pytest.raises(ConfigurationError, match="top1"):
        record_accuracy(
            EFF, dataset="d", n=1, top1=101.0, top5=None, backend="torch", precision="fp32"
        )
    with pytest.raises(ConfigurationError, match="fingerprint"):
        read_measured("../../etc/passwd")


HOSTILE = {
    "not JSON": b"\x00\xffnot json",
    "another program's JSON": b'{"speed": []}',
    "a negative latency": None,  # filled in below: omnizoo's marker, one bad field
    "another machine's file": None,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_damaged_file_is_survived_and_not_overwritten(isolated_home: Path, kind: str) -> None:
    _speed(EFF, 5.0)
    path = measured_path()
    good = path.read_bytes()
    raw = HOSTILE[kind]
    if kind == "a negative latency":
        raw = good.replace(b'"latency_ms_median": 5.0', b'"latency_ms_median": -5.0')
    elif kind == "another machine's file":
        raw = good.replace(machine_fingerprint()[0].encode(), b"0123456789abcdef")
    assert raw is not None and raw != good
    path.write_bytes(raw)
    with pytest.warns(UserWarning, match="ignoring the measurements file"):
        m = read_measured()
    assert m.speed == () and m.damaged
    with pytest.warns(UserWarning, match="not overwritten"):
        _speed(BYOB, 3.0)
    assert path.read_bytes() == raw  # untouched: omnizoo did not write it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["compare", EFF]) == 0  # compare still answers


def test_a_symlink_or_fifo_is_not_followed(isolated_home: Path, tmp_path: Path) -> None:
    path = measured_path()
    path.parent.mkdir(parents=True)
    target = tmp_path / "users-own.json"
    target.write_text("precious")
    path.symlink_to(target)
    with pytest.warns(UserWarning):
        assert read_measured().speed == ()
    with pytest.warns(UserWarning, match="not overwritten"):
        _speed(EFF, 5.0)
    assert path.is_symlink() and target.read_text() == "precious"
    path.unlink()
    os.mkfifo(path)
    with pytest.warns(UserWarning):
        assert read_measured().speed == ()  # a FIFO opens non-blocking: no hang


_WRITER = """
import sys
from omnizoo.inference.measured import record_speed
for i in range(int(sys.argv[2])):
    record_speed(f"{sys.argv[1]}:m{i}", backend="torch", precision="fp32", device="cpu",
                 threads=1, batch_size=1, latency_ms_median=1.0 + i, latency_ms_iqr=0.1,
                 throughput_ips=100.0, peak_memory_mb=None)
"""


def test_two_processes_recording_at_once_lose_nothing(isolated_home: Path) -> None:
    env = {**os.environ, "OMNIZOO_HOME": str(isolated_home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, who, "25"], env=env) for who in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    models = {r.model for r in read_measured().speed}
    assert models == {f"{w}:m{i}" for w in "ab" for i in range(25)}


def test_compare_shows_measured_columns_within_80_columns(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    names = ["resnet50", "convnext_tiny", "timm:test_efficientnet", "timm:test_byobnet"]
    assert main(["compare", *names]) == 0
    plain = capsys.readouterr().out
    assert "measured" not in plain  # nothing measured yet: no measured rows
    _speed(EFF, 7.25)
    record_accuracy(
        EFF, dataset="pets", n=40, top1=55.0, top5=None, backend="torch", precision="fp32"
    )
    assert main(["compare", *names]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert any(line.startswith("measured ms (batch 1)") and "7.25" in line for line in lines)
    # 80 columns: the models come in blocks; EFF's block shows its measured top-1
    assert "measured img/s" in out
    assert any(ln.startswith("measured top1") and "55.00 on 40 images" in ln for ln in lines)
    names_lines = [line for line in lines if line.startswith("name ")]
    assert len(names_lines) >= 2  # more than one block, and no name cut in two
    assert all(n in out for n in ("torchvision:resnet50.IMAGENET1K_V2", "timm:test_efficientnet"))


def _text_boxes(fig: Any) -> tuple[list[tuple[str, Any]], Any]:
    """Every text drawn (title, axis labels, legend, annotations; tick labels of ticks
    outside the view are not drawn, so ticks are left out) with its box in pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks = {
        id(t)
        for ax in fig.axes
        for t in [*ax.get_xticklabels(which="both"), *ax.get_yticklabels(which="both")]
    }
    texts = [
        t
        for t in fig.findobj(lambda a: type(a).__name__ in ("Text", "Annotation"))
        if t.get_visible() and t.get_text() and id(t) not in ticks
    ]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts], fig.bbox


def _inside_and_apart(fig: Any, labels: list[str]) -> None:
    boxes, frame = _text_boxes(fig)
    for text, box in boxes:
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), text
    label_boxes = [(t, b) for t, b in boxes if t in labels]
    for i, (ta, a) in enumerate(label_boxes):
        for tb, b in label_boxes[i + 1 :]:
            assert not a.overlaps(b), (ta, tb)


def test_plot_measured_names_the_pareto_front(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from omnizoo.overview.plot import MeasuredPoint, measured_figure

    _speed(EFF, 2.0)  # card top-1 46.5
    _speed(BYOB, 1.0)  # card top-1 45.9: faster, less accurate
    _speed(CONV, 3.0)
    record_accuracy(
        CONV, dataset="pets", n=30, top1=80.0, top5=None, backend="torch", precision="fp32"
    )
    out = tmp_path / "mine.png"
    assert main(["plot", "--measured", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Pareto front: {BYOB}, {EFF}, {CONV}" in printed
    points = [
        MeasuredPoint(BYOB, "timm", 1.0, 45.858, False),
        MeasuredPoint(EFF, "timm", 2.0, 46.506, False),
        MeasuredPoint(CONV, "timm", 3.0, 80.0, True),
        MeasuredPoint("timm:slow_and_bad", "timm", 9.0, 40.0, False),
    ]
    fig, front = measured_figure(points)
    try:
        assert front == [BYOB, EFF, CONV]
        texts = {t for t, _ in _text_boxes(fig)[0]}
        assert set(front) <= texts and "timm:slow_and_bad" not in texts
        _inside_and_apart(fig, front)
    finally:
        plt.close(fig)


def test_plot_measured_without_measurements_says_what_to_run(
    isolated_home: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    from omnizoo.cli.plot import run_plot  # noqa: F401  (the command exists)

    with pytest.raises(ConfigurationError, match="omnizoo benchmark"):
        from omnizoo.overview.plot import plot_measured

        plot_measured([], tmp_path / "x.png")


def test_zoo_plot_labels_stay_inside_and_apart() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from omnizoo import get_card, list_models
    from omnizoo.overview.plot import pareto_front, plottable, zoo_figure

    cards = plottable([get_card(n) for n in list_models(pretrained=True)])
    fig = zoo_figure(cards)
    try:
        front = pareto_front([(c.name, float(c.gflops or 0), float(c.top1 or 0)) for c in cards])
        labels = [n.split(":", 1)[1] for n in front]
        drawn = {t for t, _ in _text_boxes(fig)[0]} & set(labels)
        assert len(drawn) >= min(10, len(labels))  # most of the front is named
        _inside_and_apart(fig, labels)
    finally:
        plt.close(fig)
