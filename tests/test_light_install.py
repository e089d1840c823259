"""The light install (issue 26): every culling command works where PyTorch, torchvision and timm
cannot be imported, and what needs them says so in one line with the pip command (exit 2).

Each test runs the real CLI in a subprocess whose interpreter refuses the training stack
(:func:`helpers.run_torch_free`), as ``pip install aescore`` leaves it; a command that reached for
torch there would end in an internal error, not in exit status 0. ``.ci/check-light`` (run by
``make test``) checks the same with a real wheel in a clean virtual environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_torch_free, torch_free_env

pytestmark = pytest.mark.usefixtures("shipped_models_only")

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _env() -> dict[str, str]:
    """This test's XDG folders (set by conftest's autouse fixture), without $AESCORE_WEIGHTS_DIR."""
    return {k: v for k, v in os.environ.items() if k not in ("AESCORE_WEIGHTS_DIR", "AESCORE_DEBUG")}


def _samples(folder: Path, n: int = 6) -> Path:
    """A copy of ``n`` bundled sample photos (sidecars are written beside them)."""
    folder.mkdir(parents=True)
    for src in sorted(SAMPLES.glob("*.jpg"))[:n]:
        shutil.copy(src, folder / src.name)
    return folder


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return proc


def test_culling_commands_run_without_torch(tmp_path: Path) -> None:
    env, blocker = _env(), tmp_path / "no-torch"
    photos = _samples(tmp_path / "shoot")
    # rank with the checks a cull uses: reasons, faces, stars, sidecars (decode processes: more
    # photos than one batch).
    proc = _ok(run_torch_free(["rank", str(photos), "--reasons", "--check", "faces", "--stars", "--write-xmp", "--jsonl"],
                              blocker, env=env))
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 6 and all(0.0 <= r["score"] <= 1.0 and r["top_fault"] and "faces" in r and r["stars"] for r in rows)
    assert len(list(photos.glob("*.xmp"))) == 6
    # score, input order
    first = sorted(photos.glob("*.jpg"))[:2]
    proc = _ok(run_torch_free(["score", *map(str, first), "--no-cache", "--jsonl"], blocker, env=env))
    assert [json.loads(line)["path"] for line in proc.stdout.splitlines()] == [str(p) for p in first]
    # report: the region maps come from the ONNX program (nothing decoded twice: the first rank's
    # pass cached score and reasons; the thumbnails need one decode).
    page = tmp_path / "cull.html"
    proc = _ok(run_torch_free(["report", str(photos), "-o", str(page)], blocker, env=env))
    assert page.is_file() and '"map":{"h":' in page.read_text(encoding="utf-8")
    # apply the page's decisions
    decisions = tmp_path / "decisions.json"
    decisions.write_text(json.dumps({"format": "aescore-decisions", "version": 1, "model": "abc",
                                     "decisions": [{"path": str(first[0]), "rating": 5, "pick": False, "score": 0.5}]}))
    proc = _ok(run_torch_free(["apply", str(decisions)], blocker, env=env))
    assert 'xmp:Rating="5"' in first[0].with_suffix(".xmp").read_text(encoding="utf-8")
    # models and the cache
    proc = _ok(run_torch_free(["models"], blocker, env=env))
    assert "aescore-technical-lite0" in proc.stdout
    info = json.loads(_ok(run_torch_free(["cache", "info", "--json"], blocker, env=env)).stdout)
    assert info["rows"] >= 6
    # building a training set from good photos needs no PyTorch either
    _ok(run_torch_free(["data", "degrade", str(photos), str(tmp_path / "set")], blocker, env=env))
    assert (tmp_path / "set" / "train.csv").is_file()


@pytest.mark.parametrize("args, named", [
    (["train", "--dataset", "ava", "--root", "AVA", "--output", "run"], "`aescore train`"),
    (["evaluate", "--dataset", "ava", "--root", "AVA", "--weights", "w.safetensors"], "`aescore evaluate`"),
    (["score", "PHOTO", "--runtime", "torch"], "--runtime torch"),
    (["score", "PHOTO", "--tta-crops", "3"], "--tta-crops"),
    (["score", "PHOTO", "--device", "cuda"], "--device cuda"),
    (["score", "PHOTO", "--model", "aescore-technical-r18"], "--model aescore-technical-r18 has no ONNX program"),
], ids=["train", "evaluate", "runtime-torch", "tta", "cuda", "model-without-program"])
def test_what_needs_torch_says_so_in_one_line(tmp_path: Path, args: list[str], named: str) -> None:
    photo = tmp_path / "a.jpg"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(photo)
    args = [str(photo) if a == "PHOTO" else a for a in args]
    proc = run_torch_free([*args, "--no-cache"] if args[0] == "score" else args, tmp_path / "no-torch", env=_env(), cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "" and len(lines) == 1, proc.stderr
    assert lines[0].startswith("aescore: error: ") and named in lines[0]
    assert "needs PyTorch" in lines[0] and lines[0].endswith("pip install 'aescore[train]'")


def test_the_runtime_choice_never_imports_torch_where_there_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--runtime auto asks whether PyTorch is installed and whether a CUDA GPU is there without
    importing torch (3 s on 2 cores); in the light install both answers are no and auto is ONNX."""
    code = ("import sys; from aescore import devices; from aescore.inference.loading import find_model; "
            "from aescore.inference.onnx_runtime import Runtime, choose_runtime; ref = find_model(None); "
            "print(devices.torch_installed(), devices.cuda_usable(), "
            "choose_runtime(Runtime.auto, ref.path, ref.card, 'auto', frozenset({'p_high', 'region_map'}), None).value, "
            "'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], env=torch_free_env(tmp_path / "no-torch", _env()),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "onnx", "False"]
    # A GPU hidden from CUDA is no GPU (and no reason to import torch).
    from aescore import devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.cuda_gpu_likely() is False and devices.cuda_usable() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process groups from /proc")
def test_ctrl_c_stops_the_decode_processes_and_keeps_what_was_scored(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group: the decode workers ignore it, the run
    stops with status 130 and one line, the photos scored so far are cached, and no process of
    the run is left behind."""
    folder = tmp_path / "many"
    folder.mkdir()
    base = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    n = 240
    for i in range(n):
        Image.fromarray(np.roll(base, i * 7, axis=1)).save(folder / f"{i:03d}.jpg", quality=90)
    env = torch_free_env(tmp_path / "no-torch", _env())
    db = Path(env["XDG_CACHE_HOME"]) / "aescore" / "scores.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "aescore", "rank", str(folder), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # as from a terminal, even where this test runs in a background job (which ignores SIGINT)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # Interrupt once the first rows reached the cache (written every 64 photos): mid-run.
        deadline = time.monotonic() + 120
        while _rows(db) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = _rows(db)
        assert proc.poll() is None and seen > 0, "the run ended (or never wrote) before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "aescore: interrupted" and "Traceback" not in err, err
    assert seen <= _rows(db) < n  # what was scored before Ctrl-C is cached; the run was cut short
    time.sleep(0.5)  # the fork server notices its parent has gone
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _alive_in_group(int(pid), proc.pid)]
    assert left == [], f"processes of the run still alive: {left}"


def _rows(db: Path) -> int:
    """Score rows in the cache at ``db`` (0 while it does not exist yet)."""
    import sqlite3

    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
    except sqlite3.OperationalError:  # the table not created yet
        return 0


def _alive_in_group(pid: int, group: int) -> bool:
    """Whether ``pid`` is a running process (not a zombie waiting to be reaped) of process group ``group``."""
    try:
        if os.getpgid(pid) != group:
            return False
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # gone meanwhile
        return False
    return state not in ("Z", "X")
