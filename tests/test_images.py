"""Decoding untrusted files: format sniffing, aspect ratios, C-library stderr, failure classes."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from aescore.data import images
from aescore.data.images import MAX_ASPECT_RATIO, is_lasting_failure, load_rgb
from aescore.errors import ImageDecodeError


def _tiff_with_compression(path: Path, compression: int) -> Path:
    """An 8x8 TIFF whose compression tag claims ``compression`` (50001 = WebP, which this
    libtiff build lacks: it prints "WEBP compression support is not configured" on fd 2)."""
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path, compression="tiff_deflate")
    data = bytearray(path.read_bytes())
    assert data[:2] == b"II"
    offset = struct.unpack("<I", data[4:8])[0]
    (count,) = struct.unpack("<H", data[offset : offset + 2])
    for i in range(count):
        entry = offset + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 259:
            data[entry + 8 : entry + 10] = struct.pack("<H", compression)
    path.write_bytes(bytes(data))
    return path


def test_c_library_stderr_is_folded_into_the_one_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from PIL import features

    if not features.check("libtiff"):
        pytest.skip("Pillow built without libtiff")
    path = _tiff_with_compression(tmp_path / "webp.tif", 50001)
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(path)
    out, err = capfd.readouterr()
    assert err == "" and out == ""  # nothing reached the real stderr
    assert "cannot decode" in info.value.reason
    if "WEBP" not in info.value.reason:  # a libtiff with WebP support decodes differently
        pytest.skip("this libtiff printed nothing for WebP compression")
    assert info.value.reason.count("WEBP compression support is not configured") == 1
    # fd 2 is restored afterwards
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_only_supported_formats_are_sniffed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eps = tmp_path / "x.eps"
    Image.new("RGB", (10, 10)).save(eps)  # PostScript; opening it would run Ghostscript
    renamed = tmp_path / "holiday.jpg"
    renamed.write_bytes(eps.read_bytes())
    Image.init()
    consulted: list[bytes] = []
    factory, accept = Image.OPEN["EPS"]
    monkeypatch.setitem(Image.OPEN, "EPS", (factory, lambda prefix: consulted.append(prefix) or (accept(prefix) if accept else True)))
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(renamed)
    assert info.value.reason == "not a recognised image" and info.value.lasting
    assert consulted == []  # the EPS opener was never asked


def test_a_png_named_jpg_still_decodes(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    Image.new("RGB", (12, 9), (9, 8, 7)).save(path, format="PNG")
    assert load_rgb(path).size == (12, 9)


@pytest.mark.parametrize("size", [(4000, 1), (1, 30000), (21, 1)])
def test_absurd_aspect_ratios_are_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]) -> None:
    path = tmp_path / "strip.png"
    Image.new("RGB", size).save(path)
    decoded: list[object] = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or real_load(self))
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(path)
    assert "aspect ratio" in info.value.reason and f"{MAX_ASPECT_RATIO:g}:1" in info.value.reason
    assert info.value.lasting
    assert decoded == []  # refused from the header


def test_aspect_ratio_at_the_limit_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "panorama.png"
    Image.new("RGB", (400, 20)).save(path)
    assert load_rgb(path).size == (400, 20)


@pytest.mark.parametrize("size,expected", [((300, 100), (150, 100)), ((100, 301), (100, 150)), ((149, 100), (149, 100)), ((400, 20), (30, 20))])
def test_max_aspect_centre_crops_the_long_edge(tmp_path: Path, size: tuple[int, int], expected: tuple[int, int]) -> None:
    path = tmp_path / "photo.png"
    img = Image.new("RGB", size, (0, 0, 0))
    # a marker column/row in the middle: a centred crop keeps it in the middle
    w, h = size
    for x in range(w):
        for y in range(h):
            if (w >= h and x == w // 2) or (h > w and y == h // 2):
                img.putpixel((x, y), (255, 255, 255))
    img.save(path)
    out = load_rgb(path, max_aspect=1.5)
    assert out.size == expected
    cw, ch = out.size
    if w >= h:
        assert abs([x for x in range(cw) if out.getpixel((x, 0)) == (255, 255, 255)][0] - cw / 2) <= 1
    else:
        assert abs([y for y in range(ch) if out.getpixel((0, y)) == (255, 255, 255)][0] - ch / 2) <= 1


def test_max_aspect_applies_after_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 300x100, displayed 100x300
    Image.new("RGB", (300, 100)).save(path, exif=exif)
    assert load_rgb(path, max_aspect=1.5).size == (100, 150)
    assert load_rgb(path, 100).size == (100, 300)  # positional min_shorter still works


def test_failures_are_classified_lasting_or_passing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image" * 10)
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(garbage)
    assert info.value.lasting and is_lasting_failure(info.value)

    with pytest.raises(ImageDecodeError) as info:
        load_rgb(tmp_path / "gone.jpg")
    assert not info.value.lasting and not is_lasting_failure(info.value)

    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)

    def oom(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(ImageOps, "exif_transpose", oom)
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(good)
    assert "memory" in info.value.reason and not is_lasting_failure(info.value)
    monkeypatch.undo()

    # anything that is not a decode error says nothing about the file
    assert not is_lasting_failure(ZeroDivisionError("float division by zero"))
    assert not is_lasting_failure(MemoryError())


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads every file")
def test_permission_denied_is_not_lasting(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(ImageDecodeError) as info:
            load_rgb(path)
    finally:
        path.chmod(0o644)
    assert not info.value.lasting and "Errno" in info.value.reason


def test_decode_error_pickles_with_its_fields() -> None:
    err = pickle.loads(pickle.dumps(ImageDecodeError("/p/x.jpg", "empty file", lasting=False)))
    assert (err.path, err.reason, err.lasting, str(err)) == ("/p/x.jpg", "empty file", False, "/p/x.jpg: empty file")


def test_terminal_output_of_other_threads_is_written_back(capfd: pytest.CaptureFixture[str]) -> None:
    with images._capture_c_stderr() as messages:
        os.write(2, b"\x1b[2K progress 3/10\n")
        os.write(2, b"tempfile.tif: some libtiff complaint.\n")
    err = capfd.readouterr().err
    assert err == "\x1b[2K progress 3/10\n"
    assert messages.text == "some libtiff complaint."
