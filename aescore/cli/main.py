"""The ``aescore`` console script: assembles the command groups and maps known errors to exit codes."""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="aescore",
    help="Judge the aesthetic quality of photographs: train, evaluate, score and rank.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    """Judge the aesthetic quality of photographs: train, evaluate, score and rank.

    Exit status: 0 success; 1 fatal error; 2 usage error; 3 some inputs were skipped as unreadable.
    """
    if debug:
        os.environ["AESCORE_DEBUG"] = "1"


_registered = False


def get_app() -> typer.Typer:
    """The fully assembled app (for ``typer.testing.CliRunner``)."""
    global _registered
    if not _registered:
        _register()
        _registered = True
    return app


def _register() -> None:
    """Attach every command module; each keeps heavy imports inside its functions."""
    from aescore.cli import cache, data, evaluate, learn, models, score, train  # noqa: F401  (they register on `app`)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a known AescoreError becomes one stderr line and its exit code."""
    from aescore.errors import AescoreError

    application = get_app()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get("AESCORE_DEBUG") == "1"
    try:
        application(args=argv, standalone_mode=True)
    except AescoreError as err:
        if debug:
            raise
        print(f"aescore: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("aescore: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # an unexpected bug: one line for users, the traceback with --debug
        if debug:
            raise
        print(f"aescore: internal error: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    # Run as `python -m aescore.cli.main` (e.g. `torchrun -m aescore.cli.main train ...`): this file
    # is then the module `__main__`, while the command modules register on `aescore.cli.main`'s app.
    from aescore.cli.main import main as _main

    _main()
