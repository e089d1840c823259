"""Scoring under ONNX Runtime (issue 16): the exported program gives PyTorch's scores, faults and
embeddings within 1e-4; the runtime is chosen by the documented rules; a tampered or stale
program is refused; the CLI says so in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aescore import cull
from aescore import devices
from aescore.errors import ConfigError, MissingExtra, WeightsError
from aescore.inference import core, loading
from aescore.inference.onnx_runtime import Runtime, choose_runtime, onnx_unusable
from aescore.weights import default_weights_path, read_card

pytestmark = pytest.mark.usefixtures("shipped_models_only")

REPO = Path(__file__).resolve().parents[1]


def _photos(folder: Path) -> list[Path]:
    """Photos of the shapes that change the network's input: landscape, portrait, a panorama
    (cropped to the recipe's aspect), one smaller than a detail crop; JPEG and PNG."""
    rng = np.random.default_rng(5)
    out = []
    for i, (w, h) in enumerate([(640, 480), (300, 460), (1200, 300), (120, 90), (500, 500)]):
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        rgb = np.stack([np.sin(xx * (7 + i)), np.cos(yy * 5), xx * yy], -1) * 100 + 120 + rng.normal(0, 12, (h, w, 3))
        path = folder / (f"p{i}.jpg" if i % 2 == 0 else f"p{i}.png")
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
        out.append(path)
    return out


def _run(photos: list[Path], model: str | None, runtime: str, workers: int, checks: tuple[str, ...] = ()) -> cull.ScoreRun:
    settings = cull.Settings(model=model, device="cpu", workers=workers, use_cache=False, runtime=runtime)
    return cull.score_photos(photos, settings, checks, with_embeddings=True)


def _forbid_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the PyTorch model was loaded")

    monkeypatch.setattr(loading, "_open_torch", refuse)


def _assert_same(a: cull.ScoreRun, b: cull.ScoreRun, fields: tuple[str, ...] = ()) -> None:
    assert [p.path for p in a.photos] == [p.path for p in b.photos] and len(a.photos) > 0
    for x, y in zip(a.photos, b.photos):
        assert x.score == pytest.approx(y.score, abs=1e-4)
        assert np.abs(x.embedding - y.embedding).max() < 1e-4
        for f in fields:  # e.g. faults: kind -> probability, rounded to 4 places
            assert x.fields[f].keys() == y.fields[f].keys()
            assert x.fields[f] == pytest.approx(y.fields[f], abs=2e-4)


def test_default_model_scores_the_same_under_both_runtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = _photos(tmp_path)
    torch_run = _run(photos, None, "torch", workers=0, checks=("reasons", "regions"))
    _forbid_torch_load(monkeypatch)
    onnx_run = _run(photos, None, "onnx", workers=2, checks=("reasons", "regions"))  # decode processes
    _assert_same(onnx_run, torch_run, ("faults",))
    # The contact sheet's region map comes from the program too (issue 26), as PyTorch draws it.
    for x, y in zip(onnx_run.photos, torch_run.photos):
        a, b = np.asarray(x.fields["region_map"]), np.asarray(y.fields["region_map"])
        assert a.shape == b.shape and a.ndim == 2 and a.size > 1
        assert np.abs(a - b).max() <= 2e-3  # rounded to 3 places in the check's fields
    assert "torch" in sys.modules  # (this process imported it for the torch run; the CLI test checks a fresh one)


def test_export_of_models_without_a_program(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-view MPA model and a two-view faultnet, exported here: the card records the
    program, and its scores are PyTorch's."""
    pytest.importorskip("onnx")
    from aescore.inference.onnx_export import export_onnx

    from test_plain_models import _lite_faultnet_card

    photos = _photos(tmp_path)
    for weights in (tiny_weights, _lite_faultnet_card(tmp_path)):
        model = tmp_path / "m" / weights.name
        model.parent.mkdir(exist_ok=True)
        for suffix in (".safetensors", ".json"):
            shutil.copy(weights.with_suffix(suffix), model.with_suffix(suffix))
        assert onnx_unusable(model, read_card(model)) is not None
        before = _run(photos, str(model), "torch", workers=0)
        block = export_onnx(model, check_shapes=((64, 90), (96, 64)))
        card = read_card(model)
        assert card["onnx"] == block and block["weights_sha256"] == card["sha256"]
        assert model.with_suffix(".onnx").is_file() and onnx_unusable(model, card) is None
        with monkeypatch.context() as m:
            _forbid_torch_load(m)
            _assert_same(_run(photos, str(model), "onnx", workers=2), before)


def _copy_default(folder: Path) -> Path:
    src = Path(default_weights_path()).with_suffix(".safetensors")
    for suffix in (".safetensors", ".json", ".onnx"):
        shutil.copy(src.with_suffix(suffix), folder / src.with_suffix(suffix).name)
    return folder / src.name


def test_runtime_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _copy_default(tmp_path)
    card = read_card(weights)
    p = frozenset({"p_high", "embedding"})

    def choose(runtime: Runtime, device: str = "auto", want: frozenset[str] = p, tta: int | None = None, c: dict = card) -> Runtime:
        return choose_runtime(runtime, weights, c, device, want, tta)

    assert choose(Runtime.torch) is Runtime.torch
    assert choose(Runtime.auto) is Runtime.onnx and choose(Runtime.onnx) is Runtime.onnx
    # The program draws the region map (issue 26): the contact sheet stays under ONNX Runtime.
    assert choose(Runtime.auto, want=p | {"region_map"}) is Runtime.onnx
    # What ONNX Runtime cannot do goes to torch under auto, and is one clear error under onnx.
    for kwargs, phrase in (({"tta": 3}, "TTA"), ({"device": "cuda"}, "CPU only")):
        assert choose(Runtime.auto, **kwargs) is Runtime.torch
        with pytest.raises(ConfigError, match=phrase):
            choose(Runtime.onnx, **kwargs)
    # No photo count switches runtimes any more (choose_runtime is not told one): decoding runs in
    # processes under both.
    for device in ("auto", "cpu"):
        assert choose(Runtime.auto, device=device) is Runtime.onnx
        assert choose(Runtime.onnx, device=device) is Runtime.onnx
    # A program exported before region maps: PyTorch draws the map when it is installed, else the
    # map is left out; --runtime onnx says what is missing.
    old = {**card, "onnx": {**card["onnx"], "outputs": ["logits", "embedding", "faults"]}}
    assert choose(Runtime.auto, want=p | {"region_map"}, c=old) is Runtime.torch
    assert choose(Runtime.auto, c=old) is Runtime.onnx
    with pytest.raises(ConfigError, match="region map"):
        choose(Runtime.onnx, want=p | {"region_map"}, c=old)
    # A CUDA GPU that PyTorch can use is PyTorch's under auto (--device auto only).
    with monkeypatch.context() as m:
        m.setattr(devices, "cuda_usable", lambda: True)
        assert choose(Runtime.auto) is Runtime.torch
        assert choose(Runtime.auto, device="cpu") is Runtime.onnx
    # Without PyTorch (the light install): auto stays on ONNX Runtime, and what needs PyTorch is
    # refused in one line naming the setting and the pip command of the train extra.
    with monkeypatch.context() as m:
        m.setattr(devices, "torch_installed", lambda: False)
        assert choose(Runtime.auto) is Runtime.onnx
        assert choose(Runtime.auto, want=p | {"region_map"}, c=old) is Runtime.onnx
        for kwargs, setting in (({"runtime": Runtime.torch}, "runtime"), ({"tta": 2}, "tta_crops"),
                                ({"device": "cuda"}, "device"), ({"c": {k: v for k, v in card.items() if k != "onnx"}}, "model")):
            runtime = kwargs.pop("runtime", Runtime.auto)
            with pytest.raises(MissingExtra, match=r"needs PyTorch.*pip install 'aescore\[train\]'") as err:
                choose(runtime, **kwargs)  # type: ignore[arg-type]
            assert err.value.setting == setting and err.value.exit_code == 2
    # A card without a program, with a program of other weights, or a missing file.
    stale = {**card, "onnx": {**card["onnx"], "weights_sha256": "0" * 64}}
    for c, phrase in (({k: v for k, v in card.items() if k != "onnx"}, "no ONNX program"), (stale, "other weights")):
        assert choose(Runtime.auto, c=c) is Runtime.torch
        with pytest.raises(ConfigError, match=phrase):
            choose(Runtime.onnx, c=c)
    bad_name = {**card, "onnx": {**card["onnx"], "file": "../x.onnx"}}
    with pytest.raises(WeightsError, match="onnx.file"):
        choose(Runtime.auto, c=bad_name)
    weights.with_suffix(".onnx").unlink()
    assert "not found" in str(onnx_unusable(weights, card))


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "aescore.cli.main", *args], capture_output=True, text=True, env=env, timeout=180, check=False)


def test_cli_refuses_a_tampered_program_and_impossible_requests(tmp_path: Path) -> None:
    photo = _photos(tmp_path)[0]
    weights = _copy_default(tmp_path)
    data = bytearray(weights.with_suffix(".onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.with_suffix(".onnx").write_bytes(bytes(data))
    proc = _cli("score", str(photo), "--no-cache", "--model", str(weights), "--runtime", "onnx")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "sha256 mismatch" in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = _cli("score", str(photo), "--no-cache", "--runtime", "onnx", "--tta-crops", "2")
    assert proc.returncode == 2 and "TTA" in proc.stderr and "Traceback" not in proc.stderr


def test_process_decoding_keeps_order_and_reports_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = _photos(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:300])
    order = [photos[0], broken, *photos[1:]]
    _forbid_torch_load(monkeypatch)
    model = loading.open_model(default_weights_path(), "cpu", Runtime.onnx)
    results = list(core.infer(model, [core.Job(str(p)) for p in order], batch_size=2, workers=2, want=frozenset({"p_high"})))
    assert [r.path for r in results] == [str(p) for p in order]
    assert results[1].reason is not None and all(r.reason is None for i, r in enumerate(results) if i != 1)
    assert model.forward_calls >= 3  # batches of 2, equal shapes only
    alone = list(core.infer(model, [core.Job(str(photos[0]))], workers=0))
    assert alone[0].outputs["p_high"] == pytest.approx(results[0].outputs["p_high"], abs=1e-6)


def test_settings_refuse_an_unknown_runtime() -> None:
    with pytest.raises(ConfigError, match="runtime"):
        cull.Settings(runtime="tensorflow")  # type: ignore[arg-type]
    assert cull.Settings(runtime="onnx").runtime is Runtime.onnx  # type: ignore[arg-type]
    assert json.dumps(cull.Settings().runtime.value) == '"auto"'


def _die(index: int, job: object) -> None:
    import os

    os._exit(9)  # a decode worker killed mid-photo (the OOM killer, say)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers are forks (they see the patch) on Linux")
def test_a_killed_decode_worker_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aescore.errors import AescoreError

    photos = _photos(tmp_path)
    model = loading.open_model(default_weights_path(), "cpu", Runtime.onnx)
    monkeypatch.setattr(core, "_decode_one", _die)
    with pytest.raises(AescoreError, match="decoding process ended unexpectedly"):
        list(core.infer(model, [core.Job(str(p)) for p in photos], batch_size=2, workers=2))


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), ("", None), ("0", None), ("two", None)])
def test_the_session_takes_as_many_threads_as_omp_num_threads_says(
    value: str, expected: int | None, monkeypatch: pytest.MonkeyPatch, shipped_models_only: None
) -> None:
    """Several workers on one machine (Ray sets OMP_NUM_THREADS per worker) must not each start a
    thread per core of the machine; an unset or unusable value means this process's cores."""
    from aescore.inference.loading import find_model
    from aescore.inference.onnx_runtime import load_onnx_model
    from aescore.sysinfo import usable_cores

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    ref = find_model(None)
    model = load_onnx_model(ref.path, ref.card)
    assert model.session.get_session_options().intra_op_num_threads == (expected or usable_cores())
