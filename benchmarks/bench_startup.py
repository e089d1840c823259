"""Benchmark 5: start-up — ``aescore --help`` and the time to score a single photo (issue 16).

* ``aescore --help`` wall time as a subprocess (median of ``--repeats``, default 5, after one
  warm-up run). Goal: < 0.5 s. Reference points: a bare ``python -c pass`` and ``import torch``.
* Import hygiene: in a fresh interpreter, ``import aescore.cli.main`` and assemble the app
  (``get_app()``, which imports every command module); ``torch``, ``timm``, ``numpy`` and
  ``torchvision`` must not be in ``sys.modules`` afterwards. The slowest imports (from
  ``python -X importtime``) are listed to show where the start-up time goes.
* Time to first score: ``aescore score one.jpg --no-cache --model W`` (a generated 12 MP JPEG,
  the default model, files in the OS cache) as a subprocess, end to end, median of
  ``--score-repeats`` (default 5) after one warm-up run. Goal: < 2 s on 2 cores. Also the very
  first run on a machine (the sha256 not yet remembered: one hash of the file more), and the same
  command with ``--runtime torch``, alternating.
* The same command with a **personal model** (``--model`` a head-only model as ``aescore learn``
  saves one: a head over the default's 1,280 embedding values, its generic score and its 10 fault
  probabilities, random weights: the same computation as learned ones), alternating with the
  runs above: under ONNX Runtime with the head in NumPy. Goal: < 1 s on 2 cores (issue 25).
* The same command **before the change**: with ``--baseline-ref REF`` (e.g. ``20a1ad3``, the
  commit before issue 16) the script exports that commit with ``git archive`` into the work
  folder and runs the identical command with ``PYTHONPATH`` pointing there, alternating with
  this checkout's runs (so both see the same machine load).
* Where the time goes, per stage, in a fresh interpreter per run (median of the runs): interpreter
  start, imports, weights read and verified, model built (BatchNorm folding included), first batch
  (decode, resize, one forward pass), exit. Three ways: ``onnx`` (the default: the exported ONNX
  program under ONNX Runtime, torch never imported), ``torch`` (``--runtime torch``: plain-torch
  model, remembered sha256, fast exit) and ``old_way`` (the same code forced down the previous
  path: ``load_weights(plain=False)``, i.e. the network built through timm, the sha256 computed
  every run, and Python's normal interpreter shutdown).

Usage: python benchmarks/bench_startup.py [--repeats 5] [--score-repeats 5] [--baseline-ref REF] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    REPO,
    bench_weights,
    check_ok,
    default_workdir,
    emit,
    log,
    machine_info,
    run_timed,
    synthetic_photo,
    write_jpeg,
)

HEAVY = ("torch", "timm", "numpy", "torchvision")
_IMPORT_PROBE = (
    "import json, sys; import aescore.cli.main as m; m.get_app(); "
    f"print(json.dumps({{k: k in sys.modules for k in {HEAVY!r}}}))"
)


# One first score, stage by stage, in a fresh interpreter: argv = way (onnx|torch|old_way), weights,
# photo. Prints absolute time.time() stamps; the parent adds its own launch and end times
# (interpreter start-up before t0, exit after t4).
_BREAKDOWN = """
import time
t0 = time.time()
import json, sys
way, weights, photo = sys.argv[1:4]
from aescore.sysinfo import fast_exit, prefer_passive_openmp
prefer_passive_openmp()
import aescore.weights as w
from aescore.data.transforms import Preprocess
from aescore.inference.core import DecodeDataset, Job, LoadedModel, RecipeInput, stack_inputs
if way == "onnx":
    import onnxruntime
    import aescore.inference.onnx_runtime as o
else:
    import torch
    from aescore.inference.fold import prepare_for_inference
t1 = time.time()
built = [0.0]
card = w.read_card(weights)
if way == "onnx":
    path = o._program_path(w.resolve_model(weights), card)
    w.read_verified(path, card["onnx"]["sha256"])  # what load_onnx_model reads (then remembered)
    t2 = time.time()
    model = o.load_onnx_model(w.resolve_model(weights), card)  # the session (the file read again, remembered)
    t3 = time.time()
else:
    import aescore.weights.files as wf  # where load_weights builds the network
    for name in ("_build_plain", "_build_registered"):
        def timed(*a, _real=getattr(wf, name), **k):
            start = time.time()
            out = _real(*a, **k)
            built[0] += time.time() - start
            return out
        setattr(wf, name, timed)
    module, card = w.load_weights(weights, plain=(way == "torch"))
    t2 = time.time()
    model = LoadedModel(prepare_for_inference(module, "cpu"), Preprocess.from_card(card["preprocess"]), "cpu", card)
    t3 = time.time()
recipe = Preprocess.from_card(card["preprocess"])
x = DecodeDataset([Job(photo)], RecipeInput(recipe, None, arrays=(way == "onnx")), recipe.decode_size())[0][1]
if way == "onnx":
    score = float(model.forward(stack_inputs([x]), frozenset({"p_high"}))["p_high"][0])
else:
    with torch.inference_mode():  # the core's forward: one view or the detail views alike
        score = float(model.forward(stack_inputs([x]), frozenset({"p_high"}))["p_high"][0])
t4 = time.time()
print(json.dumps({"t0": t0, "t1": t1, "t2": t2, "t3": t3, "t4": t4, "built": built[0],
                  "score": score, "model": type(getattr(model, "module", model)).__name__,
                  "timm": "timm" in sys.modules, "torch": "torch" in sys.modules}), flush=True)
if way != "old_way":
    fast_exit(0)
"""

STAGES = ("interpreter", "imports", "weights_read_and_verified", "model_built", "first_batch", "exit")


def breakdown_once(way: str, weights: Path, photo: Path, env: dict[str, str]) -> dict[str, Any]:
    """Seconds per stage of one first score in a fresh interpreter (see :data:`_BREAKDOWN`)."""
    launch = time.time()
    proc = subprocess.run([sys.executable, "-c", _BREAKDOWN, way, str(weights), str(photo)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, check=False)
    end = time.time()
    check_ok(proc, f"first-score breakdown ({way})")
    t = json.loads(proc.stdout.strip().splitlines()[-1])
    stages = {
        "interpreter": t["t0"] - launch,
        "imports": t["t1"] - t["t0"],
        "weights_read_and_verified": (t["t2"] - t["t1"]) - t["built"],
        "model_built": t["built"] + (t["t3"] - t["t2"]),
        "first_batch": t["t4"] - t["t3"],
        "exit": end - t["t4"],
    }
    return {"stages": stages, "total": end - launch, "score": t["score"], "model": t["model"], "timm_imported": t["timm"],
            "torch_imported": t["torch"]}


def first_score_breakdown(weights: Path, photo: Path, env: dict[str, str], runs: int, workdir: Path) -> dict[str, Any]:
    """Median seconds per stage, alternating runs: ``onnx`` (the default path: ONNX Runtime, no
    torch), ``torch`` (``--runtime torch``: plain-torch network, remembered sha256, fast exit) and
    the ``old_way`` (through timm, sha256 computed every run, normal interpreter shutdown)."""
    ways = ("onnx", "torch", "old_way")
    samples: dict[str, list[dict[str, Any]]] = {way: [] for way in ways}
    for way in ways[:2]:
        breakdown_once(way, weights, photo, env)  # warm-up: OS file cache; remembers the sha256
    for i in range(runs):
        for way in ways:
            run_env = env
            if way == "old_way":  # a cache folder of its own, empty every run: the sha256 is computed each time
                fresh = workdir / "old-way-cache"
                shutil.rmtree(fresh, ignore_errors=True)
                run_env = dict(env, XDG_CACHE_HOME=str(fresh))
            samples[way].append(breakdown_once(way, weights, photo, run_env))
    out: dict[str, Any] = {}
    for way, runs_ in samples.items():
        med = {k: round(statistics.median(r["stages"][k] for r in runs_), 3) for k in STAGES}
        out[way] = {
            "stages_s": med,
            "total_s": round(statistics.median(r["total"] for r in runs_), 3),
            "model_class": runs_[0]["model"],
            "timm_imported": runs_[0]["timm_imported"],
            "torch_imported": runs_[0]["torch_imported"],
            "score": runs_[0]["score"],
        }
    out["score_difference"] = max(abs(out[a]["score"] - out["old_way"]["score"]) for a in ways[:2])
    return out


def export_baseline(ref: str, workdir: Path) -> Path | None:
    """``git archive REF`` of this repository unpacked under ``workdir`` (reused); None when git cannot."""
    target = workdir / f"baseline-{ref}"
    if (target / "aescore" / "__init__.py").is_file():
        return target
    proc = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        log(f"baseline {ref}: git archive failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
        return None
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


def _check_runs_from(root: Path, env: dict[str, str]) -> None:
    """Fail unless ``env`` makes a child Python import ``aescore`` from ``root``."""
    proc = subprocess.run([sys.executable, "-c", "import aescore; print(aescore.__file__)"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    check_ok(proc, "aescore location probe")
    found = Path(proc.stdout.strip()).resolve()
    if found.parent.parent != root.resolve():
        raise RuntimeError(f"a child imports aescore from {found}, expected it under {root}")


def cli_argv() -> list[str]:
    """The CLI as its console script runs it (``main()`` with the process's own argv), for whichever
    checkout ``PYTHONPATH`` names."""
    return [sys.executable, "-c", "from aescore.cli.main import main; main()"]


def median_wall(argv: Sequence[str], repeats: int, env: dict[str, str] | None = None, warmup: int = 1) -> dict[str, Any]:
    """Median wall time of running ``argv`` ``repeats`` times (after ``warmup`` untimed runs)."""
    for _ in range(warmup):
        run_timed(argv, env=env)
    times = []
    for _ in range(repeats):
        wall, proc = run_timed(argv, env=env)
        check_ok(proc, " ".join(argv[-3:]))
        times.append(wall)
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "runs_s": [round(t, 4) for t in times]}


def slowest_imports(top: int = 8, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The ``top`` imports (any depth) with the largest cumulative time when assembling the CLI
    (``python -X importtime``); a parent's figure includes its children's."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import aescore.cli.main as m; m.get_app()"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        # "import time:   self_us |   cumulative_us |   <indent>module"
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        rows.append((int(parts[1]), int(parts[0].split(":")[1]), name.strip()))
    # largest cumulative time first, skipping the interpreter's own start-up modules
    rows = [r for r in rows if r[2] not in ("site", "encodings") and not r[2].startswith("_")]
    return [{"module": name, "cumulative_ms": round(cum / 1000, 1), "self_ms": round(own / 1000, 1)}
            for cum, own, name in sorted(rows, reverse=True)[:top]]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=None, help="runs of `aescore --help` (default 5; 2 with --quick)")
    ap.add_argument("--score-repeats", type=int, default=None, help="runs of `aescore score one.jpg` and of each breakdown (default 5; 1 with --quick)")
    ap.add_argument("--baseline-ref", default=None, metavar="REF", help="also time the same command at this git commit (e.g. 20a1ad3)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the test photo and weights are kept")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, a small photo: a smoke test")
    args = ap.parse_args(argv)
    machine = machine_info()  # at the start: its load average shows how busy the machine was
    repeats = args.repeats or (2 if args.quick else 5)
    score_repeats = args.score_repeats or (1 if args.quick else 5)
    workdir = args.workdir or default_workdir("startup-quick" if args.quick else "startup")
    workdir.mkdir(parents=True, exist_ok=True)
    # The user's own cache and config stay out of it: a private cache (verified sha256) and no
    # chosen default model.
    # PYTHONSAFEPATH: no current folder in front of PYTHONPATH, which alone says whose aescore runs
    # (this checkout's or the baseline's), wherever the script is started from.
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "xdg-cache"), XDG_CONFIG_HOME=str(workdir / "xdg-config"),
               PYTHONPATH=str(REPO), PYTHONSAFEPATH="1")

    log("aescore --help")
    warmup = 0 if args.quick else 1
    help_t = median_wall([*cli_argv(), "--help"], repeats, env, warmup)
    python_t = median_wall([sys.executable, "-c", "pass"], repeats, env, warmup)
    torch_t = median_wall([sys.executable, "-c", "import torch"], 1 if args.quick else 3, env, warmup)

    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, check=False)
    check_ok(proc, "import probe")
    heavy_loaded = json.loads(proc.stdout.strip().splitlines()[-1])

    photo = workdir / "one.jpg"
    if not photo.is_file():
        w, h = (640, 480) if args.quick else (4000, 3000)
        write_jpeg(synthetic_photo(w, h, seed=7), photo, orientation=6)
    weights, weights_kind = bench_weights(workdir)
    score_args = ["score", str(photo), "--no-cache", "--model", str(weights)]

    log("aescore score one.jpg: first run on this machine (sha256 not yet remembered)")
    verified = workdir / "xdg-cache" / "aescore" / "verified.json"
    verified.unlink(missing_ok=True)
    first_ever, proc = run_timed([*cli_argv(), *score_args], env=env)
    check_ok(proc, "aescore score (first run)")

    baseline_root = export_baseline(args.baseline_ref, workdir) if args.baseline_ref else None
    baseline_env = dict(env, PYTHONPATH=str(baseline_root)) if baseline_root else None
    if baseline_env:
        _check_runs_from(baseline_root, baseline_env)
        _check_runs_from(REPO, env)
    log("aescore score one.jpg" + (f", alternating with {args.baseline_ref}" if baseline_env else ""))
    for _ in range(warmup):
        run_timed([*cli_argv(), *score_args], env=env)
        if baseline_env:
            run_timed([*cli_argv(), *score_args], env=baseline_env)
    personal = personal_head_model(weights, photo, workdir)
    personal_args = ["score", str(photo), "--no-cache", "--model", str(personal)]
    run_timed([*cli_argv(), *personal_args], env=env)  # warm-up: remembers the head's sha256
    new_times, old_times, torch_times, personal_times = [], [], [], []
    for _ in range(score_repeats):
        wall, proc = run_timed([*cli_argv(), *score_args], env=env)
        check_ok(proc, "aescore score")
        new_times.append(wall)
        wall, proc = run_timed([*cli_argv(), *personal_args], env=env)
        check_ok(proc, "aescore score --model PERSONAL")
        personal_times.append(wall)
        wall, proc = run_timed([*cli_argv(), *score_args, "--runtime", "torch"], env=env)
        check_ok(proc, "aescore score --runtime torch")
        torch_times.append(wall)
        if baseline_env:
            wall, proc = run_timed([*cli_argv(), *score_args], env=baseline_env)
            check_ok(proc, f"aescore score at {args.baseline_ref}")
            old_times.append(wall)
    score_t = _summary(new_times)

    log("breakdown per stage")
    breakdown = first_score_breakdown(weights, photo, env, score_repeats, workdir)

    baseline: dict[str, Any] | None = None
    if baseline_env:
        old = _summary(old_times)
        baseline = {"ref": args.baseline_ref, "how": "git archive REF, same command with PYTHONPATH there, runs alternating",
                    "first_score_s": old, "speedup": round(old["median_s"] / score_t["median_s"], 2)}
    result = {
        "benchmark": "startup",
        "quick": args.quick,
        "machine": machine,
        "help_s": help_t,
        "python_bare_s": python_t,
        "import_torch_s": torch_t,
        "heavy_modules_after_cli_import": heavy_loaded,
        "torch_imported_by_cli": heavy_loaded.get("torch", None),
        "slowest_cli_imports": slowest_imports(12, env),
        "first_score_s": score_t,
        "first_score_runtime_torch_s": _summary(torch_times),
        "first_score_personal_s": _summary(personal_times),
        "first_score_first_run_s": round(first_ever, 4),
        "baseline": baseline,
        "breakdown": breakdown,
        "first_score_setup": {"photo": "12 MP JPEG, EXIF Orientation 6" if not args.quick else "640x480 JPEG",
                              "weights": weights_kind, "flags": "--no-cache"},
        "goals": {"help_s": "< 0.5", "torch_imported_by_cli": "false", "first_score_s": "< 2.0", "first_score_personal_s": "< 1.0"},
        "goals_met": {"help_s": help_t["median_s"] < 0.5, "torch_imported_by_cli": not heavy_loaded.get("torch", True),
                      "first_score_s": score_t["median_s"] < 2.0,
                      "first_score_personal_s": statistics.median(personal_times) < 1.0},
    }
    return emit(result)


def personal_head_model(weights: Path, photo: Path, workdir: Path) -> Path:
    """A head-only personal model on ``weights`` (:func:`aescore.weights.save_head`, as ``aescore
    learn`` writes one), with random weights over every output the base gives (its embedding, its
    generic score and, for a base with a reasons head, its fault probabilities); its card path."""
    import numpy as np

    from aescore.learn.features import embed_photos
    from aescore.models.personal_head import PersonalHead
    from aescore.weights import read_card, save_head

    card_path = workdir / "personal-head.json"
    base_card = read_card(weights)
    if card_path.is_file() and read_card(card_path)["head_only"]["base_sha256"] == base_card["sha256"]:
        return card_path
    emb = embed_photos([str(photo)], str(weights), use_cache=False, device="cpu")
    d, n_faults = emb.embeddings.shape[1], 0 if emb.faults is None else emb.faults.shape[1]
    rng = np.random.default_rng(0)
    head = PersonalHead(rng.normal(size=d), rng.random(d) + 0.5, rng.normal(size=d) * 0.05, 0.7, 0.0, 2.0,
                        rng.normal(size=n_faults), rng.normal(size=n_faults), rng.random(n_faults) + 0.5)
    save_head(head, card_path.with_suffix(".safetensors"), {"name": "bench-personal-head"}, base_card=base_card,
              base_name=str(base_card.get("name") or Path(weights).stem), base_path=weights)
    return card_path


def _summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "runs_s": [round(t, 4) for t in times]}


if __name__ == "__main__":
    main()
