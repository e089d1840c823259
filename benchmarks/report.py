"""Turn the benchmarks' JSON results into the Markdown tables of ``docs/performance.md``.

    python benchmarks/report.py RESULTS_DIR                      # print the tables
    python benchmarks/report.py RESULTS_DIR --update docs/performance.md

``RESULTS_DIR`` holds ``bench_<name>.json`` or ``<name>.json`` files (the stdout of each
``benchmarks/bench_<name>.py``). With ``--update``, every block between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in the document is replaced by the freshly
rendered table, so the prose around the tables stays and the figures are always quoted verbatim
from one run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

NA = "not measured"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _load_note(d: dict[str, Any]) -> str:
    m = d.get("machine", {})
    return (f"\n\n_Run: {m.get('usable_cores')} cores, torch {m.get('torch')} ({m.get('torch_threads')} threads); "
            f"1-min load average {m.get('load_avg_1m_at_start')} at start, {d.get('load_avg_1m_at_end')} at end._")


def render_machine(d: dict[str, Any]) -> str:
    """The machine block (from any result's ``machine``)."""
    m = d["machine"]
    rows = [("CPU", m.get("cpu_model")), ("usable cores / logical CPUs", f"{m.get('usable_cores')} / {m.get('logical_cpus')}"),
            ("memory", f"{m.get('mem_total_gib')} GiB"), ("OS", m.get("platform")), ("Python", m.get("python")),
            ("torch (threads)", f"{m.get('torch')} ({m.get('torch_threads')})"), ("Pillow", m.get("pillow")),
            ("GPU", "CUDA available" if m.get("cuda") else "none (CPU only)")]
    return _table(["", ""], rows)


def render_rank(d: dict[str, Any]) -> str:
    """Benchmark 1 table."""
    s, ips = d["setup"], d["images_per_s"]
    rows = [
        ("(a) `aescore rank` defaults: Scorer, model loaded (fresh process per round)", ips["a_rank_scorer"]),
        ("(a') `aescore rank` CLI, end to end (start-up + model load included)", ips["a_rank_cli_end_to_end"]),
        ("(a'') `aescore rank` CLI, its own reported run time", ips["a_rank_cli_reported_run"]),
        ("(b) naive: full decode, exif_transpose, resize 256, crop 224, batch 1", ips["b_naive"]),
        ("(b') the naive script as a whole process, end to end", ips.get("b_naive_script_end_to_end")),
        ("(c) decode + resize alone, all cores", ips["c_decode_all_cores"]),
        ("(d) network alone, pre-decoded tensors", ips["d_network_only"]),
        ("(d, reference) network alone without BatchNorm folding", ips.get("d_network_only_without_bn_folding")),
        ("bound = 1 / (1/c + 1/d)", d["bound_images_per_s"]),
    ]
    also = d.get("also")
    ran = s.get("runtime_a_ran") or s.get("runtime_a", "torch")
    if also:  # the second runtime, timed in the same rounds (bench_rank.py --also-runtime)
        name = also.get("runtime_ran") or also["runtime"]
        rows[0] = (rows[0][0] + f" — {ran}", rows[0][1])
        rows[1] = (rows[1][0] + f" — {ran}", rows[1][1])
        rows[2] = (rows[2][0] + f" — {ran}", rows[2][1])
        rows[3:3] = [
            (f"(a) the same — {name}", also["a_rank_scorer"]),
            (f"(a') the same — {name}", also["a_rank_cli_end_to_end"]),
            (f"(a'') the same — {name}", also["a_rank_cli_reported_run"]),
        ]
    t1 = _table(["pipeline", "images/s"], rows)
    g = d["goals_met"]
    ratios = [
        ("(a) / (b) naive", d["ratio_a_over_naive"], ">= 2", g["ratio_a_over_naive"]),
        ("(a) / bound (efficiency)", d["efficiency_a_over_bound"], ">= 0.85", g["efficiency_a_over_bound"]),
        ("(a') CLI end to end / (b) naive", d["ratio_cli_over_naive"], "", ""),
        ("(a') CLI end to end / (b') naive script end to end", d.get("ratio_cli_over_naive_script_end_to_end"), ">= 1.8",
         g.get("ratio_cli_over_naive_script_end_to_end", "")),
    ]
    if also:
        name = also.get("runtime_ran") or also["runtime"]
        ratios = [(f"{label} — {ran}", *rest) for label, *rest in ratios] + [
            (f"(a) / (b) naive — {name}", also["ratio_a_over_naive"], ">= 2", ""),
            (f"(a) / bound (efficiency) — {name}", also["efficiency_a_over_bound"], ">= 0.85", ""),
            (f"(a') CLI end to end / (b') naive script end to end — {name}", also["ratio_cli_over_naive_script_end_to_end"], ">= 1.8", ""),
            (f"(a) {ran} / (a) {name}", also["ratio_runtime_a_over_also"], ">= 1", ""),
            (f"(a') {ran} / (a') {name}, end to end", also["ratio_runtime_cli_over_also"], ">= 1", ""),
        ]
    t2 = _table(["ratio", "measured", "goal", "met"], [tuple(r) for r in ratios])
    setup = (f"{s['images']} JPEGs, {min(s['sizes_mp'])}-{max(s['sizes_mp'])} MP ({s['progressive']} progressive), "
             f"{s['bytes_total'] / 2**20:.0f} MiB; {s['architecture']} ({s['weights']} weights), recipe `{s['recipe']}`, "
             f"network inputs {', '.join(s['network_input_shapes'])}; scorer batch {s['scorer_batch_size']}, "
             f"{s['scorer_workers']} decode worker(s) ({s['scorer_settings']}), runtime {s.get('runtime_a', 'torch')}"
             + (f" (ran: {ran}, torch imported: {'yes' if s.get('torch_imported_a') else 'no'})" if s.get("runtime_a_ran") else "")
             + (f" and {also['runtime']} (ran: {also.get('runtime_ran')}), alternating," if also else "")
             + f" for (a) and (a'); decode pool {s['decode_pool_processes']} processes; "
             f"median of {s['rounds']} rounds; OMP_WAIT_POLICY {s.get('omp_wait_policy_a') or 'unset'} for (a) "
             f"(as `aescore rank` sets it), {s.get('omp_wait_policy_b_to_d') or 'unset'} for (b)-(d).")
    return f"{setup}\n\n{t1}\n\n{t2}{_load_note(d)}"


def render_warm_cache(d: dict[str, Any]) -> str:
    """Benchmark 2 table."""
    s = d["setup"]
    rows = [("files (all cached)", s["files"]), ("cache filled by", s["populate"]),
            ("`aescore rank DIR` wall time, median", f"{d['rank_all_cached_s']['median']:.3f} s (runs: {', '.join(f'{t:.3f}' for t in d['rank_all_cached_s']['runs'])})"),
            ("files/s", d["files_per_s"]), ("goal", "< 2 s for 10,000 files"), ("met", _fmt(d["goal_met"]))]
    return _table(["", ""], rows) + f"\n\nCLI summary line: `{d['cli_summary']}`{_load_note(d)}"


def render_train_step(d: dict[str, Any]) -> str:
    """Benchmark 3 tables."""
    parts = []
    rows = []
    for key in ("mpa", "rgnet"):
        if key not in d:
            continue
        r = d[key]
        dl = r["data_loader"]
        rows.append((f"{r['model']} ({r['preset']}, {r['optimizer']})", f"{r['batch_images']} x {r['patches_per_image']}",
                     "x".join(map(str, r["input"])), f"{r['step_s']['median']:.3f}", r["images_per_s"], r["patches_per_s"],
                     f"{100 * dl['serial_share_of_step']:.1f} %", f"{100 * dl['overlapped_share_waiting']:.1f} % ({dl['workers']} workers)"))
    parts.append(_table(["model", "images x patches", "input", "step s", "images/s", "patches/s",
                         "loader share (serial)", "waiting for loader (overlapped)"], rows))
    if "mpa" in d and "objective_overhead" in d["mpa"]:
        o = d["mpa"]["objective_overhead"]
        orow = [(obj, f"{o['loss_and_backward_s'][obj] * 1e3:.3f}", f"{o['whole_loss_pct_of_step'][obj]:.3f} %",
                 "" if obj == "ce" else f"{o['overhead_vs_ce_pct_of_step'][obj]:.3f} %") for obj in o["loss_and_backward_s"]]
        parts.append(f"MP objectives, loss + backward of the loss part on `{o['logits_shape']}` logits:\n\n"
                     + _table(["objective", "ms", "share of MPA step", "overhead over ce"], orow)
                     + f"\n\nGoal: < 3 % overhead over cross-entropy — met: {_fmt(o['goal_met'])}.")
    return "\n\n".join(parts) + _load_note(d)


def render_region_graph(d: dict[str, Any]) -> str:
    """Benchmark 4 table."""
    rows = []
    for c in d["cases"]:
        if "error" in c:
            rows.append((c["impl"], c["regions"], "", "", "failed", "", ""))
            continue
        rows.append((c["impl"], c["regions"], c["n_tokens"], f"{c['nxn_matrix_mib']:.0f}", f"{c['time_s']:.3f}",
                     f"{c['peak_extra_rss_mib']:.0f}", len(c["times_s"])))
    t = _table(["implementation", "regions", "N", "N x N fp32 MiB", "time s (3 blocks)", "peak extra RSS MiB", "timed runs"], rows)
    comp = _table(["regions", "time explicit / sdpa", "memory explicit / sdpa"],
                  [(c["regions"], c["time_ratio_explicit_over_sdpa"], c["memory_ratio_explicit_over_sdpa"]) for c in d["comparison"]])
    return f"{t}\n\n{comp}{_load_note(d)}"


def render_startup(d: dict[str, Any]) -> str:
    """Benchmark 5 tables: goals, the single-photo figures (against the baseline commit when
    measured) and the per-stage breakdown of the new path and the old way."""
    g = d["goals_met"]
    base = d.get("baseline")
    rows = [("`aescore --help`", f"{d['help_s']['median_s']:.3f} s", "< 0.5 s", g["help_s"]),
            ("torch imported by `import aescore.cli.main` + all commands", "yes" if d["torch_imported_by_cli"] else "no", "no", g["torch_imported_by_cli"]),
            ("reference: `python -c pass`", f"{d['python_bare_s']['median_s']:.3f} s", "", ""),
            ("reference: `python -c 'import torch'`", f"{d['import_torch_s']['median_s']:.3f} s", "", ""),
            (f"`aescore score one.jpg` ({d['first_score_setup']['photo']}, --no-cache), end to end", f"{d['first_score_s']['median_s']:.3f} s",
             "< 2 s", g.get("first_score_s", "")),
            *([("the same with `--runtime torch`, runs alternating", f"{d['first_score_runtime_torch_s']['median_s']:.3f} s", "", "")]
              if "first_score_runtime_torch_s" in d else []),
            ("the same, first run on a machine (sha256 not yet remembered)", f"{d['first_score_first_run_s']:.3f} s", "", "")]
    if base:
        rows.append((f"the same command at `{base['ref']}` (before issue 16), runs alternating", f"{base['first_score_s']['median_s']:.3f} s", "", ""))
        rows.append(("speed-up", f"{base['speedup']:.2f}x", "", ""))
    text = _table(["measure", "median", "goal", "met"], rows)
    slow = ", ".join(f"{r['module']} {r['cumulative_ms']:.0f} ms" for r in d["slowest_cli_imports"][:6])
    text += f"\n\nSlowest imports when assembling the CLI (cumulative): {slow}."
    b = d.get("breakdown")
    if b and "onnx" in b:
        ways = [w for w in ("onnx", "torch", "old_way") if w in b]
        stages = list(b["onnx"]["stages_s"])
        brows = [(k.replace("_", " "), *(f"{b[w]['stages_s'][k]:.3f}" for w in ways)) for k in stages]
        brows.append(("**total**", *(f"{b[w]['total_s']:.3f}" for w in ways)))
        text += ("\n\nWhere one first score's time goes, seconds (median per stage over fresh interpreters, runs alternating; "
                 "onnx: the exported program under ONNX Runtime, torch imported: "
                 f"{'yes' if b['onnx']['torch_imported'] else 'no'}; torch: `--runtime torch`, {b['torch']['model_class']}, "
                 f"timm imported: {'yes' if b['torch']['timm_imported'] else 'no'}; old way: {b['old_way']['model_class']} "
                 f"through timm, sha256 every run, normal exit; scores differ by at most {b['score_difference']:.1e}):\n\n")
        text += _table(["stage", *(w.replace("_", " ") for w in ways)], brows)
    return text + _load_note(d)


def render_report(d: dict[str, Any]) -> str:
    """Benchmark 6 table: the contact sheet against rank."""
    med, runs = d["median_seconds"], d["seconds"]
    g = d["goals"]
    rows = [
        ("`aescore rank DIR` (from scratch)", f"{med['rank']:.2f} s", "", ", ".join(f"{t:.2f}" for t in runs["rank"])),
        ("`aescore report DIR -o page` (from scratch)", f"{med['report_first']:.2f} s",
         f"{_fmt(d['report_first_over_rank'])}x rank (goal <= {g['report_first_over_rank_max']})", ", ".join(f"{t:.2f}" for t in runs["report_first"])),
        ("second `aescore report` (all cached)", f"{med['report_second']:.2f} s",
         f"{_fmt(d['report_second_over_first'])} of the first (goal <= {g['report_second_over_first_max']})", ", ".join(f"{t:.2f}" for t in runs["report_second"])),
    ]
    return (_table(["run", "median", "ratio", "runs (s)"], rows)
            + f"\n\n{d['photos']} photos, {d['rounds']} alternating round(s), {d['weights']} weights; page {d['page_bytes']} bytes, "
            f"thumbnails {d['thumbnail_bytes_per_photo']} bytes per photo.{_load_note(d)}")


def render_faces(d: dict[str, Any]) -> str:
    """Benchmark 7 table: rank with and without the faces check."""
    med, runs, s = d["median_seconds"], d["seconds"], d["setup"]
    rows = [
        ("`aescore rank DIR` (wall)", f"{med['without_faces']:.2f} s", f"{med['with_faces']:.2f} s",
         f"+{100 * d['overhead_of_faces']:.0f} %", f"{d['faces_ms_per_photo']:.0f} ms"),
        ("the same, CPU time (user + system)", f"{med['without_faces_cpu']:.2f} s", f"{med['with_faces_cpu']:.2f} s",
         f"+{100 * d['overhead_of_faces_cpu']:.0f} %", f"{d['faces_cpu_ms_per_photo']:.0f} ms"),
    ]
    runs_text = "; ".join(f"{k.replace('_', ' ')} {', '.join(f'{t:.2f}' for t in v)}" for k, v in runs.items() if v)
    return (_table(["run", "without faces", "with `--check faces`", "overhead", "per photo"], rows)
            + f"\n\n{s['photos']} photos ({s['without_faces']} without faces, {s['synthetic_people']} synthetic people photos, "
            f"{s['real_people']} real photos of people enlarged), {', '.join(str(v) for v in s['sizes_mp'])} MP, "
            f"{s['rounds']} alternating round(s), runtime {s['runtime']}. Runs (s): {runs_text}. "
            f"Rule: faces by default when the wall-time overhead is <= {100 * d['default_if_overhead_at_most']:.0f} %; "
            f"measured: **{d['decision']}**.{_load_note(d)}")


def render_models(d: dict[str, Any]) -> str:
    """Benchmark 8 table: two models' rank runs side by side."""
    med, runs, s = d["median_seconds"], d["seconds"], d["setup"]
    rows = [(f"`{s['a']}`", f"{med['a']:.2f} s", f"{med['a_cpu']:.2f} s"),
            (f"`{s['b']}`", f"{med['b']:.2f} s", f"{med['b_cpu']:.2f} s"),
            ("ratio", f"{_fmt(d['ratio_b_over_a'])}", f"{_fmt(d['ratio_b_over_a_cpu'])}")]
    runs_text = "; ".join(f"{k.replace('_', ' ')} {', '.join(f'{t:.2f}' for t in v)}" for k, v in runs.items() if v)
    return (_table(["model", "median wall", "median CPU"], rows)
            + f"\n\n{s['photos']} photos, {', '.join(str(v) for v in s['sizes_mp'])} MP, {s['rounds']} alternating round(s), "
            f"runtime {s['runtime']}. Runs (s): {runs_text}.{_load_note(d)}")


def render_summary(results: dict[str, dict[str, Any]]) -> str:
    """One row per goal, from whichever results are present."""
    rows: list[tuple[str, str, Any]] = []
    if "rank" in results:
        d = results["rank"]
        rows.append(("`aescore rank` >= 2x the naive pipeline", f"{_fmt(d['ratio_a_over_naive'])}x", d["goals_met"]["ratio_a_over_naive"]))
        rows.append(("`aescore rank` >= 85 % of the decode/network bound", f"{100 * d['efficiency_a_over_bound']:.0f} %"
                     if d["efficiency_a_over_bound"] is not None else "n/a", d["goals_met"]["efficiency_a_over_bound"]))
    if "warm_cache" in results:
        d = results["warm_cache"]
        rows.append((f"re-rank {d['setup']['files']:,} cached files < 2 s", f"{d['rank_all_cached_s']['median']:.2f} s", d["goal_met"]))
    if "train_step" in results and "objective_overhead" in results["train_step"].get("mpa", {}):
        o = results["train_step"]["mpa"]["objective_overhead"]
        worst = max(o["overhead_vs_ce_pct_of_step"].items(), key=lambda kv: kv[1])
        rows.append(("MP objectives' overhead over cross-entropy < 3 %", f"{worst[1]:.3f} % (worst: {worst[0]})", o["goal_met"]))
    if "region_graph" in results:
        d = results["region_graph"]
        sdpa = [c for c in d["cases"] if c.get("impl") == "sdpa" and "error" not in c]
        if len(sdpa) >= 2:
            a, b = sdpa[0], sdpa[-1]
            growth = b["peak_extra_rss_mib"] / max(a["peak_extra_rss_mib"], 1e-9)
            tokens = b["n_tokens"] / a["n_tokens"]
            rows.append(("region graph: SDPA memory not quadratic in regions",
                         f"{a['regions']} -> {b['regions']}: N x{tokens:.0f}, peak memory x{growth:.1f} (quadratic: x{tokens ** 2:.0f})",
                         growth < tokens ** 1.5))
    if "startup" in results:
        d = results["startup"]
        rows.append(("`aescore --help` < 0.5 s", f"{d['help_s']['median_s']:.2f} s", d["goals_met"]["help_s"]))
        rows.append(("`aescore --help` imports no torch", "torch imported" if d["torch_imported_by_cli"] else "no torch", d["goals_met"]["torch_imported_by_cli"]))
        if "first_score_s" in d["goals_met"]:
            rows.append(("`aescore score one.jpg` < 2 s end to end", f"{d['first_score_s']['median_s']:.2f} s", d["goals_met"]["first_score_s"]))
    return _table(["goal (2 CPU cores)", "measured", "met"], rows)


RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "rank": render_rank, "warm_cache": render_warm_cache, "train_step": render_train_step,
    "region_graph": render_region_graph, "startup": render_startup, "report": render_report,
    "faces": render_faces, "models": render_models,
}


def load_results(folder: Path) -> dict[str, dict[str, Any]]:
    """``{name: result}`` for every ``[bench_]<name>.json`` in ``folder`` that parses."""
    out = {}
    for name in RENDER:
        for candidate in (folder / f"bench_{name}.json", folder / f"{name}.json"):
            if candidate.is_file():
                try:
                    out[name] = json.loads(candidate.read_text())
                except json.JSONDecodeError:
                    print(f"report: {candidate} is not valid JSON; skipped", file=sys.stderr)
                break
    return out


def render_all(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Rendered Markdown per block name (``machine`` plus each benchmark present)."""
    blocks = {name: RENDER[name](d) for name, d in results.items()}
    if results:
        blocks["machine"] = render_machine(next(iter(results.values())))
        blocks["summary"] = render_summary(results)
    return blocks


def update_document(doc: Path, blocks: dict[str, str]) -> list[str]:
    """Replace each ``<!-- bench:NAME -->...<!-- /bench:NAME -->`` block; returns the names replaced."""
    text = doc.read_text(encoding="utf-8")
    done = []
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(\n<!-- /bench:{name} -->)", re.S)
        text, n = pattern.subn(lambda m: m.group(1) + body + m.group(2), text)
        if n:
            done.append(name)
    from aescore.fsutil import atomic_write_text

    atomic_write_text(doc, text)
    return done


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: print the tables, or update a document's marked blocks in place."""
    ap = argparse.ArgumentParser(description="Render benchmark JSON results as Markdown tables.")
    ap.add_argument("results", type=Path, help="folder of bench_<name>.json / <name>.json files")
    ap.add_argument("--update", type=Path, default=None, help="document whose <!-- bench:NAME --> blocks to replace")
    args = ap.parse_args(argv)
    blocks = render_all(load_results(args.results))
    if args.update:
        done = update_document(args.update, blocks)
        print(f"report: updated {', '.join(done) or 'nothing'} in {args.update}", file=sys.stderr)
    else:
        for name, body in blocks.items():
            print(f"## {name}\n\n{body}\n")


if __name__ == "__main__":
    main()
