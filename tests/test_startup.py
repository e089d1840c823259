"""Start-up (issue 16): the weights' sha256 verified once and remembered, the torchvision-free
``pil_to_tensor``, and the fast exit of score/rank losing nothing (cache rows, sidecars, stdout)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import aescore.weights as w
from aescore.errors import WeightsError

REPO = Path(__file__).resolve().parents[1]


# Own XDG folders come from conftest.py for every test.
pytestmark = pytest.mark.usefixtures("shipped_models_only")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A small model (plain-covered MPA on resnet10t) saved with its card."""
    from aescore.models.plain import PlainMPANet

    torch.manual_seed(0)
    model = PlainMPANet("resnet10t")  # real tensors: built outside the meta device
    model.arch_name, model.arch_args = "mpa_resnet18", {"backbone": "resnet10t"}
    path = tmp_path / "m" / "tiny.safetensors"
    pp = {**model.default_preprocess, "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5}}
    w.save_weights(model.eval(), path, {"name": "tiny", "preprocess": pp})
    return path


class _CountingSha:
    """Counts sha256 computations made by aescore.weights."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = hashlib.sha256

        def counting(*args: Any) -> Any:
            self.calls += 1
            return real(*args)

        monkeypatch.setattr(hashlib, "sha256", counting)


def test_sha256_is_verified_once_and_remembered(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = _CountingSha(monkeypatch)
    w.load_weights(tiny)
    assert sha.calls == 1
    remembered = json.loads(w.verified_cache_path().read_text())["files"][str(tiny.resolve())]
    assert remembered["sha256"] == w.read_card(tiny)["sha256"] and remembered["size"] == tiny.stat().st_size
    w.load_weights(tiny)
    w.load_weights(tiny.with_suffix(".json"))
    assert sha.calls == 1  # not hashed again
    # touched (mtime changed): hashed again, still fine
    st = tiny.stat()
    os.utime(tiny, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    w.load_weights(tiny)
    assert sha.calls == 2
    w.load_weights(tiny)
    assert sha.calls == 2


def test_changed_file_with_its_old_size_and_mtime_is_still_caught(tiny: Path) -> None:
    w.load_weights(tiny)  # verified and remembered
    st = tiny.stat()
    data = bytearray(tiny.read_bytes())
    data[-5] ^= 0x01  # one bit of a tensor
    tiny.write_bytes(bytes(data))
    os.utime(tiny, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, mtime set back
    assert tiny.stat().st_size == st.st_size and tiny.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        w.load_weights(tiny)  # the change of ctime forces a new hash


def test_damaged_or_foreign_memory_means_hashing_again(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = _CountingSha(monkeypatch)
    w.load_weights(tiny)
    cache = w.verified_cache_path()
    cache.write_text("{not json")
    w.load_weights(tiny)
    assert sha.calls == 2 and json.loads(cache.read_text())["format"] == "aescore.verified/1"  # rewritten
    cache.unlink()
    cache.mkdir()  # not a regular file: ignored, and the load still works
    w.load_weights(tiny)
    assert sha.calls == 3


def test_weights_with_nan_are_refused(tmp_path: Path) -> None:
    from aescore.models.plain import PlainMPANet

    model = PlainMPANet("resnet10t").eval()
    model.arch_name, model.arch_args = "mpa_resnet18", {"backbone": "resnet10t"}
    with torch.no_grad():
        model.head.bias[1] = float("nan")
    w.save_weights(model, tmp_path / "nan.safetensors")
    with pytest.raises(WeightsError, match=r"NaN or infinite values \(e.g. head.bias\)"):
        w.load_weights(tmp_path / "nan.safetensors")
    assert not w.verified_cache_path().exists()  # a refused file is never remembered as verified


def test_non_finite_scores_are_a_domain_error() -> None:
    from aescore.tensorutil import ensure_finite_scores

    ensure_finite_scores(torch.tensor([0.0, 0.5, 1.0]))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(WeightsError, match="non-finite score"):
            ensure_finite_scores(torch.tensor([0.5, bad]), "model x")


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16", "1", "CMYK"])
def test_pil_to_tensor_equals_torchvision(mode: str) -> None:
    from torchvision.transforms.functional import pil_to_tensor as reference

    from aescore.tensorutil import pil_to_tensor

    g = torch.Generator().manual_seed(0)
    img = Image.fromarray(torch.randint(0, 256, (7, 5, 3), generator=g, dtype=torch.uint8).numpy()).convert(mode)
    ours, theirs = pil_to_tensor(img), reference(img)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.stride() == theirs.stride()
    assert torch.equal(ours, theirs)


# --------------------------------------------------------------------------- fast exit


def _folder(root: Path, n: int = 5) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / f"img_{i}.jpg"
        Image.new("RGB", (96 + 8 * i, 64), (40 * i, 120, 200 - 30 * i)).save(p, quality=90)
        paths.append(p)
    return paths


_ENTRY = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('ATEXIT-RAN', file=sys.stderr, flush=True))\n"
    "from aescore.cli.main import main\n"
    "main()\n"
)


def _run_cli(args: list[str], tmp_path: Path, **kw: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}
    return subprocess.Popen([sys.executable, "-c", _ENTRY, *args], env=env, **kw)


def _check_everything_written(tmp_path: Path, photos: list[Path]) -> None:
    with sqlite3.connect(tmp_path / "xdg-cache" / "aescore" / "scores.sqlite") as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM scores").fetchone()
    assert rows == len(photos)
    import xml.etree.ElementTree as ET

    for p in photos:
        sidecar = p.with_suffix(".xmp")
        assert sidecar.is_file()
        ET.fromstring(sidecar.read_bytes())  # complete XML
        assert b"aescore" in sidecar.read_bytes()
    assert not list(photos[0].parent.glob(".*.tmp"))


def test_fast_exit_loses_nothing(tmp_path: Path, tiny: Path) -> None:
    photos = _folder(tmp_path / "lib")
    proc = _run_cli(["rank", str(photos[0].parent), "--write-xmp", "--jsonl", "--workers", "0", "-m", str(tiny)], tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"ATEXIT-RAN" not in err  # the process really ended through os._exit
    lines = out.decode().splitlines()
    assert len(lines) == len(photos) and all(json.loads(line)["path"] for line in lines)
    assert "5 scored (0 cached, 5 computed)" in err.decode() and "5 sidecar(s) written" in err.decode()
    _check_everything_written(tmp_path, photos)


def test_fast_exit_with_a_reader_that_has_gone(tmp_path: Path, tiny: Path) -> None:
    """`aescore rank DIR --write-xmp | head -1`: stdout's reader leaves; cache and sidecars still complete."""
    photos = _folder(tmp_path / "lib")
    proc = _run_cli(["rank", str(photos[0].parent), "--write-xmp", "--workers", "0", "-m", str(tiny)], tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # gone before anything is printed: the write meets a broken pipe
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "Exception ignored" not in text and "ATEXIT-RAN" not in text
    assert "5 sidecar(s) written" in text
    _check_everything_written(tmp_path, photos)

    # and through a real shell pipeline
    again = tmp_path / "again"
    photos = _folder(again / "lib")
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(again / "xdg-cache")}
    shell = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$0" -c "$1" rank "$2" --write-xmp --workers 0 -m "$3" | head -1',
         sys.executable, _ENTRY, str(photos[0].parent), str(tiny)],
        capture_output=True, env=env, timeout=120, check=False,
    )
    assert shell.returncode == 0, shell.stderr.decode()
    assert len(shell.stdout.decode().splitlines()) == 1 and "ATEXIT-RAN" not in shell.stderr.decode()
    _check_everything_written(again, photos)
