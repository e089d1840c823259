"""`aescore score` / `rank` / `models` / `cache` end to end through the CLI, on generated photo folders."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from aescore.cli.main import get_app
from aescore.errors import AescoreError, UsageError

import helpers
from helpers import BAD, GOOD


@pytest.fixture()
def weights(tiny_weights: Path) -> Path:
    return tiny_weights


@pytest.fixture()
def photos(tmp_path: Path) -> dict[str, Path]:
    return helpers.make_photo_folder(tmp_path / "lib")


@pytest.fixture(autouse=True)
def _private_cache(private_cache: Path) -> None:
    """Every test here gets its own score cache."""


class Result:
    def __init__(self, code: int, out: bytes, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")

    def rows(self) -> list[dict[str, Any]]:
        """stdout's JSON lines (``--jsonl``)."""
        return [json.loads(line) for line in self.text.splitlines()]

    def summary(self) -> dict[str, int]:
        m = re.search(r"(\d+) scored \((\d+) cached, (\d+) computed\), (\d+) skipped", self.err)
        assert m, self.err
        return dict(zip(("scored", "cached", "computed", "skipped"), map(int, m.groups())))


def cli(args: list[str], stdin: bytes | None = None) -> Result:
    """Run the CLI in-process; known AescoreErrors map to their exit code as in ``main()``."""
    result = CliRunner().invoke(get_app(), [str(a) for a in args], input=stdin)
    code = result.exit_code
    if isinstance(result.exception, AescoreError):
        code = result.exception.exit_code
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(code, result.stdout_bytes, result.stderr)


def base(weights: Path) -> list[Any]:
    return ["--model", weights, "--workers", "0", "--device", "cpu"]


def parse_tsv(text: str) -> list[tuple[float, str]]:
    unescape = {"\\n": "\n", "\\t": "\t", "\\r": "\r"}
    rows = []
    for line in text.splitlines():
        score, path = line.split("\t")
        rows.append((float(score), re.sub(r"\\[ntr]", lambda m: unescape[m.group(0)], path)))
    return rows


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every photo-like file under ``root`` (sidecars excluded), symlinks not followed."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            if not p.is_symlink() and not name.lower().endswith(".xmp"):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# --------------------------------------------------------------------------- inputs, exit codes, formats


def test_rank_folder_scores_good_skips_bad_exit_3(photos: dict[str, Path], weights: Path) -> None:
    r = cli(["rank", photos["jpeg"].parent, *base(weights)])
    assert r.code == 3
    rows = parse_tsv(r.text)
    assert sorted(p for _, p in rows) == sorted(str(photos[n]) for n in GOOD)  # each real file once, loop safe
    assert [s for s, _ in rows] == sorted((s for s, _ in rows), reverse=True)
    assert all(0.0 <= s <= 1.0 for s, _ in rows)
    skipped = [line for line in r.err.splitlines() if line.startswith("aescore: skipped ")]
    assert len(skipped) == len(BAD)
    for name in BAD:
        assert any(str(photos[name]) in line for line in skipped)
    assert "Traceback" not in r.err and r.summary()["skipped"] == len(BAD)


@pytest.mark.parametrize("user_value", [None, "ACTIVE"])
def test_score_asks_openmp_to_wait_passively_unless_the_user_chose(
    photos: dict[str, Path], weights: Path, monkeypatch: pytest.MonkeyPatch, user_value: str | None
) -> None:
    # Set before torch loads in a real `aescore` process (here torch is already imported, so only
    # the variable itself can be checked); a policy the user set is kept.
    if user_value is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", user_value)
    assert cli(["score", photos["jpeg"], *base(weights)]).code == 0
    assert os.environ["OMP_WAIT_POLICY"] == (user_value or "PASSIVE")


def test_score_keeps_input_order_and_exit_0(photos: dict[str, Path], weights: Path) -> None:
    names = ["tiff", "jpeg", "newline", "cmyk"]
    r = cli(["score", *[photos[n] for n in names], *base(weights)])
    assert r.code == 0, r.err
    assert [p for _, p in parse_tsv(r.text)] == [str(photos[n]) for n in names]


def test_every_output_format_parses_back(photos: dict[str, Path], weights: Path) -> None:
    good = [photos[n] for n in GOOD]
    tsv = parse_tsv(cli(["rank", *good, *base(weights)]).text)
    expected = [(round(s, 4), p) for s, p in tsv]

    js = json.loads(cli(["rank", *good, *base(weights), "--json"]).text)
    assert [(round(o["score"], 4), o["path"]) for o in js] == expected
    assert [o["rank"] for o in js] == list(range(1, len(good) + 1))
    assert all(o["label"] == ("high" if o["score"] >= 0.5 else "low") for o in js)

    jl = [json.loads(line) for line in cli(["rank", *good, *base(weights), "--jsonl"]).text.splitlines()]
    assert [(round(o["score"], 4), o["path"]) for o in jl] == expected

    rows = list(csv.DictReader(io.StringIO(cli(["rank", *good, *base(weights), "--csv"]).text, newline="")))
    assert [(float(o["score"]), o["path"]) for o in rows] == expected

    nul = cli(["rank", *good, *base(weights), "-0"]).out
    assert nul.endswith(b"\0") and nul[:-1].split(b"\0") == [os.fsencode(p) for _, p in expected]


def test_rank_filters(photos: dict[str, Path], weights: Path) -> None:
    good = [photos[n] for n in GOOD]
    full = parse_tsv(cli(["rank", *good, *base(weights)]).text)
    assert parse_tsv(cli(["rank", *good, *base(weights), "--top", "3"]).text) == full[:3]
    assert parse_tsv(cli(["rank", *good, *base(weights), "--bottom", "2"]).text) == full[-2:]
    cut = full[4][0]
    assert parse_tsv(cli(["rank", *good, *base(weights), "--min-score", cut]).text) == [r for r in full if r[0] >= cut]


@pytest.mark.parametrize(
    "extra",
    [["--json", "--csv"], ["--top", "1", "--bottom", "1"], ["--shard", "4/3"], ["--shard", "x"], ["--best-of-group"],
     ["--dry-run"], ["--no-such-option"], ["--copy-to", "a", "--link-to", "b"], ["--device", "tpu"], ["--xmp-style", "x", "--write-xmp"]],
)
def test_usage_errors_exit_2(photos: dict[str, Path], weights: Path, extra: list[str]) -> None:
    assert cli(["rank", photos["jpeg"], *base(weights), *extra]).code == 2


def test_no_inputs_is_a_usage_error() -> None:
    assert cli(["score"]).code == 2


def test_missing_weights_exit_1(photos: dict[str, Path], tmp_path: Path) -> None:
    r = cli(["score", photos["jpeg"], "--model", tmp_path / "nope.safetensors"])
    assert r.code == 1


def test_missing_named_file_exit_3(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    r = cli(["score", photos["jpeg"], tmp_path / "gone.jpg", *base(weights)])
    assert r.code == 3 and f"aescore: skipped {tmp_path / 'gone.jpg'}: " in r.err
    assert len(parse_tsv(r.text)) == 1


def test_files_from_stdin_nul_separated(photos: dict[str, Path], weights: Path) -> None:
    names = ["newline", "unicode", "spaces"]
    stdin = b"".join(os.fsencode(photos[n]) + b"\0" for n in names)
    r = cli(["score", "--files-from", "-", "--from0", *base(weights), "--jsonl"], stdin=stdin)
    assert r.code == 0, r.err
    assert [json.loads(line)["path"] for line in r.text.splitlines()] == [str(photos[n]) for n in names]


def test_files_from_file_one_per_line(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos['jpeg']}\n{photos['tiff']}\n")
    r = cli(["score", "--files-from", listing, *base(weights)])
    assert [p for _, p in parse_tsv(r.text)] == [str(photos["jpeg"]), str(photos["tiff"])]


def test_upright_and_exif_rotated_score_the_same(photos: dict[str, Path], weights: Path) -> None:
    a, b = json.loads(cli(["score", photos["upright"], photos["rotated"], *base(weights), "--json"]).text)
    assert abs(a["score"] - b["score"]) < 1e-5


# --------------------------------------------------------------------------- cache and shards


def test_cache_hit_miss_and_invalidation(photos: dict[str, Path], weights: Path) -> None:
    good = [photos[n] for n in GOOD]
    first = cli(["rank", *good, *base(weights)])
    assert first.summary() == {"scored": len(good), "cached": 0, "computed": len(good), "skipped": 0}
    second = cli(["rank", *good, *base(weights)])
    assert second.summary()["cached"] == len(good) and second.text == first.text
    st = photos["tiff"].stat()
    os.utime(photos["tiff"], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    third = cli(["rank", *good, *base(weights)])
    assert third.summary()["cached"] == len(good) - 1 and third.summary()["computed"] == 1
    assert cli(["rank", *good, *base(weights), "--no-cache"]).summary()["cached"] == 0
    assert cli(["rank", *good, *base(weights), "--tta-crops", "2"]).summary()["cached"] == 0  # other recipe


def test_fully_cached_run_never_imports_torch(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    good = [str(photos[n]) for n in GOOD]
    assert cli(["rank", *good, *base(weights)]).code == 0
    code = (
        "import sys\n"
        "from aescore.cli.main import main\n"
        "try:\n"
        f"    main(['rank', *{good!r}, '--model', {str(weights)!r}])\n"
        "except SystemExit as e:\n"
        "    print('torch' in sys.modules, 'numpy' in sys.modules, e.code, file=sys.stderr)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert proc.stderr.decode().strip().splitlines()[-1] in ("False False 0", "False False None"), proc.stderr.decode()
    assert len(proc.stdout.splitlines()) == len(good)  # the name with a newline is escaped in TSV


def test_known_bad_files_and_missing_extras_need_no_model(photos: dict[str, Path], weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = photos["jpeg"].parent
    (root / "IMG_1.HEIC").write_bytes(b"\0" * 64)  # pillow-heif is not installed here (or faked away)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pillow_heif" else real_find_spec(name, *a))
    first = cli(["rank", root, *base(weights)])
    assert first.code == 3 and first.summary()["skipped"] == len(BAD) + 1
    assert "IMG_1.HEIC: HEIF support is not installed: pip install 'aescore[heif]'" in first.err
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'pillow_heif' else real(n, *a)\n"
        "from aescore.cli.main import main\n"
        "try:\n"
        f"    main(['rank', {str(root)!r}, '--model', {str(weights)!r}])\n"
        "except SystemExit as e:\n"
        "    print('torch' in sys.modules, e.code, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=dict(os.environ), timeout=60)
    err = proc.stderr.decode()
    assert err.strip().splitlines()[-1] == "False 3", err
    assert len([line for line in err.splitlines() if line.startswith("aescore: skipped")]) == len(BAD) + 1
    assert "0 computed" in err
    # a bad file that changes is tried again (the new reason shows it was not taken from the cache)
    photos["empty"].write_bytes(b"still not a photo")
    again = cli(["rank", root, *base(weights)])
    assert "empty.jpg: not a recognised image" in again.err and "empty file" not in again.err


def test_corrupt_cache_is_moved_aside_with_one_warning(photos: dict[str, Path], weights: Path) -> None:
    cache_file = Path(os.environ["XDG_CACHE_HOME"]) / "aescore" / "scores.sqlite"
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(b"garbage" * 1000)
    r = cli(["score", photos["jpeg"], *base(weights)])
    assert r.code == 0
    assert len([line for line in r.err.splitlines() if "warning" in line]) == 1
    assert list(cache_file.parent.glob("scores.sqlite.corrupt-*"))
    assert cli(["score", photos["jpeg"], *base(weights)]).summary()["cached"] == 1


def test_union_of_shards_is_the_whole(photos: dict[str, Path], weights: Path) -> None:
    root = photos["jpeg"].parent
    whole = cli(["score", root, *base(weights), "--jsonl", "--no-cache"]).text.splitlines()
    parts = [cli(["score", root, *base(weights), "--jsonl", "--shard", f"{i}/3"]).text.splitlines() for i in (1, 2, 3)]

    def key(line: str) -> tuple[str, float]:
        o = json.loads(line)
        return o["path"], o["score"]

    assert sorted(key(x) for p in parts for x in p) == sorted(key(x) for x in whole)
    assert all(parts)


def test_cache_commands(photos: dict[str, Path], weights: Path) -> None:
    cli(["score", photos["jpeg"], photos["tiff"], *base(weights)])
    info = json.loads(cli(["cache", "info", "--json"]).text)
    assert info["rows"] == 2 and info["path"].startswith(os.environ["XDG_CACHE_HOME"])
    assert info["by_weights"][0]["rows"] == 2 and info["by_weights"][0]["recipe"].startswith("full@")
    assert "rows\t2" in cli(["cache", "info"]).text and "failures\t0" in cli(["cache", "info"]).text
    assert cli(["cache", "clear"]).code == 0
    assert json.loads(cli(["cache", "info", "--json"]).text)["rows"] == 0


def test_models_lists_cards(weights: Path, monkeypatch: pytest.MonkeyPatch, photos: dict[str, Path]) -> None:
    monkeypatch.setenv("AESCORE_WEIGHTS_DIR", str(weights.parent))
    entries = json.loads(cli(["models", "--json"]).text)["models"]  # one JSON object (issue 11 item 9)
    tiny = next(e for e in entries if e["name"] == "tiny")
    assert tiny["architecture"] == "mpa_resnet18" and tiny["summary"] and tiny["trained_on"] == "none"
    assert "tiny" in cli(["models"]).text
    # and a name works as --model
    assert cli(["score", photos["jpeg"], "--model", "tiny", "--workers", "0"]).code == 0


# --------------------------------------------------------------------------- culling and actions


def test_bursts_best_of_group_and_similarity(photos: dict[str, Path], weights: Path) -> None:
    names = ["spaces", "unicode", "tiff", "png16", "cmyk"]  # no EXIF capture time: mtimes decide
    for t, n in zip([1000, 1001, 1002, 5000, 5001], names):
        os.utime(photos[n], (t, t))
    args = ["rank", *[photos[n] for n in names], *base(weights), "--group-bursts", "10", "--jsonl"]
    rows = [json.loads(x) for x in cli(args).text.splitlines()]
    groups = {o["path"]: o["group"] for o in rows}
    assert groups[str(photos["spaces"])] == groups[str(photos["tiff"])] != groups[str(photos["cmyk"])]
    assert len(set(groups.values())) == 2 and sum(o["best"] for o in rows) == 2
    best = [json.loads(x) for x in cli([*args, "--best-of-group"]).text.splitlines()]
    assert len(best) == 2 and all(o["best"] for o in best)
    # a similarity threshold above any cosine similarity splits every photo into its own group
    split = [json.loads(x) for x in cli([*args, "--similarity", "1.0"]).text.splitlines()]
    assert len({o["group"] for o in split}) >= 2


def test_stars_and_reject_below(photos: dict[str, Path], weights: Path) -> None:
    good = [photos[n] for n in GOOD]
    rows = [json.loads(x) for x in cli(["rank", *good, *base(weights), "--stars", "--jsonl"]).text.splitlines()]
    assert rows[0]["stars"] == 5 and rows[-1]["stars"] == 1
    k = len(rows) // 2
    cut = (rows[k]["score"] + rows[k + 1]["score"]) / 2  # between two photos: JSON rounding cannot matter
    rows = [json.loads(x) for x in cli(["rank", *good, *base(weights), "--reject-below", cut, "--jsonl"]).text.splitlines()]
    assert all((o["stars"] == -1) == (o["score"] < cut) for o in rows)


def test_photos_byte_identical_after_every_command(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    root = photos["jpeg"].parent
    before = tree_hashes(root)
    good = [photos[n] for n in GOOD]
    commands = [
        ["rank", root, "--exif", "--stars"],
        ["score", root, "--json", "--group-bursts", "5", "--similarity", "0.5"],
        ["rank", *good, "--write-xmp", "--dry-run"],
        ["rank", *good, "--write-xmp"],
        ["rank", *good, "--write-xmp", "--xmp-style", "darktable", "--overwrite-rating"],
        ["rank", root, "--top", "3", "--copy-to", tmp_path / "best"],
        ["rank", root, "--top", "3", "--link-to", tmp_path / "links"],
        ["rank", root, "--copy-to", tmp_path / "dry", "--dry-run"],
    ]
    for cmd in commands:
        r = cli([*cmd, *base(weights)])
        assert r.code in (0, 3), (cmd, r.err)
        assert tree_hashes(root) == before, cmd
    assert not (tmp_path / "dry").exists()
    copied = sorted((tmp_path / "best").iterdir())
    assert len(copied) == 3 and all(hashlib.sha256(p.read_bytes()).hexdigest() in before.values() for p in copied)
    assert all(p.is_symlink() for p in (tmp_path / "links").iterdir())


def test_write_xmp_creates_rated_sidecars_and_dry_run_does_not(photos: dict[str, Path], weights: Path) -> None:
    jpeg = photos["jpeg"]
    r = cli(["score", jpeg, *base(weights), "--write-xmp", "--dry-run"])
    assert r.code == 0 and "would create" in r.err and not jpeg.with_suffix(".xmp").exists()
    assert cli(["score", jpeg, *base(weights), "--write-xmp"]).code == 0
    text = jpeg.with_suffix(".xmp").read_text()
    assert "Rating" in text and "aescore" in text
    # --xmp-style names a sidecar to create; the photo has one already, so that one is updated
    # (issue 25: one sidecar per photo, the one that exists).
    assert cli(["score", jpeg, *base(weights), "--write-xmp", "--xmp-style", "darktable"]).code == 0
    assert not Path(str(jpeg) + ".xmp").exists() and "aescore" in jpeg.with_suffix(".xmp").read_text()


def test_odd_names_cached_and_one_stderr_line_per_skip(weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/bad\xffname.png")  # not valid UTF-8
    Image.fromarray(helpers.pattern(40, 30, 1)).save(odd, format="PNG")
    (folder / "broken\nname.jpg").write_bytes(b"not a jpeg")
    first = cli(["rank", folder, *base(weights)])
    assert first.code == 3 and "Traceback" not in first.err
    assert first.out == os.fsencode(odd) + b"\n" or first.out.endswith(b"\t" + os.fsencode(odd) + b"\n")
    skipped = [line for line in first.err.splitlines() if line.startswith("aescore: skipped")]
    assert skipped == [f"aescore: skipped {folder}/broken\\nname.jpg: not a recognised image"]
    assert len(first.err.splitlines()) == 2  # the skip line and the summary
    assert cli(["rank", folder, *base(weights)]).summary()["cached"] == 1


def test_bad_destination_fails_before_scoring(photos: dict[str, Path], weights: Path) -> None:
    r = cli(["rank", photos["jpeg"], *base(weights), "--copy-to", photos["tiff"]])
    assert r.code == 2 and r.out == b""  # (the message is printed by main(), not by the in-process runner)


def test_no_photos_found_warns_and_exits_0(weights: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a photo")
    r = cli(["rank", tmp_path / "empty", *base(weights)])
    assert r.code == 0 and r.out == b"" and "no photos found" in r.err


def test_interrupt_keeps_finished_scores_and_exits_130(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    """Ctrl-C after some batches: the finished rows are in the cache, one "interrupted" line, exit 130."""
    good = [str(photos[n]) for n in GOOD]
    code = (
        "import sys\n"
        "import aescore.inference.core as core\n"
        "real = core._forward_group\n"
        "calls = []\n"
        "def stop_on_third(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 3:\n"
        "        raise KeyboardInterrupt\n"
        "    return real(*a, **k)\n"
        "core._forward_group = stop_on_third\n"
        "from aescore.cli.main import main\n"
        f"main(['rank', *{good!r}, '--model', {str(weights)!r}, '--workers', '0', '--batch-size', '2', '--device', 'cpu'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=dict(os.environ), timeout=120)
    assert proc.returncode == 130, proc.stderr.decode()
    assert proc.stderr.decode().strip().splitlines()[-1] == "aescore: interrupted"
    again = cli(["rank", *good, *base(weights)])
    # Batches of 2 photos; equal shapes share a pass: at least the first batch's photos were cached.
    assert again.summary()["cached"] >= 2 and again.summary()["computed"] >= 1


def test_decode_failures_are_keyed_on_the_recipe(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    """A failure recorded under one card's recipe is not served to another card (issue: cache poisoning)."""
    import shutil

    truncated = str(photos["truncated"])
    assert cli(["score", truncated, *base(weights)]).code == 3
    other = tmp_path / "other" / "tiny2.safetensors"
    other.parent.mkdir()
    shutil.copy(weights, other)
    card = json.loads(weights.with_suffix(".json").read_text())
    card["preprocess"]["eval"]["size"] = 72  # another recipe
    other.with_suffix(".json").write_text(json.dumps(card))
    from aescore.inference.cache import ScoreCache

    with ScoreCache() as cache:
        assert cache.info()["failures"] == 1
    assert cli(["score", truncated, "--model", other, "--workers", "0", "--device", "cpu"]).code == 3
    with ScoreCache() as cache:
        assert cache.info()["failures"] == 1  # one row per file; the new recipe's replaced it
        from aescore.cull.pipeline import decoder_tag
        from aescore.inference.cache import CacheKey

        st = os.stat(truncated)
        key = CacheKey(os.path.realpath(truncated), st.st_size, st.st_mtime_ns)
        assert cache.get_failures([key], decoder_tag("full@00000000")) == {}


def test_non_finite_thresholds_are_refused(photos: dict[str, Path], weights: Path) -> None:
    for flag in ("--min-score", "--reject-below"):
        res = CliRunner().invoke(get_app(), ["rank", str(photos["jpeg"]), *map(str, base(weights)), flag, "nan"])
        assert isinstance(res.exception, UsageError) and "finite" in str(res.exception) and res.stdout == ""


def test_report_command_writes_the_page_from_the_cache(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    good = [str(photos[n]) for n in GOOD]
    page = tmp_path / "cull.html"
    first = cli(["report", *good, *base(weights), "-o", page])
    assert first.code == 0 and first.out == b"" and page.is_file(), first.err
    thumbs = list((tmp_path / "cull_files").rglob("*.jpg"))
    assert len(thumbs) == len(good) and all(t.stat().st_size <= 60_000 for t in thumbs)
    second = cli(["report", *good, *base(weights), "-o", page])
    assert second.summary() == {"scored": len(good), "cached": len(good), "computed": 0, "skipped": 0}
    assert cli(["score", *good, *base(weights), "--html", page]).code == 2  # rank-only option


def test_legend_under_a_terminal_table_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from aescore.cli.score import Format, _legend

    run = SimpleNamespace(photos=[object()], model_name="tiny", card={"summary": "ranks blur below sharp."})
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    line = _legend(run, Format.table)
    assert line is not None and "model tiny" in line and "ranks blur below sharp" in line and "within this set" in line
    assert _legend(run, Format.jsonl) is None  # data formats get no legend
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert _legend(run, Format.table) is None  # piped TSV: no legend either


def test_report_output_is_checked_before_scoring(photos: dict[str, Path], weights: Path, tmp_path: Path) -> None:
    for out in (tmp_path / "missing-folder" / "cull.html", tmp_path):
        res = CliRunner().invoke(get_app(), ["report", str(photos["jpeg"]), *map(str, base(weights)), "-o", str(out)])
        assert isinstance(res.exception, UsageError) and "existing folder" in str(res.exception)
        assert "scored" not in res.stderr  # refused before any photo was scored
