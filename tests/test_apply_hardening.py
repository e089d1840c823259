"""`aescore apply` hardening (issue 29): where it writes, shared sidecars, FIFOs and bad scores.

Photos are plain bytes in tmp_path: apply never opens them, it only needs them to exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aescore
from aescore.cli.main import main
from aescore.inference.xmp import SidecarError, write_rating_sidecar

SIDECAR = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/>
 </rdf:RDF>
</x:xmpmeta>
"""


def _photo(path: Path) -> Path:
    """A file with a photo's name (apply never reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"photo bytes apply never reads")
    return path


def _write_decisions(path: Path, entries: list[dict[str, Any]]) -> Path:
    doc = {"format": "aescore-decisions", "version": 1, "model": "abc", "decisions": entries}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _apply(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """Run ``aescore apply ARGS``: the exit status and the stderr lines."""
    with pytest.raises(SystemExit) as ex:
        main(["apply", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    return int(ex.value.code or 0), err.splitlines()


def _skipped(lines: list[str], needle: str) -> list[str]:
    return [line for line in lines if line.startswith("aescore: skipped:") and needle in line]


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every path under ``folder`` with its bytes (or link target): to show nothing changed."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        out[key] = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir")
    return out


# --------------------------------------------------------------------------- 2: where apply writes


def test_apply_only_writes_sidecars_for_photos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("secret")
    passwd = tmp_path / "etc" / "passwd"
    passwd.parent.mkdir()
    passwd.write_text("root:x:0:0")
    photo = _photo(tmp_path / "shoot" / "IMG_1.jpg")
    f = _write_decisions(tmp_path / "d.json", [
        {"path": str(secret), "rating": 5, "score": 0.9},
        {"path": str(passwd), "rating": 5, "score": 0.9},
        {"path": str(photo), "rating": 4, "score": 0.8},
    ])
    code, lines = _apply(capsys, str(f), "--dry-run")
    assert code == 3
    assert len(_skipped(lines, "entry 1")) == 1 and "not a photo" in _skipped(lines, "entry 1")[0]
    assert len(_skipped(lines, "entry 2")) == 1 and "not a photo" in _skipped(lines, "entry 2")[0]
    assert not [line for line in lines if "secret.xmp" in line or "passwd.xmp" in line]
    assert [line for line in lines if "would create" in line and "IMG_1.xmp" in line]

    code, lines = _apply(capsys, str(f))
    assert code == 3
    assert not (tmp_path / "outside" / "secret.xmp").exists() and not (tmp_path / "etc" / "passwd.xmp").exists()
    assert (tmp_path / "shoot" / "IMG_1.xmp").is_file()
    assert secret.read_text() == "secret" and passwd.read_text() == "root:x:0:0"


def test_sidecar_link_out_of_the_photos_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "outside" / "target.xmp"
    target.parent.mkdir()
    target.write_text(SIDECAR.format(rating=1), encoding="utf-8")
    photo = _photo(tmp_path / "shoot" / "IMG_1.jpg")
    link = tmp_path / "shoot" / "IMG_1.xmp"
    link.symlink_to(target)
    before = _snapshot(tmp_path)

    # --write-xmp and apply share the rule: it lives in write_rating_sidecar.
    with pytest.raises(SidecarError, match="outside the photo's folder"):
        write_rating_sidecar(photo, 5, 0.9, overwrite_rating=True)
    with pytest.raises(SidecarError, match="outside the photo's folder"):
        write_rating_sidecar(photo, 5, 0.9, overwrite_rating=True, dry_run=True)

    f = _write_decisions(tmp_path / "d.json", [{"path": str(photo), "rating": 5, "score": 0.9}])
    for args in (["--dry-run"], []):
        code, lines = _apply(capsys, str(f), *args)
        assert code == 3
        refused = _skipped(lines, "outside the photo's folder")
        assert len(refused) == 1 and "IMG_1" in refused[0]
        assert not [line for line in lines if "would" in line]
    after = _snapshot(tmp_path)
    assert after == before | {"d.json": after["d.json"]}  # the link and its target are untouched
    assert link.is_symlink()


def test_sidecar_link_within_the_folder_is_still_written_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = _photo(tmp_path / "shoot" / "IMG_1.jpg")
    target = tmp_path / "shoot" / "shared.xmp"
    target.write_text(SIDECAR.format(rating=1), encoding="utf-8")
    (tmp_path / "shoot" / "IMG_1.xmp").symlink_to("shared.xmp")
    f = _write_decisions(tmp_path / "d.json", [{"path": str(photo), "rating": 5, "score": 0.9}])
    code, lines = _apply(capsys, str(f))
    assert code == 0, lines
    assert (tmp_path / "shoot" / "IMG_1.xmp").is_symlink()
    assert 'xmp:Rating="5"' in target.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- 3: shared sidecars


def test_apply_leaves_a_raw_files_sidecar_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photo(tmp_path / "DSC_1.NEF")
    jpg = _photo(tmp_path / "DSC_1.jpg")
    sidecar = tmp_path / "DSC_1.xmp"
    sidecar.write_text(SIDECAR.format(rating=2), encoding="utf-8")
    before = sidecar.read_bytes()
    f = _write_decisions(tmp_path / "d.json", [{"path": str(jpg), "rating": 5, "score": 0.9}])
    for args in (["--dry-run"], []):
        code, lines = _apply(capsys, str(f), *args)
        assert code == 3
        refused = _skipped(lines, "DSC_1.jpg")
        assert len(refused) == 1 and "shares the sidecar DSC_1.xmp with DSC_1.NEF" in refused[0]
        assert not [line for line in lines if "would" in line]
    assert sidecar.read_bytes() == before


def test_apply_writes_a_shared_sidecar_for_one_photo_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jpg = _photo(tmp_path / "pair.jpg")
    png = _photo(tmp_path / "pair.png")
    f = _write_decisions(tmp_path / "d.json", [
        {"path": str(png), "rating": -1, "score": 0.1},
        {"path": str(jpg), "rating": 5, "score": 0.9},
    ])
    code, lines = _apply(capsys, str(f), "--dry-run")
    assert code == 3
    assert len([line for line in lines if "would create" in line and "pair.xmp" in line]) == 1
    refused = _skipped(lines, "pair.png")
    assert len(refused) == 1 and "shares the sidecar pair.xmp with pair.jpg" in refused[0]
    assert not (tmp_path / "pair.xmp").exists()

    code, lines = _apply(capsys, str(f))
    assert code == 3
    assert 'xmp:Rating="5"' in (tmp_path / "pair.xmp").read_text(encoding="utf-8")
    assert "1 sidecar(s) written" in lines[-1]


# --------------------------------------------------------------------------- 4: FIFOs


def test_apply_on_a_fifo_exits_promptly(tmp_path: Path) -> None:
    fifo = tmp_path / "d.json"
    os.mkfifo(fifo)
    # In a child process (a blocked open() cannot be interrupted), importing this very checkout.
    env = {**os.environ, "PYTHONPATH": str(Path(aescore.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "aescore", "apply", str(fifo)],
        check=False, capture_output=True, text=True, timeout=30, cwd=tmp_path, stdin=subprocess.DEVNULL, env=env,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a regular file" in done.stderr, done.stderr


def test_apply_skips_a_photo_that_is_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "IMG_1.jpg"
    os.mkfifo(fifo)
    f = _write_decisions(tmp_path / "d.json", [{"path": str(fifo), "rating": 5, "score": 0.9}])
    code, lines = _apply(capsys, str(f))
    assert code == 3 and len(_skipped(lines, "not a regular file")) == 1
    assert not (tmp_path / "IMG_1.xmp").exists()


# --------------------------------------------------------------------------- 10, 11: scores


def test_apply_skips_a_score_too_large_for_a_float(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _photo(tmp_path / "a.jpg")
    b = _photo(tmp_path / "b.jpg")
    f = tmp_path / "d.json"
    huge = "9" * 401
    f.write_text(
        '{"format": "aescore-decisions", "version": 1, "model": "abc", "decisions": ['
        f'{{"path": {json.dumps(str(a))}, "rating": 5, "score": {huge}}}, '
        f'{{"path": {json.dumps(str(b))}, "rating": 4, "score": 0.8}}]}}',
        encoding="utf-8",
    )
    code, lines = _apply(capsys, str(f))
    assert code == 3
    refused = _skipped(lines, "entry 1")
    assert len(refused) == 1 and "score" in refused[0] and len(refused[0]) < 300
    assert not (tmp_path / "a.xmp").exists()
    assert (tmp_path / "b.xmp").is_file()


@pytest.mark.parametrize("score", [1e308, -7, 1.0001, -0.0001, 2])
def test_apply_skips_a_score_outside_0_to_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], score: float) -> None:
    a = _photo(tmp_path / "a.jpg")
    f = _write_decisions(tmp_path / "d.json", [{"path": str(a), "rating": 5, "score": score}])
    code, lines = _apply(capsys, str(f))
    assert code == 3
    refused = _skipped(lines, "entry 1")
    assert len(refused) == 1 and "from 0 to 1" in refused[0]
    assert not (tmp_path / "a.xmp").exists()


@pytest.mark.parametrize("score", [0, 1, 0.0, 1.0, 0.5])
def test_apply_accepts_scores_from_0_to_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], score: float) -> None:
    a = _photo(tmp_path / "a.jpg")
    f = _write_decisions(tmp_path / "d.json", [{"path": str(a), "rating": 5, "score": score}])
    code, lines = _apply(capsys, str(f))
    assert code == 0, lines
    assert f'aescore:Score="{float(score):.4f}"' in (tmp_path / "a.xmp").read_text(encoding="utf-8")
