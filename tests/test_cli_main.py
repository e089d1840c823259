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


# --------------------------------------------------------------------------- issue 15 items 23-25


def _run(args: list[str]) -> tuple[int, str, str]:
    env = {**__import__("os").environ, "COLUMNS": "160", "TERM": "dumb"}
    out = subprocess.run([sys.executable, "-m", "aescore", *args], capture_output=True, text=True, env=env)
    return out.returncode, out.stdout, out.stderr


def test_version() -> None:
    from aescore import __version__

    code, out, _ = _run(["--version"])
    assert (code, out) == (0, f"aescore {__version__}\n")


def test_shell_completion_is_offered() -> None:
    code, out, _ = _run(["--help"])
    assert code == 0 and "--install-completion" in out and "--show-completion" in out
    code, out, _ = _run(["--show-completion", "bash"])
    assert code == 0 and "complete" in out and "COMP_WORDS" in out


def _all_command_paths() -> list[list[str]]:
    import typer

    root = typer.main.get_command(cli_main.get_app())
    paths: list[list[str]] = [[]]

    def walk(command: object, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_help_shows_no_python_types() -> None:
    from typer.testing import CliRunner

    app = cli_main.get_app()
    for path in _all_command_paths():
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "160"}, terminal_width=160)
        assert result.exit_code == 0, path
        for python_type in ("<bool>", "<int>", "<float>", "<str>", "<path>", "<list[str]>", "{src_dir}"):
            assert python_type not in result.stdout, (path, python_type)


def test_help_shows_the_extras_in_brackets() -> None:
    """Rich reads ``[name]`` as markup: an unescaped ``aescore[train]`` would print as ``aescore``,
    a pip command that installs the wrong thing."""
    import re

    from typer.testing import CliRunner

    app = cli_main.get_app()
    for path in _all_command_paths():
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
        assert "'aescore'" not in result.stdout, path
        for extra in re.findall(r"aescore\[(\w+)\]", result.stdout):
            assert extra in ("train", "ray", "pretrained", "heif", "raw"), (path, extra)
    rank = CliRunner().invoke(app, ["rank", "--help"], env={"COLUMNS": "400"}, terminal_width=400).stdout
    assert "pip install 'aescore[train]'" in rank and "pip install 'aescore[ray]'" in rank


def test_option_of_the_sibling_command_is_named() -> None:
    code, _, err = _run(["score", "photos", "--top", "2"])
    assert code == 2
    assert "No such option: --top" in err and "rank`" in err and "score`" in err
    code, _, err = _run(["score", "photos", "--no-such-flag"])
    assert code == 2 and "No such option: --no-such-flag" in err and "rank`" not in err
