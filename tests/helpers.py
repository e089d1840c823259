"""Test-only generators shared by the test modules (photos, tiny weights, tiny AVA/AADB/CSV
datasets). Imported as ``helpers`` (pytest puts this folder on sys.path); fixtures live in conftest.py."""

from __future__ import annotations

import csv
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

# --------------------------------------------------------------------------- photo generators


def pattern(w: int, h: int, seed: int) -> np.ndarray:
    """A smooth, asymmetric RGB pattern (so rotations and crops change what the model sees)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([xx / w, yy / h, (xx * yy) / (w * h)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype("uint8")


def png_bomb_bytes(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (Pillow's bomb guard refuses it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def rotated_pair(folder: Path, seed: int = 1) -> tuple[Path, Path]:
    """``upright.png`` and ``stored_rotated.png``: the same pixels, the second stored turned 90
    degrees with EXIF Orientation 6 ("rotate 90 CW to display")."""
    upright = Image.fromarray(pattern(72, 48, seed))
    a = folder / "upright.png"
    upright.save(a)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # CCW; Orientation 6 turns it back CW
    exif = Image.Exif()
    exif[0x0112] = 6
    b = folder / "stored_rotated.png"
    stored.save(b, exif=exif)
    return a, b


def make_photo_folder(root: Path) -> dict[str, Path]:
    """Every input case of a real library; returns name -> path. Good ones first in the dict."""
    root.mkdir(parents=True, exist_ok=True)
    sub = root / "sub"
    sub.mkdir()
    p: dict[str, Path] = {}
    img = Image.fromarray(pattern(80, 60, 0))
    p["jpeg"] = root / "a.jpg"
    img.save(p["jpeg"], quality=90)
    p["progressive"] = sub / "b progressive.jpeg"
    Image.fromarray(pattern(90, 64, 2)).save(p["progressive"], quality=85, progressive=True)
    p["spaces"] = root / "name with spaces.png"
    Image.fromarray(pattern(64, 64, 3)).save(p["spaces"])
    p["unicode"] = root / "фото 写真 é.webp"
    Image.fromarray(pattern(70, 50, 4)).save(p["unicode"])
    p["newline"] = root / "new\nline.bmp"
    Image.fromarray(pattern(50, 70, 5)).save(p["newline"])
    p["png16"] = sub / "grey16.png"
    Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)).save(p["png16"])
    p["cmyk"] = sub / "cmyk.jpg"
    Image.fromarray(pattern(60, 60, 6)).convert("CMYK").save(p["cmyk"])
    p["palette"] = sub / "palette_alpha.png"
    pal = Image.fromarray(pattern(48, 48, 7)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(p["palette"], transparency=0)
    p["la"] = sub / "grey_alpha.png"
    Image.fromarray(pattern(48, 40, 8)).convert("LA").save(p["la"])
    p["gif"] = sub / "anim.gif"
    frames = [Image.fromarray(pattern(40, 40, s)).convert("P") for s in (9, 10)]
    frames[0].save(p["gif"], save_all=True, append_images=frames[1:], duration=100)
    p["tiff"] = sub / "c.tif"
    Image.fromarray(pattern(56, 42, 11)).save(p["tiff"])
    p["upright"], p["rotated"] = rotated_pair(root)
    # --- unreadable ones
    buf = io.BytesIO()
    Image.fromarray(pattern(120, 90, 12)).save(buf, "JPEG", quality=95)
    p["truncated"] = root / "truncated.jpg"
    p["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    p["empty"] = root / "empty.jpg"
    p["empty"].write_bytes(b"")
    p["notimage"] = root / "notes.jpg"
    p["notimage"].write_text("this is not a photo\n")
    p["bomb"] = root / "bomb.png"
    p["bomb"].write_bytes(png_bomb_bytes())
    # --- ignored: other extensions, hidden files, and a symlink loop back to the root
    (root / "readme.txt").write_text("ignored")
    Image.fromarray(pattern(20, 20, 13)).save(root / ".hidden.png")
    (sub / "loop").symlink_to(root, target_is_directory=True)
    return p


GOOD = ["jpeg", "progressive", "spaces", "unicode", "newline", "png16", "cmyk", "palette", "la", "gif", "tiff", "upright", "rotated"]
BAD = ["truncated", "empty", "notimage", "bomb"]



def outputs(model: Any, x: Any, *want: str, crops: Any = None) -> Any:
    """``model``'s outputs of the model contract for whole frames ``x`` (and detail ``crops``):
    its logits and the optional outputs named in ``want``."""
    from aescore.models.contract import ModelInputs

    return model.forward_outputs(ModelInputs(x, crops), want)


def randomise_batchnorm(model: Any, seed: int = 0) -> None:
    """Give every BatchNorm2d random statistics and affine parameters: fresh BatchNorms are
    near-identities, and real statistics make a wrong fold or layer order visible."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


def make_tiny_faultnet(folder: Path) -> Path:
    """A random faultnet (reasons head, region map, embedding) on a small timm backbone, with a
    64-px whole view and two 48-px detail crops, saved with its card as ``tinyfault``."""
    import torch

    from aescore.models import create_model
    from aescore.weights import save_weights

    torch.manual_seed(0)
    model = create_model("faultnet", backbone="resnet10t").eval()
    randomise_batchnorm(model)
    recipe = {"mean": [0.5] * 3, "std": [0.5] * 3,
              "eval": {"mode": "shorter", "size": 64, "max_aspect": 1.5,
                       "detail": {"crops": 2, "size": 48, "decode_shorter": 200}}}
    path = folder / "tinyfault.safetensors"
    save_weights(model, path, {"name": "tinyfault", "preprocess": recipe, "training": {"dataset": "none"}})
    return path


def make_tiny_weights(folder: Path) -> Path:
    """A real (random) MPA model on a tiny timm backbone, with a 64 px eval size for speed."""
    import torch

    from aescore.models import create_model
    from aescore.weights import save_weights

    torch.manual_seed(0)
    model = create_model("mpa_resnet18", backbone="resnet10t")
    pp = dict(model.default_preprocess)
    pp["eval"] = {"mode": "shorter", "size": 64, "max_aspect": 1.5}
    pp["train"] = {"kind": "mpa", "resize_shorter": 64, "crop": 48}
    path = folder / "tiny.safetensors"
    save_weights(model, path, {"name": "tiny", "summary": "tiny random test model", "preprocess": pp, "training": {"dataset": "none"}})
    return path



# --------------------------------------------------------------------------- tiny datasets
# Tiny synthetic datasets in the real AVA / AADB / CSV layouts, for offline tests and demos.
# 
# The label is learnable: "good" images are bright, high-contrast and sharp (fine texture),
# "bad" ones dark, low-contrast and blurred. Everything is a deterministic function of ``seed``.
# 



AVA_TEST_LIST = Path("aesthetics_image_lists") / "generic_test.jpgl"


def make_image(good: bool, size: tuple[int, int], rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """A textured RGB image; ``good`` = bright & sharp, else dark & blurred. ``strength`` in [0, 1] scales the gap."""
    w, h = size
    noise = rng.random((h, w, 1))
    yy, xx = np.mgrid[0:h, 0:w]
    period = rng.integers(3, 7)
    stripes = ((xx + yy * rng.integers(0, 2)) // period % 2)[..., None].astype(np.float64)
    tint = rng.uniform(0.7, 1.0, size=(1, 1, 3))
    pattern = 0.5 * noise + 0.5 * stripes
    if good:
        base, contrast = 150 + 40 * strength, 60 + 40 * strength
    else:
        base, contrast = 110 - 60 * strength, 50 - 25 * strength
    arr = np.clip(base + contrast * (pattern - 0.5) * 2, 0, 255) * tint
    img = Image.fromarray(arr.astype(np.uint8), mode="RGB")
    if not good:
        img = img.filter(ImageFilter.GaussianBlur(radius=1.0 + 2.0 * strength))
    return img


def _votes_for(mean: float, rng: np.random.Generator, n_votes: int) -> list[int]:
    # A discretised normal around ``mean`` (sd 1.4) over ratings 1..10, sampled as vote counts.
    ratings = np.arange(1, 11)
    p = np.exp(-0.5 * ((ratings - mean) / 1.4) ** 2)
    return rng.multinomial(n_votes, p / p.sum()).tolist()


def _save_jpeg(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=90)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(200, len(data) // 3)])  # header intact, scan data cut short


def make_tiny_ava(
    root: Path,
    n_train: int = 48,
    n_test: int = 16,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    corrupt: bool = True,
) -> dict[str, Any]:
    """Write a tiny AVA-format dataset under ``root`` and describe it.

    Layout: ``AVA.txt`` (15 columns; some rows with votes in the rating-10 column),
    ``images/<id>.jpg`` and ``aesthetics_image_lists/generic_test.jpgl``. Ids are 6-digit numbers
    and train/test rows are interleaved. Good images get means around 5.6-7.6, bad ones 3.0-4.5;
    one extra training row has all its votes at rating 5 (mean exactly 5.0: positive under
    RGNet's >=, negative under MPA's >).

    With ``corrupt``: one training row's image is missing (``missing_ids``), one training row has
    zero votes (``no_vote_ids``), one test image is an empty file (``empty_ids``), and one training
    plus one test image are truncated JPEGs (``truncated_ids``; found only on decode).

    Returns a dict: ``root``, ``train_ids`` / ``test_ids`` (all AVA.txt ids per split, including
    the broken ones), ``missing_ids``, ``empty_ids``, ``no_vote_ids``, ``truncated_ids``,
    ``borderline_id``, ``rating10_ids`` (rows with votes at rating 10), ``means`` (id -> mean),
    ``n_skipped_at_index`` (missing + empty + no-vote rows).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    n_rows = n_train + n_test
    test_slots = set(np.linspace(1, n_rows - 1, n_test, dtype=int).tolist()) if n_test else set()
    while len(test_slots) < n_test:  # linspace may collide for tiny n; fill deterministically
        test_slots.add(max(set(range(n_rows)) - test_slots))
    lines: list[str] = []
    train_ids: list[str] = []
    test_ids: list[str] = []
    means: dict[str, float] = {}
    rating10: list[str] = []
    for k in range(n_rows):
        image_id = str(100000 + 7 * k)
        split_ids = test_ids if k in test_slots else train_ids
        good = len(split_ids) % 2 == 0  # alternate within each split: both stay balanced
        mean = rng.uniform(5.6, 7.6) if good else rng.uniform(3.0, 4.5)
        votes = _votes_for(mean, rng, int(rng.integers(60, 200)))
        if good and not rating10:
            votes[9] += 3  # make sure the rating-10 column is exercised
        if votes[9] > 0:
            rating10.append(image_id)
        split_ids.append(image_id)
        lines.append(_row(k + 1, image_id, votes, rng))
        means[image_id] = sum(r * v for r, v in enumerate(votes, 1)) / sum(votes)
        _save_jpeg(make_image(good, size, rng), images / f"{image_id}.jpg")
    # Borderline row: mean exactly 5.0.
    borderline = str(100000 + 7 * n_rows)
    lines.append(_row(n_rows + 1, borderline, [0, 0, 0, 0, 50, 0, 0, 0, 0, 0], rng))
    _save_jpeg(make_image(True, size, rng, strength=0.0), images / f"{borderline}.jpg")
    train_ids.append(borderline)
    means[borderline] = 5.0
    info: dict[str, Any] = {"missing_ids": [], "empty_ids": [], "no_vote_ids": [], "truncated_ids": []}
    if corrupt:
        if len(train_ids) < 4 or len(test_ids) < 2:
            raise ValueError("corrupt=True needs n_train >= 3 and n_test >= 2")
        missing, truncated_train = train_ids[0], train_ids[1]
        empty, truncated_test = test_ids[0], test_ids[1]
        (images / f"{missing}.jpg").unlink()
        (images / f"{empty}.jpg").write_bytes(b"")
        _truncate(images / f"{truncated_train}.jpg")
        _truncate(images / f"{truncated_test}.jpg")
        no_votes = str(100000 + 7 * (n_rows + 1))
        lines.append(_row(n_rows + 2, no_votes, [0] * 10, rng))
        _save_jpeg(make_image(True, size, rng), images / f"{no_votes}.jpg")
        train_ids.append(no_votes)
        info.update(
            missing_ids=[missing], empty_ids=[empty], no_vote_ids=[no_votes], truncated_ids=[truncated_train, truncated_test]
        )
    (root / "AVA.txt").write_text("".join(lines), encoding="utf-8")
    (root / AVA_TEST_LIST).parent.mkdir(parents=True, exist_ok=True)
    (root / AVA_TEST_LIST).write_text("".join(f"{i}\n" for i in test_ids), encoding="utf-8")
    info.update(
        root=root,
        train_ids=train_ids,
        test_ids=test_ids,
        borderline_id=borderline,
        rating10_ids=rating10,
        means=means,
        n_skipped_at_index=len(info["missing_ids"]) + len(info["empty_ids"]) + len(info["no_vote_ids"]),
    )
    return info


def _row(index: int, image_id: str, votes: list[int], rng: np.random.Generator) -> str:
    tags = rng.integers(0, 60, size=2).tolist()
    challenge = int(rng.integers(1, 1500))
    return " ".join(str(x) for x in [index, image_id, *votes, *tags, challenge]) + "\n"


def make_tiny_aadb(
    root: Path,
    n_train: int = 40,
    n_val: int = 10,
    n_test: int = 12,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
) -> dict[str, Any]:
    """Write a tiny AADB-format dataset (three score lists + ``datasetImages_originalSize/``).

    Scores in [0, 1] rise with the image's quality strength, so the regression is learnable.
    Returns ``root``, ``image_dir``, ``scores`` (split -> list of (filename, score)).
    """
    from aescore.data.aadb import LISTS

    root = Path(root)
    rng = np.random.default_rng(seed)
    image_dir = root / "datasetImages_originalSize"
    scores: dict[str, list[tuple[str, float]]] = {}
    k = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        rows = []
        for _ in range(n):
            score = float(rng.uniform(0.0, 1.0))
            good = score >= 0.5
            name = f"farm1_{1000 + k}_{int(rng.integers(10**6, 10**7))}.jpg"
            _save_jpeg(make_image(good, size, rng, strength=abs(score - 0.5) * 2), image_dir / name)
            rows.append((name, round(score, 6)))
            k += 1
        scores[split] = rows
        (root / LISTS[split]).write_text("".join(f"{n} {s}\n" for n, s in rows), encoding="utf-8")
    return {"root": root, "image_dir": image_dir, "scores": scores}


def make_tiny_csv(
    root: Path,
    n: int = 40,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    column: str = "score",
    groups: int = 0,
    with_test: bool = False,
) -> dict[str, Any]:
    """Write photos under ``root/photos/`` and ``root/train.csv`` (plus ``root/test.csv`` if ``with_test``).

    ``column``: "score" (scores in 1..10) or "label" (0/1). ``groups`` > 0 gives every photo a
    ``group`` column value: consecutive photos share one of ``groups`` groups (copies of one
    "source"); with ``with_test`` the test.csv takes whole groups (the last fifth of them).
    Returns ``root``, ``csv`` (train.csv path), ``test_csv`` (or None), ``rows`` (dicts as written).
    """
    if column not in ("score", "label"):
        raise ValueError("column must be 'score' or 'label'")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for k in range(n):
        good = k % 2 == 0
        rel = f"photos/img_{k:04d}.jpg"
        _save_jpeg(make_image(good, size, rng), root / rel)
        value: Any = int(good) if column == "label" else round(float(rng.uniform(6, 9) if good else rng.uniform(1, 4)), 3)
        row: dict[str, Any] = {"path": rel, column: value}
        if groups:
            row["group"] = f"src{k * groups // n}"
        rows.append(row)
    if groups:
        test_groups = {f"src{g}" for g in range(groups - max(1, groups // 5), groups)} if with_test else set()
        train_rows = [r for r in rows if r["group"] not in test_groups]
        test_rows = [r for r in rows if r["group"] in test_groups]
    else:
        n_test = max(1, n // 5) if with_test else 0
        train_rows, test_rows = rows[: n - n_test], rows[n - n_test :]
    fields = ["path", column] + (["group"] if groups else [])
    _write_csv(root / "train.csv", fields, train_rows)
    if with_test:
        _write_csv(root / "test.csv", fields, test_rows)
    return {"root": root, "csv": root / "train.csv", "test_csv": root / "test.csv" if with_test else None, "rows": rows}


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- without PyTorch

from aescore.errors import TRAINING_PACKAGES  # noqa: E402 - the training stack the light install lacks

_BLOCKER = '''\
"""Installed by tests/helpers.py: this interpreter behaves as if PyTorch, torchvision and timm
were not installed (``import torch`` raises ModuleNotFoundError, as in the light install)."""
import sys

_BLOCKED = {blocked!r}


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


def torch_free_env(folder: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a subprocess in which ``torch``, ``torchvision`` and ``timm`` cannot be
    imported (a ``sitecustomize`` in ``folder`` refuses them, as a venv without them would), for
    testing the culling commands of the light install. ``base``: the environment to extend
    (default: this process's)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_BLOCKER.format(blocked=TRAINING_PACKAGES))
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_torch_free(args: list[str], folder: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None,
                   timeout: float = 300) -> Any:
    """``python -m aescore *args`` in a subprocess that cannot import the training stack
    (:func:`torch_free_env`); the ``subprocess.CompletedProcess`` (text mode). ``env``: the
    environment to start from (e.g. with the test's XDG folders)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "aescore", *args], env=torch_free_env(folder, env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def load_script(name: str) -> Any:
    """``scripts/<name>.py`` imported as a module (registered in ``sys.modules`` as ``name``, so
    its dataclasses and pickling work): the training and evaluation scripts' functions, tested."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module
