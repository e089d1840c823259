"""The console entry point: fast --help, one-line errors, `python -m` forms."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aescore.cli import main as cli_main


def test_help_does_not_import_torch() -> None:
    code = "import sys; from aescore.cli.main import get_app; get_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("module", ["aescore", "aescore.cli.main"])
def test_python_m_lists_every_command(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "evaluate", "score", "rank", "models", "cache", "data"):
        assert command in out.stdout


def test_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli_main, "get_app", lambda: boom)
    monkeypatch.delenv("AESCORE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["models"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error: RuntimeError: something broke" in err and "--debug" in err


def test_unexpected_error_with_debug_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli_main, "get_app", lambda: boom)
    with pytest.raises(RuntimeError):
        cli_main.main(["--debug", "models"])


def test_known_error_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from aescore.errors import UsageError

    def bad(*args: object, **kwargs: object) -> None:
        raise UsageError("bad option")

    monkeypatch.setattr(cli_main, "get_app", lambda: bad)
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["models"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "aescore: error: bad option\n"
