"""The README's entry points: what `make demo` and `make test` would run (dry runs, nothing installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(target: str, tmp_path: Path, *extra: str) -> list[str]:
    """The commands ``make TARGET`` would run for a fresh virtual environment in ``tmp_path``."""
    out = subprocess.run(
        # --no-print-directory: under `make test` this is a sub-make, which would add
        # "make[1]: Entering directory" lines.
        ["make", "--no-print-directory", "-n", "-B", target, f"VENV={tmp_path / 'venv'}", *extra], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_demo_installs_the_light_install_and_says_so(tmp_path: Path) -> None:
    lines = _dry_run("demo", tmp_path)
    installs = [line for line in lines if "pip install" in line and not line.startswith("echo")]
    assert installs and not [line for line in installs if " -q" in line or "--quiet" in line]
    # No extra at all: no [test], and above all no [train] (PyTorch) nor a torch index (issue 26).
    assert not [line for line in installs if "[" in line or "torch" in line]
    assert any(line.endswith("pip install -e .") for line in installs)
    assert any("echo" in line and "no PyTorch" in line and "MB" in line for line in lines)
    assert lines[-1].endswith("aescore rank samples/")


def test_test_target_installs_everything_and_checks_the_light_install(tmp_path: Path) -> None:
    lines = _dry_run("test", tmp_path)
    assert any("pip install" in line and "[train,test]" in line for line in lines)
    assert any(line.startswith("sh .ci/check-light") for line in lines)
    assert lines[-1].endswith("-m pytest -n 2 --dist loadgroup tests")


def test_check_light_builds_a_wheel_without_torch_and_ranks_the_samples() -> None:
    """What the CI step does (the step itself runs under `make test`: minutes, network)."""
    script = (ROOT / ".ci" / "check-light").read_text(encoding="utf-8")
    assert "pip wheel" in script and "--no-deps" in script
    assert 'import $module' in script and "torch torchvision timm" in script
    assert 'rank "$ROOT/samples"' in script


def test_cpu_only_torch_index_is_used_when_given(tmp_path: Path) -> None:
    index = "https://download.pytorch.org/whl/cpu"
    lines = _dry_run("test", tmp_path, f"TORCH_INDEX={index}")
    torch = [line for line in lines if f"--index-url {index} torch torchvision" in line]
    assert len(torch) == 1
    assert lines.index(torch[0]) < [i for i, line in enumerate(lines) if line.endswith("pip install -e '.[train,test]'")][0]
    assert not [line for line in _dry_run("test", tmp_path) if "--index-url" in line]
    assert not [line for line in _dry_run("demo", tmp_path, f"TORCH_INDEX={index}") if "--index-url" in line]


def test_readme_recipes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    recipes = [line for line in readme.splitlines() if "xargs -0 cp -t best/" in line]
    assert recipes and all(line.startswith("mkdir -p best && ") for line in recipes)
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in readme
    assert "--index-url https://download.pytorch.org/whl/cpu torch torchvision" in readme
