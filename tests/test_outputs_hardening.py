"""``--out`` never destroys what omnizoo did not write, and a run finishes (issue 17).

An output path may name the user's own file: a ``json.dump`` document, a CSV with ``\\r``
line ends, what ``omnizoo predict --json`` was redirected into, a symlink to a file elsewhere,
a folder of their own Parquet files. Each is refused before a byte of it changes, resuming
and ``--overwrite`` alike. Resume streams, Parquet parts are schema-checked, an unreadable
input is an error row for the Ray actors too, and a wrong ``--address`` fails within our
deadline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omnizoo.errors import ConfigurationError, MetadataError
from omnizoo.inference.distributed import RayPredictor
from omnizoo.inference.runs import predict_to_file
from omnizoo.inference.writers import open_writer
from test_runs import LABELS, make_images, tiny_predictor

ROW = {"path": "/d/a.jpg", "labels": ["a"], "indices": [0], "scores": [0.5], "error": None}

#: Files a user may have at the path they give to --out, none of them omnizoo's.
FOREIGN = {
    "json_dump.jsonl": json.dumps({"model": "x", "results": [1, 2]}, indent=2).encode(),
    "one_line.jsonl": b'{"path": "/d/a.jpg", "labels": ["a"], "note": "mine"}',
    "carriage_returns.csv": b"path,labels,indices,scores,error\r/d/a.jpg,[],[],[],\r/d/b.jpg",
    "predict_json.jsonl": b'{\n  "model": "resnet50",\n  "results": [\n    {"image": "a"}\n  ]\n}',
    "rows_without_record.jsonl": (json.dumps(ROW) + "\n" + '{"path": "/d/b.jpg", "lab').encode(),
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_omnizoo_did_not_write_is_refused_untouched(
    name: str, overwrite: bool, tmp_path: Path
) -> None:
    image = make_images(tmp_path / "imgs", 1)[0]
    out = tmp_path / name
    out.write_bytes(FOREIGN[name])
    with pytest.raises(ConfigurationError, match="not written by omnizoo"):
        predict_to_file(tiny_predictor(), [str(image)], out, overwrite=overwrite, progress="none")
    assert out.read_bytes() == FOREIGN[name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["imgs", name])


def test_an_omnizoo_output_replaced_by_a_redirect_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    with open_writer(out) as w:
        w.write([ROW, {**ROW, "path": "/d/b.jpg"}])
    document = b'{\n  "model": "resnet50",\n  "results": []\n}'
    out.write_bytes(document)  # later: omnizoo predict --json > preds.jsonl
    for overwrite in (False, True):
        with pytest.raises(ConfigurationError, match="not written by omnizoo"):
            open_writer(out, overwrite=overwrite)
        assert out.read_bytes() == document


def test_a_symlink_out_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(b'{"mine": 1}\n{"mine": 2')
    link = tmp_path / "preds.jsonl"
    link.symlink_to(target)
    for overwrite in (False, True):
        with pytest.raises(ConfigurationError, match="symbolic link"):
            open_writer(link, overwrite=overwrite)
    assert target.read_bytes() == b'{"mine": 1}\n{"mine": 2' and link.is_symlink()
    folder = tmp_path / "mine"
    folder.mkdir()
    (tmp_path / "preds.parquet").symlink_to(folder)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        open_writer(tmp_path / "preds.parquet", overwrite=True)


def test_json_means_one_document_and_is_refused(tmp_path: Path) -> None:
    answers = tmp_path / "answers.json"
    answers.write_bytes(b'{"results": []}')
    for fmt in (None, "jsonl"):
        with pytest.raises(ConfigurationError, match=r"\.jsonl"):
            open_writer(answers, format=fmt)
        with pytest.raises(ConfigurationError, match=r"\.jsonl"):
            open_writer(tmp_path / "new.json", format=fmt)
    assert answers.read_bytes() == b'{"results": []}'
    assert not (tmp_path / "new.json").exists()


def _user_table(path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2], "text": ["mine", "too"]}), path)


def test_overwrite_parquet_removes_only_what_omnizoo_wrote(tmp_path: Path) -> None:
    theirs = tmp_path / "data"
    theirs.mkdir()
    _user_table(theirs / "mine.parquet")
    for overwrite in (False, True):
        with pytest.raises(ConfigurationError, match="not written by omnizoo"):
            open_writer(theirs, format="parquet", overwrite=overwrite)
    assert sorted(p.name for p in theirs.iterdir()) == ["mine.parquet"]

    ours = tmp_path / "preds.parquet"
    with open_writer(ours, rows_per_part=1) as w:
        w.write([ROW, {**ROW, "path": "/d/b.jpg"}])
    (ours / ".notes.parquet").write_bytes(b"hidden, the user's")
    with open_writer(ours, overwrite=True) as w:
        assert w.done == set()
    assert sorted(p.name for p in ours.iterdir()) == [".notes.parquet", "_omnizoo.json"]

    with open_writer(ours) as w:
        w.write([ROW])
    _user_table(ours / "added-by-hand.parquet")  # pandas would read it as part of the table
    with pytest.raises(ConfigurationError, match=r"added-by-hand\.parquet"):
        open_writer(ours, overwrite=True)
    assert (ours / "added-by-hand.parquet").exists() and len(list(ours.glob("part-*"))) == 1


def test_a_parquet_part_with_an_int_path_column_is_a_metadata_error(tmp_path: Path) -> None:
    out = tmp_path / "preds.parquet"
    with open_writer(out) as w:
        w.write([ROW])
    (part,) = out.glob("part-*.parquet")
    bad = pa.table({c: [7] if c == "path" else [None] for c in ROW})
    pq.write_table(bad, part)
    with pytest.raises(MetadataError, match="'path'"):
        open_writer(out)


def test_resume_streams_in_constant_memory(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    with open_writer(out) as w:
        for i in range(200):  # 20 MB of rows
            w.write([{**ROW, "path": f"/d/{i}.jpg", "error": "x" * 100_000}])
    assert out.stat().st_size > 20_000_000
    tracemalloc.start()
    try:
        writer = open_writer(out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    writer.close()
    assert len(writer.done) == 200
    assert peak < 4_000_000, peak  # the set of paths and a line, not the file


def test_a_torn_row_is_cut_only_when_omnizoo_wrote_it(tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    with open_writer(out) as w:
        w.write([ROW])
    whole = out.read_bytes()
    with open(out, "ab") as fh:
        fh.write(b'/d/b.jpg,"[""a')  # killed mid-row: past the recorded size, so ours
    with open_writer(out) as w:
        assert len(w.done) == 1
    assert out.read_bytes() == whole
    # edited by hand: the last row lost its newline; it is kept and completed
    out.write_bytes(whole.rstrip(b"\n"))
    with open_writer(out) as w:
        assert w.done == {"/d/a.jpg"}
    assert out.read_bytes() == whole


def test_ray_actors_make_an_error_row_of_an_unreadable_input(tmp_path: Path) -> None:
    """The per-batch reading of the Ray actors, without a cluster: the rows are the local
    engine's, errors included (tests/test_distributed.py runs the same through Ray)."""
    good, gone = (str(p) for p in make_images(tmp_path / "imgs", 2))
    os.unlink(gone)  # vanished after listing
    dangling = tmp_path / "imgs" / "dangling.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")
    fifo = tmp_path / "imgs" / "fifo.jpg"
    os.mkfifo(fifo)
    paths = [good, gone, str(dangling), f"file://{fifo}"]
    predictor = tiny_predictor()
    actor = RayPredictor(predictor.model, predictor_kwargs={
        "device": "cpu", "data_config": predictor.data_config, "labels": LABELS,
        "backend": "torch", "batch_size": 4,
    })  # fmt: skip
    rows = actor({"path": np.array(paths)}).to_pylist()
    assert [r["path"] for r in rows] == paths
    assert rows[0]["error"] is None and len(rows[0]["labels"]) == 5
    assert all(r["error"] and r["labels"] == [] for r in rows[1:])
    assert "FIFO" in rows[3]["error"]  # refused without blocking
    out = tmp_path / "local.jsonl"
    predict_to_file(predictor, paths[:3], out, progress="none")
    local = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["error"] for r in local] == [r["error"] for r in rows[:3]]
    assert [sorted(r) for r in local] == [sorted(r) for r in rows[:3]]


def test_a_wrong_address_fails_within_our_deadline(session_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    image = make_images(tmp_path / "imgs", 1)[0]
    env = {**os.environ, "OMNIZOO_HOME": str(session_home), "OMNIZOO_OFFLINE": "1"}
    env["OMNIZOO_RAY_CONNECT_TIMEOUT"] = "1"
    env.pop("RAY_ADDRESS", None)
    command = [
        sys.executable, "-m", "omnizoo.cli.main", "predict", "timm:tf_efficientnet_lite0",
        str(image), "--engine", "ray", "--address", f"127.0.0.1:{port}",
        "--out", str(tmp_path / "preds.parquet"),
    ]  # fmt: skip
    # the deadline is the 1 s OMNIZOO_RAY_CONNECT_TIMEOUT the error names; timeout= only bounds
    # a hang (a connection attempt that ignored it), it asserts no speed
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr and "OMNIZOO_RAY_CONNECT_TIMEOUT" in done.stderr
    assert "Traceback" not in done.stderr
