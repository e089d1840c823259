"""Finding photos: recursion, symlink loops, each real file once, path lists, shards."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from aescore.inference.discover import discover, parse_shard, read_path_list, shard


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    for name in ["b.jpg", "a.JPG", "c.png", "notes.txt", "z/2.tif", "z/1.heic", "y/raw.CR2", "y/x.webp", ".hidden.jpg", ".cache/t.jpg"]:
        _touch(root / name)
    (root / "z" / "loop").symlink_to(root, target_is_directory=True)  # loop back to the root
    (root / "z" / "also_b.jpg").symlink_to(root / "b.jpg")  # second name of one file
    (root / "dangling.jpg").symlink_to(root / "gone.jpg")
    return root


def test_recursive_sorted_unique_and_loop_safe(tree: Path) -> None:
    found = discover([tree])
    rel = [os.path.relpath(f.path, tree) for f in found.files]
    assert rel == ["a.JPG", "b.jpg", "c.png", "y/raw.CR2", "y/x.webp", "z/1.heic", "z/2.tif"]
    assert not found.problems


def test_hidden_entries_only_when_asked(tree: Path) -> None:
    rel = {os.path.relpath(f.path, tree) for f in discover([tree], include_hidden=True).files}
    assert {".hidden.jpg", ".cache/t.jpg"} <= rel


def test_input_order_kept_and_each_real_file_once(tree: Path) -> None:
    found = discover([tree / "z" / "2.tif", tree, tree / "b.jpg", tree / "z" / "also_b.jpg"])
    rel = [os.path.relpath(f.path, tree) for f in found.files]
    assert rel[0] == "z/2.tif" and len(rel) == len(set(rel)) == 7
    assert [f.real for f in found.files].count(str((tree / "b.jpg").resolve())) == 1


def test_missing_named_input_is_a_problem_and_others_silent(tree: Path) -> None:
    found = discover([tree / "nope.jpg", tree / "notes.txt", tree / "c.png"])
    assert [os.path.basename(f.path) for f in found.files] == ["c.png"]
    assert found.problems == [(str(tree / "nope.jpg"), "no such file or directory")]


def test_stat_fields_are_cache_keys(tree: Path) -> None:
    (f,) = discover([tree / "c.png"]).files
    st = os.stat(tree / "c.png")
    assert (f.size, f.mtime_ns, f.real) == (st.st_size, st.st_mtime_ns, str((tree / "c.png").resolve()))


def test_read_path_list_lines_and_nul() -> None:
    assert read_path_list(io.BytesIO(b"a.jpg\nb c.jpg\r\n\n")) == ["a.jpg", "b c.jpg"]
    assert read_path_list(io.BytesIO(b"new\nline.jpg\0x.jpg\0"), from0=True) == ["new\nline.jpg", "x.jpg"]
    assert read_path_list(io.BytesIO(b"bad\xff.jpg\0"), from0=True) == [os.fsdecode(b"bad\xff.jpg")]


def test_shards_partition_the_input_deterministically(tree: Path) -> None:
    files = discover([tree]).files
    parts = [shard(files, i, 3) for i in (1, 2, 3)]
    assert sorted(f.path for p in parts for f in p) == sorted(f.path for f in files)
    assert sum(len(p) for p in parts) == len(files) and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard(list(reversed(files)), 2, 3) == list(reversed(parts[1]))  # same members in any input order


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/0", "x", "1/2/3", "a/b"])
def test_parse_shard_rejects_nonsense(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(bad)
    assert parse_shard("2/5") == (2, 5)


def test_nul_byte_in_a_listed_name_is_one_problem_and_the_rest_goes_on(tree: Path) -> None:
    # A newline-separated list fed a NUL-separated name: the entry cannot name any file.
    names = read_path_list(io.BytesIO(f"{tree / 'c.png'}\nbad\0name.jpg\n".encode()))
    found = discover(names)
    assert [f.path for f in found.files] == [str(tree / "c.png")]
    assert len(found.problems) == 1
    path, reason = found.problems[0]
    assert path == "bad\0name.jpg" and "NUL byte" in reason


def test_fifo_with_a_photo_name_is_a_problem_named_or_in_a_folder(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "x.jpg")
    os.mkfifo(tmp_path / "pipe.txt")  # not a photo name: ignored like any other file
    found = discover([tmp_path])
    assert [Path(f.path).name for f in found.files] == ["a.jpg"]
    assert found.problems == [(str(tmp_path / "x.jpg"), "not a regular file (a FIFO, socket or device)")]
    named = discover([str(tmp_path / "x.jpg")])
    assert named.files == [] and [r for _, r in named.problems] == ["not a regular file (a FIFO, socket or device)"]
