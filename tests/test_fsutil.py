"""Atomic writes: replace semantics, file modes, no temporary file left behind on failure."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from aescore.fsutil import atomic_path, atomic_write_bytes, atomic_write_text, default_file_mode, file_sha256


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def umask_027() -> Iterator[None]:
    """Run the test under umask 027 (so the default mode, 0640, differs from mkstemp's 0600 and 0644)."""
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_default_mode_follows_umask(umask_027: None) -> None:
    assert default_file_mode() == 0o640


def test_new_file_gets_umask_mode(tmp_path: Path, umask_027: None) -> None:
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\n".encode()
    assert _mode(tmp_path / "a.txt") == 0o640  # not mkstemp's private 0600
    assert _leftovers(tmp_path) == []


def test_given_mode_wins_and_is_applied_after_the_writer(tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    with atomic_path(target, 0o604) as tmp:
        tmp.unlink()  # writers such as safetensors delete and recreate the file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"data")
        os.close(fd)
    assert target.read_bytes() == b"data"
    assert _mode(target) == 0o604


def test_replaces_existing_file_and_readers_keep_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "card.json"
    target.write_text("old", encoding="utf-8")
    with open(target, encoding="utf-8") as reader:  # opened before: keeps seeing the old contents
        atomic_write_bytes(target, b"new")
        assert reader.read() == "old"
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_temporary_file_is_hidden_in_the_same_folder(tmp_path: Path) -> None:
    target = tmp_path / "x.pt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.pt.") and tmp.name.endswith(".tmp")
        assert not target.exists()  # nothing at the destination until the block ends
        tmp.write_bytes(b"1")
    assert target.read_bytes() == b"1"


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_leaves_destination_and_no_temp(tmp_path: Path, exc: BaseException) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("original", encoding="utf-8")
    with pytest.raises(type(exc)):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise exc
    assert target.read_text(encoding="utf-8") == "original"
    assert _leftovers(tmp_path) == []


def test_failure_before_any_file_existed_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "new.txt"):
            raise ValueError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_refuses_a_file_that_appeared(tmp_path: Path) -> None:
    target = tmp_path / "IMG_1.JPG"
    with pytest.raises(FileExistsError):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"copy")
            target.write_bytes(b"someone else's")  # appears while we write
    assert target.read_bytes() == b"someone else's"
    assert _leftovers(tmp_path) == []
    with atomic_path(tmp_path / "free.jpg", overwrite=False, fsync=False) as tmp:
        tmp.write_bytes(b"copy")
    assert (tmp_path / "free.jpg").read_bytes() == b"copy"


def test_replace_writes_through_neither_link_nor_target(tmp_path: Path) -> None:
    """os.replace swaps the name: a symlink at the destination is replaced, its target untouched."""
    real = tmp_path / "real.txt"
    real.write_text("photo data", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert not link.is_symlink() and link.read_text(encoding="utf-8") == "new"
    assert real.read_text(encoding="utf-8") == "photo data"


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "nope" / "a.txt", "x")


def test_text_keeps_newlines(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.csv", "a,b\nc,d\n")
    assert (tmp_path / "a.csv").read_bytes() == b"a,b\nc,d\n"


def test_file_sha256_reads_in_chunks(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) + 7)  # crosses the 1 MiB read size
    (tmp_path / "big").write_bytes(data)
    assert file_sha256(tmp_path / "big") == hashlib.sha256(data).hexdigest()
