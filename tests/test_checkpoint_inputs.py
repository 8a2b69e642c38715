"""Malformed checkpoint files given as ``checkpoint_path``: each is a CheckpointError naming
the path and the cause, never a raw KeyError/IndexError/TypeError/UnpicklingError/zipfile
error; and a seeded, bounded fuzz of mutated real checkpoints lets nothing else escape."""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from omnizoo.errors import CheckpointError, UnsafeCheckpointError
from omnizoo.loading.state_dict_files import load_checkpoint, read_checkpoint

torch = pytest.importorskip("torch")


def state() -> dict[str, object]:
    torch.manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "conv.bias": torch.zeros(4),
        "fc.weight": torch.randn(2, 4),
        "bn.num_batches_tracked": torch.tensor(3),
    }


def torch_zip() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": state(), "epoch": 3}, buf)
    return buf.getvalue()


def torch_legacy() -> bytes:
    buf = io.BytesIO()
    torch.save(state(), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def safetensors_file() -> bytes:
    from safetensors.torch import save

    return save({k: v for k, v in state().items() if isinstance(v, torch.Tensor)})


def npz_file() -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in state().items()})  # type: ignore[union-attr]
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def lying_safetensors_header() -> bytes:
    data = safetensors_file()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    for meta in header.values():
        if isinstance(meta, dict) and "data_offsets" in meta:
            meta["data_offsets"] = [0, 10**9]  # points far past the end of the file
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]


# (file name, how to make it, what the message says after the path)
CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    (
        "text",
        lambda d: write(d, "notes.pth", b"these are my training notes\n"),
        "is a text file, not a checkpoint (it starts with 'these are my training no')",
    ),
    ("empty", lambda d: write(d, "empty.pth", b""), "is empty (0 bytes), not a checkpoint"),
    (
        "directory",
        lambda d: (d / "ckpt").mkdir() or d / "ckpt",
        "is a directory, not a checkpoint file",
    ),
    ("missing", lambda d: d / "nope.pth", "checkpoint file not found"),
    (
        "torch-zip-named-npz",
        lambda d: write(d, "weights.npz", torch_zip()),
        "is named .npz but holds a torch.save file (pickle)",
    ),
    (
        "truncated-zip",
        lambda d: write(d, "cut.pth", torch_zip()[:700]),
        "is a truncated or damaged zip archive",
    ),
    (
        "safetensors-header-longer-than-file",
        lambda d: write(d, "big.safetensors", (10**6).to_bytes(8, "little") + b'{"a": 1}'),
        "is not a readable safetensors file: its header claims 1000000 bytes but the file has 16",
    ),
    (
        "safetensors-lying-offsets",
        lambda d: write(d, "lie.safetensors", lying_safetensors_header()),
        "is not a readable safetensors file",
    ),
    (
        "damaged-pickle",
        lambda d: write(d, "legacy.pth", b"\x80\x02" + b"garbage!" * 8),
        "is not a readable torch checkpoint (a damaged pickle stream",
    ),
    (
        "zip-of-other-things",
        lambda d: write(d, "docs.pth", _zip({"readme.txt": b"hi"})),
        "is a zip archive but neither a torch.save file nor an .npz archive (members: readme.txt)",
    ),
    (
        "onnx",
        lambda d: write(d, "model.pth", b"\x08\x07\x12\x07pytorch"),
        "is an ONNX model, not a torch checkpoint",
    ),
    (
        "holds-no-tensors",
        lambda d: write(d, "list.pth", _saved([1, 2, 3])),
        "checkpoint holds a list, not a state dict",
    ),
]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_checkpoint_names_path_and_cause(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(path)
    text = str(ei.value)
    assert str(path) in text and message in text, text
    assert not isinstance(ei.value, UnsafeCheckpointError)


def test_symlink_to_a_system_file_is_named(tmp_path: Path) -> None:
    link = tmp_path / "model.pth"
    link.symlink_to("/etc/passwd")
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(link)
    assert str(ei.value).startswith(
        f"{link} (a symlink to /etc/passwd) is a text file, not a checkpoint"
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.timeout(60)  # opening a FIFO for reading would block forever: a hang fails here
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="is not a regular file"):
        read_checkpoint(fifo)


def test_pickled_objects_in_npz_are_refused(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "objects.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UnsafeCheckpointError, match=f"{path}: the .npz archive holds pickled"):
        load_checkpoint(path)


def test_create_model_wraps_malformed_checkpoint_path(tmp_path: Path) -> None:
    from omnizoo import create_model

    link = tmp_path / "weights.pth"
    link.symlink_to("/etc/passwd")
    with pytest.raises(CheckpointError, match=r"\(a symlink to /etc/passwd\) is a text file"):
        create_model("torchvision:squeezenet1_0", checkpoint_path=link)
    npz = write(tmp_path, "w.npz", torch_zip())
    with pytest.raises(CheckpointError, match=r"named \.npz but holds a torch\.save file"):
        create_model("torchvision:squeezenet1_0", checkpoint_path=npz)


def test_good_files_of_every_kind_still_load(tmp_path: Path) -> None:
    for name, data in (
        ("a.pth", torch_zip()),
        ("b.pth", torch_legacy()),
        ("c.safetensors", safetensors_file()),
        ("d.npz", npz_file()),
        ("blob", safetensors_file()),  # a cache blob: no suffix, read by content
    ):
        sd = load_checkpoint(write(tmp_path, name, data))
        assert torch.equal(sd["conv.weight"], state()["conv.weight"]), name  # type: ignore[arg-type]


# -- fuzz -----------------------------------------------------------------------------------
def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # flip a few bytes anywhere
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # flip bytes near the start (headers, magic, pickle opcodes)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(min(len(buf), 256))] = rng.randrange(256)
    elif kind == 2:  # truncate
        del buf[rng.randrange(1, len(buf)) :]
    elif kind == 3:  # insert junk
        at = rng.randrange(len(buf))
        buf[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == 4:  # delete a span
        at = rng.randrange(len(buf))
        del buf[at : at + rng.randint(1, 64)]
    else:  # overwrite a span with another part of the file
        a, b = rng.randrange(len(buf)), rng.randrange(len(buf))
        n = rng.randint(1, 32)
        buf[a : a + n] = buf[b : b + n]
    return bytes(buf)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # a mutated header
def test_fuzzed_checkpoints_raise_only_checkpoint_errors(tmp_path: Path) -> None:
    """400 mutations (seeded) of real torch (zip and legacy), safetensors and .npz files:
    each loads, or raises CheckpointError (UnsafeCheckpointError included), and nothing else."""
    rng = random.Random(20240609)
    seeds = {
        ".pth": torch_zip(),
        ".pt": torch_legacy(),
        ".safetensors": safetensors_file(),
        ".npz": npz_file(),
    }
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(400):
        suffix = list(seeds)[i % len(seeds)]
        data = _mutate(seeds[suffix], rng)
        path = tmp_path / f"case{i}{suffix if rng.random() < 0.8 else ''}"
        path.write_bytes(data)
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            assert str(path) in str(exc), (i, str(exc))
            outcomes["refused"] += 1
        except Exception as exc:  # pragma: no cover - the failure this test exists to catch
            pytest.fail(f"case {i} ({suffix}, {len(data)} bytes): {type(exc).__name__}: {exc}")
        else:
            outcomes["loaded"] += 1
        path.unlink()
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 10, outcomes
