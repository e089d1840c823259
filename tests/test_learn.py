"""`aescore learn` end to end: simulated photographers on generated photos, through the rating
sources, the honest gate, the saved personal model and `rank --model NAME`."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image, ImageFilter, PngImagePlugin
from typer.testing import CliRunner

from aescore.cli.main import get_app
from aescore.errors import AescoreError

from helpers import make_tiny_weights, outputs

SHOOTS, PER_SHOOT = 8, 10


def packet(rating: int) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def make_library(root: Path) -> dict[str, dict[str, Any]]:
    """Photos in shoot folders: warm or cool colour, a stripe or blob texture, some blurred.

    Returns path -> facts (``warm``, ``blurred``) that the simulated photographers rate by.
    """
    rng = np.random.default_rng(0)
    facts: dict[str, dict[str, Any]] = {}
    yy, xx = np.mgrid[0:64, 0:80]
    for s in range(SHOOTS):
        folder = root / f"shoot{s}"
        folder.mkdir(parents=True)
        for k in range(PER_SHOOT):
            warm = bool(rng.random() < 0.5)
            blurred = bool(rng.random() < 0.25)
            colour = np.array([210, 90, 40]) if warm else np.array([40, 100, 210])
            stripes = np.sin((xx + yy * rng.uniform(-1, 1)) / rng.uniform(2, 6))[..., None] * 50
            arr = np.clip(colour + stripes + rng.normal(0, 25, (64, 80, 3)), 0, 255).astype("uint8")
            img = Image.fromarray(arr)
            if blurred:
                img = img.filter(ImageFilter.GaussianBlur(3))
            path = folder / (f"IMG_{k}.png" if k % 5 == 4 else f"IMG_{k}.JPG")
            img.save(path)
            facts[str(path)] = {"warm": warm, "blurred": blurred}
    return facts


def content_rater(facts: dict[str, Any], rng: np.random.Generator) -> int:
    """Likes warm photos, rejects blurred ones, with a little noise."""
    if facts["blurred"]:
        return -1
    return int((4 if facts["warm"] else 2) + rng.integers(0, 2))


def random_rater(facts: dict[str, Any], rng: np.random.Generator) -> int:
    return int(rng.integers(1, 6))


def write_ratings(ratings: dict[str, int]) -> None:
    """Each shoot in another convention: Lightroom sidecars, darktable sidecars, embedded XMP
    (re-saving the JPEG with its packet), or a mix; a few photos stay unrated."""
    for n, (path, rating) in enumerate(sorted(ratings.items())):
        p = Path(path)
        style = int(p.parent.name[-1]) % 3
        if style == 0:
            p.with_suffix(".xmp").write_bytes(packet(rating))
        elif style == 1:
            p.with_name(p.name + ".xmp").write_bytes(packet(rating))
        else:
            with Image.open(p) as img:
                img.load()
            if p.suffix == ".png":
                info = PngImagePlugin.PngInfo()
                info.add_itxt("XML:com.adobe.xmp", packet(rating).decode())
                img.save(p, pnginfo=info)  # embedded: PNG iTXt
            else:
                img.save(p, xmp=packet(rating))  # embedded: JPEG APP1


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def cli(*args: Any) -> Result:
    result = CliRunner().invoke(get_app(), [str(a) for a in args])
    code = result.exit_code
    if isinstance(result.exception, AescoreError):
        code = result.exception.exit_code
        return Result(code, result.stdout, f"aescore: error: {result.exception}")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(code, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The tiny default model, a shared score cache, and the generated photos (unrated)."""
    root = tmp_path_factory.mktemp("learn")
    weights_dir = root / "weights"
    weights_dir.mkdir()
    make_tiny_weights(weights_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AESCORE_WEIGHTS_DIR", str(weights_dir))
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        yield {"root": root, "weights": weights_dir / "tiny.safetensors"}


@pytest.fixture()
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: dict[str, Any]) -> Path:
    """The test's own data and config folders, the module's shared score cache, and the tiny
    model chosen as the default (a model in AESCORE_WEIGHTS_DIR is not the default by itself)."""
    from aescore.weights import set_default_model

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(world["root"] / "cache"))
    set_default_model("tiny")
    return tmp_path


def rated_library(root: Path, rater: Any, seed: int) -> tuple[Path, dict[str, int]]:
    lib = root / "lib"
    facts = make_library(lib)
    rng = np.random.default_rng(seed)
    ratings = {path: rater(f, rng) for path, f in facts.items()}
    unrated = sorted(ratings)[::13]  # a few stay unrated: they must not count as negatives
    for path in unrated:
        del ratings[path]
    write_ratings(ratings)
    return lib, ratings


def test_content_rater_is_learned_and_beats_generic(world: dict[str, Any], private: Path) -> None:
    from aescore.cli.models import model_entries
    from aescore.weights import resolve_model, user_models_dir

    lib, ratings = rated_library(private, content_rater, 1)
    before = snapshot(lib)
    assert resolve_model(None).stem == "tiny"
    r = cli("learn", lib, "--name", "warm-lover", "--device", "cpu", "--json", "--set-default")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["default"] and resolve_model(None).stem == "warm-lover"  # it beats the generic model
    entries = {e["name"]: e["default"] for e in model_entries()}
    assert entries["warm-lover"] and not entries["tiny"]
    assert out["photos"] == len(ratings)
    assert set(out["ratings_per_source"]) == {"sidecar", "embedded"}
    assert sum(out["ratings_per_source"].values()) == len(ratings)
    h = out["held_out"]
    assert h["split"] == "shoot" and h["folds"] == 5 and h["shoots"] == SHOOTS
    assert h["personal_accuracy"]["value"] > 0.85, h
    assert h["beats_generic"] and h["accuracy_gain"]["low"] > 0
    assert h["personal_accuracy"]["low"] <= h["personal_accuracy"]["value"] <= h["personal_accuracy"]["high"]
    assert "unrated" in r.err and "sidecars" in r.err
    assert snapshot(lib) == before  # photos and sidecars untouched

    card_path = user_models_dir() / "warm-lover.json"
    assert resolve_model("warm-lover") == card_path
    card = json.loads(card_path.read_text())
    assert card["architecture"] == "personal_ranker"
    assert card["training"]["base_model"]["sha256"] == json.loads(world["weights"].with_suffix(".json").read_text())["sha256"]
    assert sum(card["training"]["ratings"]["per_rating"].values()) == len(ratings)
    assert card["metrics"]["held_out"]["beats_generic"]

    # The personal model ranks like the photographer, through the ordinary rank command.
    ranked = cli("rank", lib, "--model", "warm-lover", "--device", "cpu", "--workers", "0", "--jsonl")
    assert ranked.code == 0, ranked.err
    scores = {row["path"]: row["score"] for row in map(json.loads, ranked.out.splitlines())}
    from scipy.stats import spearmanr

    common = sorted(ratings)
    rho = spearmanr([scores[p] for p in common], [ratings[p] for p in common]).statistic
    assert rho > 0.6, rho
    assert snapshot(lib) == before


@pytest.fixture(scope="module")
def shared_lib(world: dict[str, Any]) -> tuple[Path, dict[str, dict[str, Any]]]:
    """One unrated library for the tests whose ratings live outside it (CSV, catalogs): its
    embeddings are computed once, then come from the shared score cache."""
    lib = world["root"] / "shared"
    return lib, make_library(lib)


def write_csv(path: Path, ratings: dict[str, int]) -> Path:
    path.write_text("path,rating\n" + "".join(f"{p},{r}\n" for p, r in sorted(ratings.items())), encoding="utf-8")
    return path


def test_random_rater_is_not_better_and_not_made_default(world: dict[str, Any], shared_lib: Any, private: Path) -> None:
    from aescore.weights import resolve_model

    lib, facts = shared_lib
    rng = np.random.default_rng(2)
    table = write_csv(private / "coin.csv", {p: random_rater(f, rng) for p, f in facts.items()})
    r = cli("learn", lib, "--ratings", table, "--name", "coin", "--device", "cpu", "--set-default")
    assert r.code == 0, r.err
    assert "NOT better" in r.out and "not made the default" in r.out
    assert resolve_model(None).stem == "tiny"
    assert resolve_model("coin").stem == "coin"  # saved all the same
    forced = cli("learn", lib, "--ratings", table, "--name", "coin", "--device", "cpu", "--set-default", "--force", "--replace")
    assert forced.code == 0 and "warning: --force" in forced.err
    assert resolve_model(None).stem == "coin"
    # With a personal default, learning again builds on its generic base, never on a personal model.
    again = cli("learn", lib, "--ratings", table, "--name", "coin2", "--device", "cpu")
    assert again.code == 0, again.err
    assert json.loads(resolve_model("coin2").read_text())["training"]["base_model"]["name"] == "tiny"
    assert cli("learn", lib, "--ratings", table, "--name", "coin3", "--model", "coin").code == 2


def make_catalogs(folder: Path, lib: Path, ratings: dict[str, int]) -> tuple[Path, Path]:
    """A Lightroom-shaped catalog (plus one entry whose file was deleted) and a digiKam-shaped
    database holding ``ratings`` of the photos in ``lib``'s shoot folders."""
    cat = folder / "Lightroom Catalog.lrcat"
    conn = sqlite3.connect(cat)
    conn.executescript(
        """
        CREATE TABLE AgLibraryRootFolder (id_local INTEGER PRIMARY KEY, absolutePath TEXT);
        CREATE TABLE AgLibraryFolder (id_local INTEGER PRIMARY KEY, pathFromRoot TEXT, rootFolder INTEGER);
        CREATE TABLE AgLibraryFile (id_local INTEGER PRIMARY KEY, baseName TEXT, extension TEXT, folder INTEGER);
        CREATE TABLE Adobe_images (id_local INTEGER PRIMARY KEY, rating REAL, pick REAL, colorLabels TEXT, rootFile INTEGER);
        """
    )
    conn.execute("INSERT INTO AgLibraryRootFolder VALUES (1, ?)", (f"{lib}/",))
    folders: dict[str, int] = {}
    for k, (path, rating) in enumerate(sorted(ratings.items()), start=1):
        p = Path(path)
        fid = folders.setdefault(p.parent.name, len(folders) + 1)
        conn.execute("INSERT OR IGNORE INTO AgLibraryFolder VALUES (?, ?, 1)", (fid, p.parent.name + "/"))
        conn.execute("INSERT INTO AgLibraryFile VALUES (?, ?, ?, ?)", (k, p.stem, p.suffix[1:], fid))
        stars, pick = (None, -1) if rating == -1 else (rating, 0)  # Lightroom: a reject is a flag
        conn.execute("INSERT INTO Adobe_images VALUES (?, ?, ?, '', ?)", (k, stars, pick, k))
    conn.execute("INSERT INTO AgLibraryFile VALUES (999, 'deleted', 'JPG', 1)")
    conn.execute("INSERT INTO Adobe_images VALUES (999, 5, 0, '', 999)")
    conn.commit()
    conn.close()
    db = folder / "digikam4.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE AlbumRoots (id INTEGER PRIMARY KEY, specificPath TEXT);
        CREATE TABLE Albums (id INTEGER PRIMARY KEY, albumRoot INTEGER, relativePath TEXT);
        CREATE TABLE Images (id INTEGER PRIMARY KEY, album INTEGER, name TEXT);
        CREATE TABLE ImageInformation (imageid INTEGER PRIMARY KEY, rating INTEGER);
        """
    )
    conn.execute("INSERT INTO AlbumRoots VALUES (1, ?)", (str(lib),))
    for k, (path, rating) in enumerate(sorted(ratings.items()), start=1):
        p = Path(path)
        aid = int(p.parent.name.removeprefix("shoot")) + 1
        conn.execute("INSERT OR IGNORE INTO Albums VALUES (?, 1, ?)", (aid, "/" + p.parent.name))
        conn.execute("INSERT INTO Images VALUES (?, ?, ?)", (k, aid, p.name))
        conn.execute("INSERT INTO ImageInformation VALUES (?, ?)", (k, max(rating, 0)))  # digiKam has no reject here
    conn.commit()
    conn.close()
    return cat, db


def test_catalog_and_digikam_database_without_paths(world: dict[str, Any], shared_lib: Any, private: Path) -> None:
    lib, facts = shared_lib
    rng = np.random.default_rng(4)
    ratings = {p: content_rater(f, rng) for p, f in facts.items()}
    cat, db = make_catalogs(private, lib, ratings)
    before = snapshot(lib) | {str(p): snapshot(private)[str(p)] for p in (cat, db)}

    r = cli("learn", "--catalog", cat, "--name", "from-lr", "--device", "cpu", "--json")
    assert r.code == 3, r.err  # done, but one rated file is missing
    out = json.loads(r.out)
    assert out["ratings_per_source"] == {"lightroom": len(ratings)} and out["missing"] == 1
    assert "1 rated file(s) missing" in r.err and "deleted.JPG" in r.err
    assert out["held_out"]["beats_generic"]

    r = cli("learn", "--digikam-db", db, "--name", "from-dk", "--device", "cpu")
    assert r.code == 0, r.err
    assert "2 rated photo(s)" not in r.out and "BETTER" in r.out and "from digiKam database" in r.err
    from aescore.weights import resolve_model

    assert resolve_model(None).stem == "tiny"  # better, but never the default unless asked
    after = snapshot(lib) | {str(p): snapshot(private)[str(p)] for p in (cat, db)}
    assert after == before
    assert sorted(p.name for p in private.iterdir() if p.is_file()) == sorted([cat.name, db.name])  # no journal or WAL left


def test_too_few_ratings_refuse_with_one_line(world: dict[str, Any], shared_lib: Any, private: Path) -> None:
    lib, facts = shared_lib
    table = write_csv(private / "few.csv", {p: 3 + (i % 2) for i, p in enumerate(sorted(facts)[:20])})
    r = cli("learn", lib, "--ratings", table, "--name", "few", "--device", "cpu")
    assert r.code == 1
    assert "not enough ratings" in r.err and "20 rated photo(s)" in r.err and "at least 50" in r.err
    assert len(r.err.strip().splitlines()) == 1
    same = write_csv(private / "same.csv", {p: 4 for p in facts})
    r = cli("learn", lib, "--ratings", same, "--name", "few", "--device", "cpu")
    assert r.code == 1 and "all rated 4" in r.err
    # Five shoots, each rated alike: every held-out fold is one shoot, with no pair to judge on
    alike = {p: 1 + int(Path(p).parent.name[-1]) for p in facts if int(Path(p).parent.name[-1]) < 5}
    r = cli("learn", lib, "--ratings", write_csv(private / "alike.csv", alike), "--name", "alike", "--device", "cpu")
    assert r.code == 1 and "no held-out part has two photos with different ratings" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert cli("learn", lib, "--device", "cpu").code == 2  # no --name
    assert cli("learn", lib, "--name", "../evil", "--device", "cpu").code == 2
    assert cli("learn", lib, "--name", "tiny", "--device", "cpu").code == 2  # taken by a generic model


def test_personal_model_contract(world: dict[str, Any]) -> None:
    """forward = [0, s] with s the head on the base embedding; the scorer's folding keeps it."""
    import torch

    from aescore.inference.fold import prepare_for_inference
    from aescore.models import create_model
    from aescore.weights import load_weights

    base, card = load_weights(world["weights"])
    net = create_model("personal_ranker", base_architecture="mpa_resnet18", base_args=card["arch_args"] | {"backbone": "resnet10t"}, embed_dim=base.num_features)
    net.base.load_state_dict(base.state_dict())
    g = torch.Generator().manual_seed(0)
    mean, scale, weight = torch.randn(base.num_features, generator=g), torch.rand(base.num_features, generator=g) + 0.5, torch.randn(base.num_features, generator=g)
    net.set_head(mean, scale, weight, 0.7, 0.1, 2.0)
    net.eval()
    x = torch.randn(3, 3, 64, 80, generator=g)
    with torch.no_grad():
        both = outputs(net, x, "embedding")
        logits, emb = both.logits, both.embedding
        base_logits = base(x)
        lo = base_logits[:, 1] - base_logits[:, 0]
        base_emb = outputs(base, x, "embedding").embedding
        s = ((base_emb - mean) / scale) @ weight + 0.7 * (lo - 0.1) / 2.0
        assert torch.allclose(logits[:, 0], torch.zeros(3))
        assert torch.allclose(logits[:, 1], s, atol=1e-4)
        assert torch.allclose(emb, base_emb, atol=1e-5)
        assert torch.allclose(net(x), logits)
        folded = prepare_for_inference(net, "cpu")
        assert torch.allclose(folded(x.contiguous(memory_format=torch.channels_last)), logits, atol=1e-3)


def test_fine_tune_trains_the_backbone_and_reports_its_own_held_out_fold(world: dict[str, Any], shared_lib: Any, private: Path) -> None:
    """--fine-tune's machinery, on the CPU with a few steps (the CLI asks for a GPU)."""
    import torch

    from aescore.learn import learn
    from aescore.learn.finetune import FineTuneConfig
    from aescore.weights import load_weights

    lib, facts = shared_lib
    rng = np.random.default_rng(5)
    table = write_csv(private / "content.csv", {p: content_rater(f, rng) for p, f in facts.items()})
    result = learn([lib], "tuned", ratings_csv=table, device="cpu", fine_tune=True, fine_tune_config=FineTuneConfig(steps=3, batch_pairs=4, crop=48))
    assert result.baseline is not None and result.baseline.folds == 5
    assert result.held_out.folds == 1 and result.held_out.split == "shoot (one held-out fold)"
    assert result.held_out.photos < len(facts)  # only the held-out shoots
    tuned = result.card["training"]["fine_tuned"]
    assert tuned["steps"] == 3 and tuned["train_photos"] + tuned["held_out_photos"] == len(facts)
    net, _ = load_weights(result.path)
    base, _ = load_weights(world["weights"])
    changed = [k for k, v in base.state_dict().items() if not torch.equal(v, net.base.state_dict()[k])]
    assert changed  # the backbone was trained
    r = cli("learn", lib, "--ratings", table, "--name", "tuned", "--device", "cpu", "--fine-tune")
    assert r.code == 2 and "needs a GPU" in r.err
