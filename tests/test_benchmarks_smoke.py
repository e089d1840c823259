"""Smoke tests of the benchmark scripts: each ``main(["--quick", ...])`` runs at a trivial size and
prints one JSON object with the keys docs/performance.md quotes. No timing assertions: these
machines are shared and noisy; the figures themselves are produced by ``make bench``."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every benchmark of this module, so the untrained weights are built once."""
    return tmp_path_factory.mktemp("bench")


def run_bench(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Import ``benchmarks/<name>.py``, run its ``main(argv)``; return the JSON it printed."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    module = importlib.import_module(name)
    capsys.readouterr()
    returned = module.main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(returned, default=str))  # stdout carries exactly the result
    assert printed["quick"] is True
    for key in ("cpu_model", "usable_cores", "torch", "torch_threads"):
        assert key in printed["machine"]
    # docs/performance.md's tables are rendered from these results by benchmarks/report.py
    report = importlib.import_module("report")
    table = report.RENDER[printed["benchmark"]](printed)
    assert "\n|---|" in table
    return printed


def test_bench_rank(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("bench_rank", ["--quick", "--workdir", str(workdir), "--also-runtime", "torch"], capsys)
    ips = out["images_per_s"]
    for key in ("a_rank_scorer", "a_rank_cli_end_to_end", "b_naive", "b_naive_script_end_to_end", "c_decode_all_cores", "d_network_only"):
        assert ips[key] > 0
    assert out["bound_images_per_s"] == pytest.approx(1 / (1 / ips["c_decode_all_cores"] + 1 / ips["d_network_only"]), rel=0.01)
    assert out["efficiency_a_over_bound"] > 0 and out["ratio_a_over_naive"] > 0
    assert "1/decode_all_cores + 1/network_only" in out["bound_formula"]
    assert out["setup"]["images"] == 4 and out["setup"]["progressive"] == 1
    assert out["setup"]["runtime_a"] == "auto" and out["ratio_cli_over_naive_script_end_to_end"] > 0
    # auto ran ONNX Runtime without importing torch; PyTorch's path was timed in the same rounds
    assert out["setup"]["runtime_a_ran"] == "onnx" and out["setup"]["torch_imported_a"] is False
    also = out["also"]
    assert also["runtime_ran"] == "torch" and also["torch_imported"] is True
    assert also["a_rank_scorer"] > 0 and also["a_rank_cli_end_to_end"] > 0 and also["ratio_runtime_a_over_also"] > 0
    import report

    table = report.render_rank(out)
    assert "(a) the same — torch" in table and "(a) onnx / (a) torch" in table


def test_bench_warm_cache(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("bench_warm_cache", ["--quick", "--workdir", str(workdir)], capsys)
    assert out["setup"]["rows_populated"] == out["setup"]["files"] == 200
    assert "200 cached, 0 computed" in out["cli_summary"]  # the timed run really was all cache hits
    assert out["rank_all_cached_s"]["median"] > 0
    assert out["goal_met"] is None  # the goal is defined for 10,000 files only


def test_bench_train_step(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # MPA only: RGNet runs the same code path, but its steps are too slow for a unit test.
    out = run_bench("bench_train_step", ["--quick", "--models", "mpa", "--workdir", str(workdir)], capsys)
    mpa = out["mpa"]
    assert mpa["batch_images"] == 2 and mpa["patches_per_image"] == 2 and mpa["images_per_s"] > 0
    assert set(mpa["objective_overhead"]["overhead_vs_ce_pct_of_step"]) == {"mp_avg", "mp_min", "mp_ada"}
    assert 0 <= mpa["data_loader"]["serial_share_of_step"] <= 1
    assert "rgnet" not in out


def test_bench_region_graph(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("bench_region_graph", ["--quick", "--sizes", "8"], capsys)
    cases = {c["impl"]: c for c in out["cases"]}
    assert set(cases) == {"sdpa", "explicit"}
    for case in cases.values():
        assert "error" not in case and case["output_finite"] and case["peak_extra_rss_mib"] >= 0 and case["time_s"] > 0
    assert out["comparison"][0]["regions"] == "8x8"


def test_bench_startup(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("bench_startup", ["--quick", "--repeats", "1", "--workdir", str(workdir)], capsys)
    assert out["help_s"]["median_s"] > 0 and out["first_score_s"]["median_s"] > 0
    # Not a timing: `aescore --help` must not import torch and friends.
    assert out["torch_imported_by_cli"] is False
    assert not any(out["heavy_modules_after_cli_import"].values())
    assert out["slowest_cli_imports"]
    stages = {"interpreter", "imports", "weights_read_and_verified", "model_built", "first_batch", "exit"}
    b = out["breakdown"]
    assert set(b["onnx"]["stages_s"]) == set(b["torch"]["stages_s"]) == set(b["old_way"]["stages_s"]) == stages
    # ONNX Runtime never imports torch; --runtime torch builds the plain-torch model without timm;
    # the old way still goes through timm
    assert b["onnx"]["torch_imported"] is False and b["torch"]["timm_imported"] is False and b["old_way"]["timm_imported"] is True
    assert b["score_difference"] < 1e-4 and out["first_score_runtime_torch_s"]["median_s"] > 0
    assert out["first_score_first_run_s"] > 0 and out["baseline"] is None
    assert out["first_score_personal_s"]["median_s"] > 0  # a head-only personal model on the default


def test_report_updates_marked_blocks(tmp_path: Path) -> None:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    report = importlib.import_module("report")
    doc = tmp_path / "perf.md"
    doc.write_text("intro\n<!-- bench:startup -->\nold\n<!-- /bench:startup -->\nkept\n", encoding="utf-8")
    assert report.update_document(doc, {"startup": "| new |", "rank": "unused"}) == ["startup"]
    assert doc.read_text(encoding="utf-8") == "intro\n<!-- bench:startup -->\n| new |\n<!-- /bench:startup -->\nkept\n"


def test_bench_report(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("bench_report", ["--quick", "--workdir", str(workdir)], capsys)
    med = out["median_seconds"]
    assert med["rank"] > 0 and med["report_first"] > 0 and med["report_second"] > 0
    assert out["report_first_over_rank"] == pytest.approx(med["report_first"] / med["rank"], rel=0.01)
    assert out["page_bytes"] > 0 and 0 < out["thumbnail_bytes_per_photo"] <= 60_000


def test_bench_faces(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("bench_faces", ["--quick", "--workdir", str(workdir)], capsys)
    med = out["median_seconds"]
    assert med["without_faces"] > 0 and med["with_faces"] > 0 and med["with_faces_cpu"] > 0
    assert out["overhead_of_faces"] == pytest.approx(med["with_faces"] / med["without_faces"] - 1, abs=0.002)
    assert out["setup"]["photos"] == 4 and out["setup"]["synthetic_people"] == 2 and out["setup"]["real_people"] == 0
    assert out["decision"] in ("default", "opt-in")
    assert "4 scored (0 cached, 4 computed)" in out["summaries"]["with_faces"]  # both runs really scored from scratch


def test_bench_models(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_bench("bench_models", ["--quick", "--workdir", str(workdir)], capsys)
    med = out["median_seconds"]
    assert med["a"] > 0 and med["b"] > 0 and med["a_cpu"] > 0
    assert out["ratio_b_over_a"] == pytest.approx(med["b"] / med["a"], abs=0.002)
    assert out["setup"]["photos"] == 2 and out["setup"]["a"] == "aescore-technical-lite0"
