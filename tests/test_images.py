"""load_image on real-world files: orientation, odd modes, and bad files (per-image errors)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnizoo.data.images import load_image, to_rgb
from omnizoo.errors import ImageLoadError


def _jpeg(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (60, 40), (200, 10, 10))
    img.paste((10, 10, 200), (0, 0, 10, 40))  # blue band on the left edge
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = load_image(_jpeg(img, exif=exif.tobytes(), quality=95))
    assert out.mode == "RGB"
    assert out.size == (40, 60)  # upright: portrait
    top = np.asarray(out)[2, 20]  # the band is now along the top
    assert top[2] > 150 and top[0] < 80


def test_grayscale_becomes_three_equal_channels() -> None:
    img = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), mode="L")
    out = np.asarray(load_image(_png(img)))
    assert out.shape == (16, 16, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out[15, 15, 0] == 255


def test_rgba_is_composited_on_white() -> None:
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., :3] = (0, 0, 0)
    arr[0, 0, 3] = 0  # fully transparent black -> white
    arr[1, 1, 3] = 255  # opaque black stays black
    arr[2, 2, 3] = 128  # half -> mid grey
    out = np.asarray(load_image(_png(Image.fromarray(arr, mode="RGBA"))))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (0, 0, 0)
    assert 120 <= out[2, 2, 0] <= 135


def test_palette_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 0
    out = np.asarray(load_image(_png(img)))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (255, 0, 0)


def test_cmyk_jpeg_becomes_rgb() -> None:
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(_jpeg(img, quality=95))
    r, g, b = np.asarray(out)[4, 4]
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 257 * 100, 65535, 300]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))[0, :, 0]
    assert out.tolist() == [0, 100, 255, 1]


def test_float_image_mode_f() -> None:
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 128, 255]


def test_corrupt_bytes_name_the_source() -> None:
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(b"definitely not an image")


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    data = _jpeg(Image.new("RGB", (200, 200), (1, 2, 3)))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert "cut.jpg" in str(info.value) and info.value.path == str(path)
    assert isinstance(info.value, OSError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 10,000 pixels: over the limit
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageLoadError, match="bomb"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # over twice the limit: Pillow raises
    with pytest.raises(ImageLoadError, match="bomb"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.warns(Image.DecompressionBombWarning):  # max_pixels=None: Pillow only warns
        assert load_image(path, max_pixels=None).size == (100, 100)


def test_file_objects_and_paths_give_the_same_image(tmp_path: Path) -> None:
    img = Image.new("RGB", (10, 7), (9, 99, 199))
    path = tmp_path / "a.png"
    img.save(path)
    a = np.asarray(load_image(path))
    b = np.asarray(load_image(str(path)))
    with path.open("rb") as fh:
        c = np.asarray(load_image(fh))
    d = np.asarray(load_image(path.read_bytes()))
    assert (a == b).all() and (a == c).all() and (a == d).all()
