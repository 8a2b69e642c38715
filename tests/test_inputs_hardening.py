"""Hostile inputs: damaged images (a seeded fuzz of real ones), FIFOs and devices given as
images, one corrupt PNG among good ones for ``omnizoo predict DIR``, and a damaged card
inside an index file that still parses as JSON."""

from __future__ import annotations

import collections
import io
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import pytest
from PIL import Image

from omnizoo.data.images import load_image
from omnizoo.errors import ImageLoadError

IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"
FUZZ_CASES = 3000
FUZZ_SEED = 20240917


def _broken_png() -> bytes:
    """A PNG whose IHDR chunk claims 5 bytes: Image.open itself raised a bare ValueError."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[8:12] = (5).to_bytes(4, "big")
    return bytes(data)


# -- load_image: one error type, naming the file and the cause -------------------------------
def test_image_open_errors_are_image_load_errors(tmp_path: Path) -> None:
    """Before: ValueError('Truncated IHDR chunk') escaped from Image.open."""
    path = tmp_path / "broken.png"
    path.write_bytes(_broken_png())
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == f"{path}: cannot decode (ValueError: Truncated IHDR chunk)"
    assert info.value.path == str(path) and isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ImageLoadError, match=r"^<\d+ bytes>: cannot decode \(ValueError"):
        load_image(_broken_png())


@pytest.mark.timeout(30)
@pytest.mark.timeout(60)
def test_fifo_device_and_directory_are_refused_without_blocking(tmp_path: Path) -> None:
    """Before: a FIFO blocked load_image forever (open() waits for a writer)."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    cases = {fifo: "a FIFO", Path("/dev/zero"): "a character device", link: "a character"}
    cases[tmp_path] = "a directory"
    for path, kind in cases.items():
        with pytest.raises(ImageLoadError, match=f"^{path}: {kind}") as info:
            load_image(path)  # a blocking open would hang here: the timeout mark catches it
        assert info.value.path == str(path)
    good = tmp_path / "cat.jpg"
    good.symlink_to(IMAGES / "cat.jpg")  # a symlink to a real image is fine
    assert load_image(good).mode == "RGB"


def _seeds() -> list[tuple[str, bytes]]:
    """Small re-encodings of the example photos in every format Pillow here can write."""
    formats = [
        ("PNG", "RGB", {}),
        ("PNG", "P", {"transparency": 0}),
        ("PNG", "I;16", {}),
        ("JPEG", "RGB", {}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("TIFF", "RGB", {"compression": "tiff_lzw"}),
        ("WEBP", "RGB", {}),
        ("ICO", "RGBA", {}),
        ("PPM", "RGB", {}),
        ("TGA", "RGB", {}),
        ("PCX", "RGB", {}),
        ("DDS", "RGBA", {}),
        ("SGI", "RGB", {}),
    ]
    seeds = []
    for photo in sorted(IMAGES.glob("*.jpg")):
        small = Image.open(photo).convert("RGB")
        small.thumbnail((40, 40))
        seeds.append((photo.name, photo.read_bytes()))  # the real file too
        for fmt, mode, kwargs in formats:
            img = small.convert("L").convert("I;16") if mode == "I;16" else small.convert(mode)
            buf = io.BytesIO()
            try:
                img.save(buf, fmt, **kwargs)
            except (OSError, KeyError, ValueError):  # a codec this Pillow build lacks
                continue
            seeds.append((f"{photo.stem}.{fmt.lower()}-{mode}", buf.getvalue()))
    return seeds


def _mutate(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        if op == 0:  # flip bytes, mostly in the header where the parsers are
            for _ in range(rng.randint(1, 8)):
                end = min(len(d), 96) if rng.random() < 0.6 else len(d)
                d[rng.randrange(end)] = rng.randrange(256)
        elif op == 1:  # truncate
            d = d[: rng.randrange(1, len(d))]
        elif op == 2:  # insert random bytes
            i = rng.randrange(len(d))
            d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3:  # a run of 0x00 or 0xff
            i, n = rng.randrange(len(d)), rng.randint(1, 32)
            d[i : i + n] = bytes([rng.choice((0, 255))]) * n
        else:  # duplicate a chunk elsewhere
            i, j, n = rng.randrange(len(d)), rng.randrange(len(d)), rng.randint(1, 64)
            d[j:j] = d[i : i + n]
    return bytes(d)


def test_fuzzed_real_images_only_ever_raise_image_load_error() -> None:
    """Seeded and bounded: a few thousand mutated images in seconds. Before: ValueError and
    NotImplementedError escaped (TypeError too in longer runs)."""
    seeds = _seeds()
    assert len(seeds) >= 40
    rng = random.Random(FUZZ_SEED)
    outcomes: collections.Counter[str] = collections.Counter()
    escaped: list[tuple[str, str]] = []
    for case in range(FUZZ_CASES):
        name, seed = rng.choice(seeds)
        data = _mutate(rng, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF/truncation chatter of damaged files
            try:
                img = load_image(data, max_pixels=1 << 20)
            except ImageLoadError as exc:
                assert str(exc).startswith(f"<{len(data)} bytes>: "), exc
                outcomes["refused"] += 1
                continue
            except Exception as exc:  # what this test exists to catch
                escaped.append((f"case {case} from {name}", f"{type(exc).__name__}: {exc}"))
                continue
        assert img.mode == "RGB"
        outcomes["decoded"] += 1
    assert escaped == [], f"{len(escaped)} escaped, e.g. {escaped[:5]}"
    # the fuzz does real work: both outcomes are common
    assert outcomes["refused"] > FUZZ_CASES // 5 and outcomes["decoded"] > FUZZ_CASES // 10


# -- omnizoo predict DIR with one corrupt PNG ------------------------------------------------
def test_predict_directory_with_one_corrupt_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lite0_checkpoint: Path
) -> None:
    """Before: the corrupt PNG killed the whole run with a ValueError traceback."""
    from omnizoo.cli.main import main

    ckpt = lite0_checkpoint
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat.jpg", "coffee.jpg"):
        shutil.copy(IMAGES / name, photos / name)
    (photos / "broken.png").write_bytes(_broken_png())
    argv = ["predict", "timm:tf_efficientnet_lite0", str(photos), "--checkpoint", str(ckpt)]
    code = main([*argv, "--device", "cpu", "--topk", "1"])
    out, err = capsys.readouterr()
    assert code == 1  # documented: 1 when some image could not be read
    assert "cat.jpg:" in out and "coffee.jpg:" in out and "broken.png" not in out
    broken = photos / "broken.png"
    assert err == f"omnizoo: error: {broken}: cannot decode (ValueError: Truncated IHDR chunk)\n"


# -- a damaged card inside an index file that still parses -----------------------------------
@pytest.mark.parametrize(
    "damage",
    ['{"arch": "efficientnet-b0", "tag": nul', '"a string, not a card"', '{"arch": 3}'],
    ids=["bad-json", "not-a-dict", "bad-fields"],
)
def test_damaged_card_in_the_index_triggers_a_rebuild(
    isolated_home: Path, damage: str, recwarn: pytest.WarningsRecorder
) -> None:
    """Before: a raw JSONDecodeError (or TypeError) on every call, and never rebuilt."""
    from omnizoo import get_card, list_models
    from omnizoo.registry.adapters import get_adapter
    from omnizoo.registry.index import reset_indexes

    names = list_models(source="efficientnet", pretrained=True)
    path = isolated_home / "index" / f"{get_adapter('efficientnet').index_key()}.json"
    doc = json.loads(path.read_text())
    arch, tag = doc["entries"][0][:2]
    name = f"efficientnet:{arch}" + (f".{tag}" if tag else "")
    good = json.loads(doc["cards"][0])
    doc["cards"][0] = damage
    path.write_text(json.dumps(doc))  # the file as a whole still parses
    reset_indexes()
    card = get_card(name)  # rebuilt, with a warning
    assert card.arch == good["arch"] and card.name == name
    assert any("card index" in str(w.message) and "damaged" in str(w.message) for w in recwarn)
    assert json.loads(json.loads(path.read_text())["cards"][0]) == good  # the file was fixed
    reset_indexes()
    assert get_card(name) == card and list_models(source="efficientnet", pretrained=True) == names


@pytest.mark.timeout(120)
def test_a_planted_link_or_fifo_at_an_index_file_is_rebuilt_not_read(isolated_home: Path) -> None:
    """Someone with write access to a shared OMNIZOO_HOME links the card index to /dev/zero or
    replaces it by a FIFO. Before: ``json.load`` read /dev/zero until memory ran out. Now the
    file is read like every cache file (no link followed, regular only, capped): rebuilt."""
    import os

    from omnizoo import list_models
    from omnizoo.registry.adapters import get_adapter
    from omnizoo.registry.index import reset_indexes

    names = list_models(source="efficientnet", pretrained=True)
    path = isolated_home / "index" / f"{get_adapter('efficientnet').index_key()}.json"
    for plant in ("link", "fifo"):
        path.unlink()
        if plant == "link":
            path.symlink_to("/dev/zero")
        else:
            os.mkfifo(path)
        reset_indexes()
        assert list_models(source="efficientnet", pretrained=True) == names
        assert path.is_file() and not path.is_symlink()  # replaced by a fresh build
