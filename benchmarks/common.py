"""Shared helpers for the benchmark scripts: machine description, timing, JSON output, test images.

Every ``benchmarks/bench_*.py`` prints exactly one JSON object on stdout (so results can be
collected with ``> result.json`` and quoted in ``docs/performance.md``); progress goes to stderr.
Timings are medians over repeats after warm-up, because the build machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python benchmarks/bench_x.py` from a source checkout
    sys.path.insert(0, str(REPO))

from aescore.sysinfo import usable_cores  # noqa: E402  (used here and by the bench scripts)


def log(message: str) -> None:
    """Progress line on stderr (stdout carries the JSON result only)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> dict[str, Any]:
    """Print ``result`` as one JSON object on stdout and return it.

    Adds ``load_avg_1m_at_end``: with ``machine.load_avg_1m_at_start`` it shows how busy the
    (possibly shared) machine was while the benchmark ran; a load above the core count means
    the figures are pessimistic.
    """
    try:
        result.setdefault("load_avg_1m_at_end", round(os.getloadavg()[0], 2))
    except OSError:
        pass
    print(json.dumps(result, indent=2, sort_keys=False, default=str), flush=True)
    return result


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, library versions, torch threads, load."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "mem_total_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        info["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)  # noisy-neighbour indicator
    except OSError:
        pass
    try:
        import PIL

        info["pillow"] = PIL.__version__
    except ImportError:
        pass
    if "torch" in sys.modules or _importable("torch"):
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    return info


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def time_call(fn: Callable[[], Any], warmup: int = 1, repeats: int = 5) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (``time.perf_counter``).

    Returns ``{"median_s", "min_s", "max_s", "repeats", "times_s"}``; quote the median.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return summarise(times)


def summarise(times: Sequence[float]) -> dict[str, Any]:
    """Median / min / max of a list of durations in seconds (rounded for the JSON)."""
    return {
        "median_s": round(statistics.median(times), 6),
        "min_s": round(min(times), 6),
        "max_s": round(max(times), 6),
        "repeats": len(times),
        "times_s": [round(t, 6) for t in times],
    }


def aescore_cmd() -> list[str]:
    """The argv prefix that runs the ``aescore`` CLI of this checkout (console script if beside
    this Python, else ``python -c`` on the entry point)."""
    script = Path(sys.executable).with_name("aescore")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from aescore.cli.main import main; main()"]


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None, stdout: Any = subprocess.DEVNULL) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``argv`` to completion; ``(wall seconds, completed process)``; stderr is captured."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
    return time.perf_counter() - start, proc


def check_ok(proc: subprocess.CompletedProcess, what: str) -> None:
    """Raise with the subprocess' stderr tail when it failed (a benchmark of a failing run is worthless)."""
    if proc.returncode != 0:
        tail = (proc.stderr or "")[-2000:]
        raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")


def rank_round_options(ap: argparse.ArgumentParser, photos_help: str) -> None:
    """``--photos``, ``--rounds``, ``--quick`` and ``--workdir`` of the benchmarks that time whole
    ``rank`` processes in alternating rounds (:func:`rank_round_sizes` reads them)."""
    ap.add_argument("--photos", type=int, default=None, help=photos_help)
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small photos, one round: a smoke test, not a measurement")
    ap.add_argument("--workdir", type=Path, default=None)


def rank_round_sizes(args: argparse.Namespace, name: str) -> tuple[int, int, Path]:
    """(photos, rounds, workdir) from :func:`rank_round_options`: 24 photos and 3 rounds, or 2 and 1
    with ``--quick``; the workdir ``default_workdir(name)`` (``name-quick`` with ``--quick``)."""
    return (args.photos or (2 if args.quick else 24), args.rounds or (1 if args.quick else 3),
            args.workdir or default_workdir(f"{name}-quick" if args.quick else name))


def rank_setup(workdir: Path, paths: Sequence[Path]) -> tuple[Path, dict[str, str]]:
    """``workdir/files.txt`` listing ``paths`` (for ``rank --files-from``) and an environment whose
    cache and config folders are the workdir's (the user's are never touched)."""
    file_list = workdir / "files.txt"
    file_list.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    return file_list, dict(os.environ, XDG_CACHE_HOME=str(workdir / "xdg-cache"), XDG_CONFIG_HOME=str(workdir / "xdg-config"))


def rank_once(file_list: Path, env: dict[str, str], extra: Sequence[str] = ()) -> tuple[float, float, str]:
    """One ``aescore rank --files-from LIST --no-cache --device cpu [extra]`` from scratch, as a
    whole process -> (wall s, CPU s it used: user + system from ``getrusage``, its summary line);
    raises when it failed."""
    import resource

    argv = [*aescore_cmd(), "rank", "--files-from", str(file_list), "--no-cache", "--device", "cpu", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, proc = run_timed(argv, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    check_ok(proc, " ".join(["aescore rank", *extra]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = (proc.stderr or "").strip().splitlines()[-1] if proc.stderr else ""
    return wall, cpu, summary


def default_workdir(name: str) -> Path:
    """``$TMPDIR/aescore-bench/<name>``: generated inputs are kept there between runs."""
    return Path(tempfile.gettempdir()) / "aescore-bench" / name


def bench_weights(workdir: Path, arch: str = "mpa_resnet18") -> tuple[Path, str]:
    """A weights file to benchmark with: ``(card path, "default" | "untrained")``.

    The shipped default weights when there are any; else an untrained ``arch`` (same compute as a
    trained one) saved once with :func:`aescore.weights.save_weights` under ``workdir``.
    """
    from aescore.errors import AescoreError

    try:
        from aescore.weights import default_weights_path

        path = default_weights_path()
        return path, "default"
    except AescoreError:
        pass
    card = workdir / f"bench-{arch}.json"
    if card.is_file() and card.with_suffix(".safetensors").is_file():
        return card, "untrained"
    import torch

    from aescore.models import create_model
    from aescore.weights import save_weights

    torch.manual_seed(0)
    model = create_model(arch, pretrained=False)
    workdir.mkdir(parents=True, exist_ok=True)
    save_weights(model, workdir / f"bench-{arch}.safetensors", {"summary": "untrained, for benchmarks only"})
    return card, "untrained"


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    """``a / b`` rounded, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


# --------------------------------------------------------------------------- generated photos
# Camera-like content without any image library beyond numpy + Pillow: a smooth low-resolution
# scene (gradients, soft shapes) upscaled, plus sensor-like grain. The grain matters: the cost of
# decoding a JPEG is dominated by its entropy-coded data, and flat synthetic images compress to a
# fraction of a real photo's size (and decode unrealistically fast). The grain level below gives
# about 2-4 bits per pixel at quality 92, in the range of camera JPEGs.

def synthetic_photo(width: int, height: int, seed: int, grain: float = 6.0) -> Any:
    """A ``width`` x ``height`` RGB PIL image that JPEG-compresses and decodes like a photo."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    sw, sh = max(8, width // 16), max(8, height // 16)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    base = np.empty((sh, sw, 3), np.float32)
    for c in range(3):  # a sky-to-ground gradient with a random tilt per channel
        a, b, off = rng.uniform(-1, 1, 3)
        base[..., c] = 128 + 90 * np.tanh(a * xx / sw + b * yy / sh + off)
    small = Image.fromarray(base.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(small)
    for _ in range(int(rng.integers(6, 14))):  # soft "objects"
        x0, y0 = int(rng.integers(0, sw)), int(rng.integers(0, sh))
        x1, y1 = x0 + int(rng.integers(2, sw // 2 + 3)), y0 + int(rng.integers(2, sh // 2 + 3))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    small = small.filter(ImageFilter.GaussianBlur(0.8))
    img = small.resize((width, height), Image.BICUBIC)
    # Grain, row band by row band to bound memory on 24 MP images.
    arr = np.asarray(img).copy()
    band = 512
    for top in range(0, height, band):
        rows = arr[top : top + band]
        noise = rng.normal(0.0, grain, size=rows.shape[:2] + (1,)).astype(np.float32)  # luminance grain
        noise = noise + rng.normal(0.0, grain / 2, size=rows.shape).astype(np.float32)  # chroma grain
        arr[top : top + band] = np.clip(rows.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def write_jpeg(
    img: Any,
    path: Path,
    *,
    progressive: bool = False,
    orientation: int = 1,
    quality: int = 92,
    camera: tuple[str, str] = ("AescoreBench", "Synthetic-1"),
    when: str = "2024:06:01 12:00:00",
) -> Path:
    """Save ``img`` as a JPEG with camera-like EXIF (Make, Model, Orientation, DateTimeOriginal)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = camera[0], camera[1], int(orientation)
    exif.get_ifd(0x8769)[0x9003] = when  # DateTimeOriginal lives in the Exif sub-IFD
    path.parent.mkdir(parents=True, exist_ok=True)
    from aescore.fsutil import atomic_path

    with atomic_path(path, fsync=False) as tmp:  # generated inputs: regenerated if lost
        img.save(tmp, "JPEG", quality=quality, progressive=progressive, optimize=progressive, exif=exif.tobytes(), subsampling="4:2:0")
    return path
