"""Regenerate docs/img/report.png and report-preview.png: a contact sheet of samples/ in chromium.

    PYTHONPATH=. python docs/img/report_png.py

Scores and region maps come from the bundled default model (one forward pass per photo, the
overlay from the model contract's region map); bursts pair each sample with its degraded copy. Needs
playwright and Debian's chromium (as the browser tests do).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageOps
from playwright.sync_api import sync_playwright

from aescore.data.transforms import build_eval_transform
from aescore.inference.stars import assign_stars
from aescore.models.contract import ModelInputs
from aescore.report import ReportPhoto, build_report, make_thumbnail
from aescore.weights import default_weights_path, load_weights

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def main() -> None:
    model, card = load_weights(default_weights_path())
    model.eval()
    transform = build_eval_transform(card["preprocess"])
    rows = []
    for path in sorted((ROOT / "samples").glob("*.jpg")):
        with Image.open(path) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        with torch.no_grad():
            out = model.forward_outputs(ModelInputs(transform(img)[None]), ("region_map",))
            logits, regions = out.logits, out.region_map
        score = float(torch.softmax(logits, 1)[0, 1])
        rows.append((path, img, score, regions[0].tolist()))
    rows.sort(key=lambda r: -r[2])
    subjects = sorted({p.stem.split("_")[0] for p, *_ in rows})
    stars = assign_stars([r[2] for r in rows])
    photos = [
        ReportPhoto(path=f"samples/{p.name}", score=s, rank=k, stars=st, group=subjects.index(p.stem.split("_")[0]),
                    best=False, fields={}, thumbnail=make_thumbnail(img), region_map=m)
        for k, ((p, img, s, m), st) in enumerate(zip(rows, stars), start=1)
    ]
    for g in {p.group for p in photos}:
        min((p for p in photos if p.group == g), key=lambda p: p.rank).best = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cull.html"
        build_report(photos, [("samples/notes.jpg", "cannot decode: not an image")], out, "samples/",
                     model=card.get("sha256", "")[:12] or None, overlay_max_aspect=card["preprocess"]["eval"].get("max_aspect"))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            page.goto(out.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.complete)")
            for key in ["ArrowRight", "x", "ArrowLeft", "4"]:
                page.keyboard.press(key)
            save(page.screenshot(), ROOT / "docs/img/report.png")
            page.keyboard.press("Enter")
            page.wait_for_function("document.getElementById('pv-img').complete && !document.getElementById('pv-map').hidden")
            save(page.screenshot(), ROOT / "docs/img/report-preview.png")
            browser.close()


def save(png: bytes, dest: Path) -> None:
    """A 256-colour PNG: a fraction of the size, enough for a screenshot in the docs."""
    with Image.open(io.BytesIO(png)) as img:
        img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
    print(dest, dest.stat().st_size)


if __name__ == "__main__":
    main()
