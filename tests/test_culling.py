"""Culling helpers: EXIF reading, burst grouping, percentile stars, copy/link materialisation."""

from __future__ import annotations

import hashlib
import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image
from PIL.ExifTags import Base, IFD
from PIL.TiffImagePlugin import IFDRational

from aescore.errors import UsageError
from aescore.inference.bursts import best_of_groups, group_bursts
from aescore.inference.exif import ExifInfo, capture_timestamp, parse_exif_datetime, read_exif
from aescore.inference.materialise import materialise
from aescore.inference.stars import REJECTED, STAR_BANDS, assign_stars

# --------------------------------------------------------------------------- EXIF


def _jpeg_with_exif(path: Path, **exif_ifd: object) -> Path:
    exif = Image.Exif()
    exif[Base.Make] = "NIKON CORPORATION"
    exif[Base.Model] = "NIKON D750"
    exif[Base.DateTime] = "2020:01:01 00:00:00"
    sub = exif.get_ifd(IFD.Exif)
    sub[Base.DateTimeOriginal] = "2023:05:06 07:08:09"
    sub[Base.LensModel] = "24.0-120.0 mm f/4.0"
    sub[Base.ExposureTime] = IFDRational(1, 250)
    sub[Base.FNumber] = IFDRational(28, 10)
    sub[Base.ISOSpeedRatings] = 200
    sub[Base.FocalLength] = IFDRational(35, 1)
    for key, value in exif_ifd.items():
        sub[getattr(Base, key)] = value
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, exif=exif)
    return path


def test_read_exif_fields(tmp_path: Path) -> None:
    info = read_exif(_jpeg_with_exif(tmp_path / "a.jpg"))
    assert info.capture_time == datetime(2023, 5, 6, 7, 8, 9)
    assert info.capture_time.tzinfo is None
    assert info.camera == "NIKON D750"  # maker not repeated
    assert info.lens == "24.0-120.0 mm f/4.0"
    assert info.exposure == "1/250 s f/2.8 ISO 200 35 mm"
    assert info.to_dict()["capture_time"] == "2023-05-06T07:08:09"


def test_read_exif_subseconds_and_offset(tmp_path: Path) -> None:
    path = _jpeg_with_exif(tmp_path / "b.jpg", SubsecTimeOriginal="25", OffsetTimeOriginal="+02:00")
    info = read_exif(path)
    expected = datetime(2023, 5, 6, 7, 8, 9, 250000, tzinfo=timezone(timedelta(hours=2)))
    assert info.capture_time == expected
    assert capture_timestamp(path, info) == pytest.approx(expected.timestamp())
    # aware time: the POSIX timestamp does not depend on the machine's time zone
    assert capture_timestamp(path) == pytest.approx(datetime(2023, 5, 6, 5, 8, 9, 250000, tzinfo=timezone.utc).timestamp())


def test_camera_make_kept_when_not_repeated(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[Base.Make] = "Canon"
    exif[Base.Model] = "EOS R5"
    Image.new("RGB", (8, 8)).save(tmp_path / "c.jpg", exif=exif)
    info = read_exif(tmp_path / "c.jpg")
    assert info.camera == "Canon EOS R5"
    assert info.capture_time is None and info.lens is None and info.exposure is None


def test_no_exif_falls_back_to_mtime(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    os.utime(path, (1_600_000_000, 1_600_000_123.5))
    info = read_exif(path)
    assert info == ExifInfo()
    assert capture_timestamp(path, info) == 1_600_000_123.5


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff"])
def test_bad_exif_never_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    assert read_exif(path) == ExifInfo()
    assert read_exif(tmp_path / "missing.jpg") == ExifInfo()


def test_parse_exif_datetime_placeholders() -> None:
    assert parse_exif_datetime("0000:00:00 00:00:00") is None
    assert parse_exif_datetime("    :  :     :  :  ") is None
    assert parse_exif_datetime("2021:02:30 10:00:00") is None  # impossible date
    assert parse_exif_datetime("2021:02:03 10:00:00", "5", "-05:30") == datetime(
        2021, 2, 3, 10, 0, 0, 500000, tzinfo=timezone(-timedelta(hours=5, minutes=30))
    )


# --------------------------------------------------------------------------- bursts


def test_group_bursts_by_time_gap() -> None:
    # input deliberately unsorted; gaps: 0->1 (1 s), 1->2.5, then 60 s, then 0.5, then 100
    times = [61.0, 0.0, 1.0, 160.5, 2.5, 61.5]
    groups = group_bursts(times, gap_s=2.0)
    assert groups == [1, 0, 0, 2, 0, 1]
    # a gap exactly equal to gap_s still joins the burst
    assert group_bursts([0.0, 2.0, 4.0], gap_s=2.0) == [0, 0, 0]
    assert group_bursts([0.0, 2.0, 4.0], gap_s=1.9) == [0, 1, 2]
    assert group_bursts([], gap_s=1.0) == []
    with pytest.raises(UsageError):
        group_bursts([0.0], gap_s=-1)


def test_group_bursts_split_by_similarity() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    emb = [[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99], [1.0, 0.05]]
    assert group_bursts(times, gap_s=5.0) == [0, 0, 0, 0, 0]
    assert group_bursts(times, gap_s=5.0, embeddings=emb, min_similarity=0.9) == [0, 0, 1, 1, 2]
    # embeddings without a threshold do not split
    assert group_bursts(times, gap_s=5.0, embeddings=emb) == [0, 0, 0, 0, 0]
    # a zero embedding never joins its neighbour
    assert group_bursts([0.0, 1.0], 5.0, [[0.0, 0.0], [0.0, 0.0]], 0.5) == [0, 1]


def test_group_bursts_deterministic_under_permutation() -> None:
    rng = random.Random(0)
    times = [rng.uniform(0, 100) for _ in range(50)]
    times[5] = times[6]  # a tie
    emb = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(50)]
    base = group_bursts(times, 3.0, emb, 0.0)
    assert base == group_bursts(times, 3.0, emb, 0.0)
    # ids appear in time order: the first photo by time is in group 0 and ids never decrease
    by_time = [base[i] for i in sorted(range(50), key=lambda i: (times[i], i))]
    assert by_time[0] == 0 and by_time == sorted(by_time)
    assert max(base) + 1 == len(set(base))


def test_best_of_groups_ties_by_path() -> None:
    groups = [0, 0, 1, 1, 2]
    scores = [0.5, 0.7, 0.6, 0.6, float("nan")]
    paths = ["a.jpg", "b.jpg", "z.jpg", "c.jpg", "d.jpg"]
    assert best_of_groups(groups, scores, paths) == {1, 3, 4}


# --------------------------------------------------------------------------- stars


def test_star_bands_table() -> None:
    assert [b.stars for b in STAR_BANDS] == [5, 4, 3, 2, 1]
    assert sum(b.max_q - b.min_q for b in STAR_BANDS) == 1
    assert [float(b.min_q) for b in STAR_BANDS] == [0.9, 0.7, 0.3, 0.1, 0.0]


@pytest.mark.parametrize("n, counts", [(10, {5: 1, 4: 2, 3: 4, 2: 2, 1: 1}), (100, {5: 10, 4: 20, 3: 40, 2: 20, 1: 10})])
def test_star_band_sizes(n: int, counts: dict[int, int]) -> None:
    scores = [i / n for i in range(n)]
    random.Random(1).shuffle(scores)
    stars = assign_stars(scores)
    assert {s: stars.count(s) for s in counts} == counts
    # monotone: a better score never gets fewer stars
    pairs = sorted(zip(scores, stars))
    assert [s for _, s in pairs] == sorted(s for _, s in pairs)


def test_star_boundaries_on_100() -> None:
    scores = list(range(100))  # rank r = score + 1, q = score / 99
    stars = assign_stars(scores)
    # q = 9/99 < 0.1 -> 1 star; q = 10/99 >= 0.1 -> 2 stars; edges at 30, 70, 90 percent likewise
    assert stars[9] == 1 and stars[10] == 2
    assert stars[29] == 2 and stars[30] == 3
    assert stars[69] == 3 and stars[70] == 4
    assert stars[89] == 4 and stars[90] == 5


def test_star_exact_edges() -> None:
    # n = 11: q = k/10 exactly; a photo sitting on an edge belongs to the upper band
    assert assign_stars(list(range(11))) == [1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5]


def test_stars_ties_single_and_reject() -> None:
    assert assign_stars([0.4, 0.4, 0.4]) == [3, 3, 3]
    assert assign_stars([0.2]) == [3]
    assert assign_stars([]) == []
    scores = [0.1, 0.9, 0.5, 0.5, 0.05]
    stars = assign_stars(scores)
    assert stars[2] == stars[3]
    rejected = assign_stars(scores, reject_below=0.2)
    assert rejected[0] == REJECTED and rejected[4] == REJECTED
    assert rejected[1:4] == stars[1:4]  # rejecting does not shift the others
    with pytest.raises(ValueError):
        assign_stars([0.1, float("nan")])


# --------------------------------------------------------------------------- materialise


def _digest_tree(root: Path) -> dict[str, tuple[str, float]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def photo_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for folder, colour in (("a", 10), ("b", 20), ("c", 30)):
        (src / folder).mkdir(parents=True)
        Image.new("RGB", (4, 4), (colour, 0, 0)).save(src / folder / "IMG_1.JPG")
    return src


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_materialise_collisions_and_rerun(photo_tree: Path, tmp_path: Path, mode: str) -> None:
    before = _digest_tree(photo_tree)
    dest = tmp_path / "best"
    dest.mkdir()
    # someone else's file already has the first name: never overwritten
    (dest / "IMG_1.JPG").write_bytes(b"user file")
    photos = [photo_tree / "a" / "IMG_1.JPG", photo_tree / "b" / "IMG_1.JPG", photo_tree / "c" / "IMG_1.JPG"]
    pairs = materialise(photos + [photos[0]], dest, mode)  # type: ignore[arg-type]
    assert [d.name for _, d in pairs] == ["IMG_1-1.JPG", "IMG_1-2.JPG", "IMG_1-3.JPG"]
    assert (dest / "IMG_1.JPG").read_bytes() == b"user file"
    for src, dst in pairs:
        assert dst.read_bytes() == src.read_bytes()
        assert dst.is_symlink() == (mode == "link")
        if mode == "link":
            assert os.path.isabs(os.readlink(dst))
        else:
            assert dst.stat().st_mtime == pytest.approx(src.stat().st_mtime)  # copy2 keeps metadata
    listing = sorted(p.name for p in dest.iterdir())
    # idempotent: a re-run finds the identical files and creates nothing new
    assert materialise(photos, dest, mode) == pairs[:3]  # type: ignore[arg-type]
    assert sorted(p.name for p in dest.iterdir()) == listing
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]
    assert _digest_tree(photo_tree) == before


def test_materialise_dry_run_and_bad_dest(photo_tree: Path, tmp_path: Path) -> None:
    before = _digest_tree(photo_tree)
    dest = tmp_path / "new" / "sel"
    photos = [photo_tree / "a" / "IMG_1.JPG", photo_tree / "b" / "IMG_1.JPG"]
    pairs = materialise(photos, dest, "copy", dry_run=True)
    assert [d for _, d in pairs] == [dest / "IMG_1.JPG", dest / "IMG_1-1.JPG"]
    assert not dest.exists()
    assert _digest_tree(photo_tree) == before
    with pytest.raises(UsageError):
        materialise(photos, photos[0], "copy")
    with pytest.raises(UsageError):
        materialise(photos, dest, "move")  # type: ignore[arg-type]


def test_rank_percentiles_equal_scipy_average_ranks() -> None:
    """The hand-written average ranks (no scipy.stats import on the culling path) match scipy's."""
    import random
    from fractions import Fraction

    from scipy.stats import rankdata

    from aescore.inference.stars import rank_percentiles

    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(2, 40)
        scores = [rng.choice([0.1, 0.2, 0.3, rng.random()]) for _ in range(n)]  # many ties
        expected = [Fraction(int(round(2 * r)) - 2, 2 * (n - 1)) for r in rankdata(scores, method="average")]
        assert rank_percentiles(scores) == expected
