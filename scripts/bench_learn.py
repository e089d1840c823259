"""Time `aescore learn` with the embeddings already cached (the issue's goal: 5,000 rated photos in
under 30 s on 2 CPU cores).

Generates N small photos (64 x 80 JPEG, 50 folders) with Lightroom-style sidecars rated by a
simple colour rule, runs `learn` once to fill the score cache (one network pass), then again and
reports the second run's wall time per step. Uses the default model unless --model is given;
everything is written under a scratch folder (its own XDG cache/data/config).

Usage: python scripts/bench_learn.py [--photos 5000] [--model NAME|FILE] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=5000)
    parser.add_argument("--model", default=None)
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "aescore-bench-learn"))
    args = parser.parse_args()
    scratch = Path(args.scratch)
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")):
        os.environ[var] = str(scratch / sub)
    from PIL import Image

    lib = scratch / "lib"
    rng = np.random.default_rng(0)
    made = 0
    for k in range(args.photos):
        path = lib / f"shoot{k % 50:02d}" / f"IMG_{k:05d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        warm = rng.random() < 0.5
        colour = np.array([200, 90, 50]) if warm else np.array([50, 90, 200])
        Image.fromarray(np.clip(colour + rng.normal(0, 40, (64, 80, 3)), 0, 255).astype("uint8")).save(path)
        rating = int((4 if warm else 2) + rng.integers(0, 2))
        path.with_suffix(".xmp").write_text(
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/></rdf:RDF></x:xmpmeta>'
        )
        made += 1
    print(f"{made} photos generated under {lib}", file=sys.stderr)
    from aescore.learn import learn

    for run in ("first (fills the cache)", "second (embeddings cached)"):
        t = time.perf_counter()
        result = learn([lib], "bench", model=args.model, device="cpu", replace=True)
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
        print(f"{run}: {time.perf_counter() - t:.1f}s ({steps}); held-out accuracy {result.held_out.personal_accuracy.value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
