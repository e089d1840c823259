"""The ``aescore`` console script: assembles the command groups and maps known errors to exit codes."""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

# Metavars for options whose declaration names none, by the type Typer would print ("<int>").
_TYPE_METAVARS = {"<int>": "N", "<float>": "X", "<str>": "TEXT", "<path>": "PATH"}


def _tidy_param(param: Any) -> None:
    """Plain metavars in ``--help``: nothing for flags (Typer prints ``<bool>``), ``N``/``X``/``TEXT``/
    ``PATH`` for options declared without one, and upper-case argument names without the Python
    type (``SRC_DIR`` rather than ``{src_dir}`` and ``<path>``). Only what is displayed changes."""
    if getattr(param, "_aescore_tidy", False):
        return
    param._aescore_tidy = True
    if isinstance(param, TyperOption):
        if param.is_flag:
            param.metavar = ""
        elif param.metavar is None:
            try:
                shown = param.display_type_rich(ctx=None)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - choices need a context; they display fine as they are
                shown = None
            if shown in _TYPE_METAVARS:
                param.metavar = _TYPE_METAVARS[shown]
    elif isinstance(param, TyperArgument):
        name = param.metavar or (param.name or "ARG").upper()
        param.metavar = name
        many = "..." if param.nargs != 1 else ""
        usage = f"{name}{many}" if param.required else f"[{name}]{many}"
        # Instance-level overrides of Typer's display helpers (no public hook exists for them).
        param.display_type_rich = types.MethodType(lambda self, ctx=None: None, param)  # type: ignore[method-assign]
        param._usage_display_name = types.MethodType(lambda self: usage, param)  # type: ignore[method-assign]


def _tidy_command(command: Any) -> None:
    """:func:`_tidy_param` for ``command``'s parameters and, for a group, all its subcommands."""
    for param in getattr(command, "params", []):
        _tidy_param(param)
    if not isinstance(command, _AescoreGroup):
        # The -h/--help option is made on demand by get_params: tidy it there.
        plain_get_params = command.get_params

        def get_params(ctx: Any) -> list[Any]:
            params = plain_get_params(ctx)
            for param in params:
                _tidy_param(param)
            return params

        command.get_params = get_params
    for sub in getattr(command, "commands", {}).values():
        _tidy_command(sub)


def _sibling_hint(err: Exception) -> None:
    """Turn "No such option: --top" under ``score`` into a line naming the command that has it."""
    ctx = getattr(err, "ctx", None)
    option = getattr(err, "option_name", None)
    parent = getattr(ctx, "parent", None)
    if ctx is None or not option or parent is None:
        return
    here = ctx.info_name
    owners = [
        name
        for name, cmd in sorted(getattr(parent.command, "commands", {}).items())
        if name != here and any(option in (*p.opts, *getattr(p, "secondary_opts", ())) for p in cmd.params)
    ]
    if owners:
        where = " and ".join(f"`{parent.command_path} {name}`" for name in owners)
        err.message = f"No such option: {option} (an option of {where}, not of `{ctx.command_path}`)"  # type: ignore[attr-defined]
        err.possibilities = None  # type: ignore[attr-defined]


class _AescoreGroup(TyperGroup):
    """The root command group: clean metavars everywhere, and usage errors that name the sibling
    command an unknown option belongs to (``score --top`` -> ``--top`` is ``rank``'s)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy_command(self)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:  # including the completion options Typer adds after __init__
            _tidy_param(param)
        return params

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Click would swallow it and exit silently: say so (what was finished is kept).
            print("aescore: interrupted", file=sys.stderr, flush=True)
            raise SystemExit(130) from None
        except Exception as err:
            if type(err).__name__ == "NoSuchOption":
                _sibling_hint(err)
            raise


app = typer.Typer(
    name="aescore",
    cls=_AescoreGroup,
    help="Judge the aesthetic quality of photographs: train, evaluate, score and rank.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        from aescore import __version__

        print(f"aescore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, expose_value=False, callback=_show_version, help="Show the version and exit."
    ),
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
    from aescore.cli import cache, data, evaluate, learn, models, report, score, train  # noqa: F401  (they register on `app`)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a known AescoreError becomes one stderr line and its exit code."""
    from aescore.errors import AescoreError
    from aescore.termtext import say

    application = get_app()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get("AESCORE_DEBUG") == "1"
    try:
        application(args=argv, standalone_mode=True)
    except SystemExit as done:
        if argv is None and done.code in (None, 0, 3) and _first_word(sys.argv[1:]) in ("score", "rank", "report"):
            # score/rank/report finished: results printed, sidecars, page and cache written and closed. Skip
            # the interpreter's ~2 s teardown of torch (only as the process entry point).
            from aescore.sysinfo import fast_exit

            fast_exit(done.code or 0)
        raise
    except AescoreError as err:
        if debug:
            raise
        from aescore.errors import ConfigError

        text = config_error_line(err) if isinstance(err, ConfigError) else str(err)
        say(f"aescore: error: {text}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("aescore: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # an unexpected bug: one line for users, the traceback with --debug
        if debug:
            raise
        from aescore.errors import UsageError, missing_training_package, needs_training_stack

        package = missing_training_package(err)
        if package is not None:
            # The light install (pip install aescore) has no torch, torchvision or timm: whatever
            # command reached for one needs the train extra. One place for every command.
            say(f"aescore: error: `{_asked_for(argv if argv is not None else sys.argv[1:])}` {needs_training_stack(package)}")
            sys.exit(UsageError.exit_code)
        say(f"aescore: internal error: {type(err).__name__}: {err} (run with --debug for the traceback)")
        sys.exit(1)


def config_error_line(err: Any, flags: dict[str, str] | None = None) -> str:
    """A library :class:`~aescore.errors.ConfigError` as one line naming the command's flag.

    Library code names settings, not flags; the flag of a setting is ``flags[setting]`` when the
    command passes its own names, else ``--`` + the setting with dashes. A check the model cannot
    serve (:class:`~aescore.errors.CheckUnavailable`) is named by its own flag or ``--check NAME``.
    """
    from aescore.errors import CheckUnavailable

    if isinstance(err, CheckUnavailable):
        from aescore.checks import get_check

        return f"{get_check(err.check).flag or f'--check {err.check}'} {err.need}"
    flag = (flags or {}).get(err.setting) or "--" + err.setting.replace("_", "-")
    return f"{flag} {err.problem}"


#: Options that exist only to use PyTorch: named in the missing-extra line beside the command.
_TORCH_OPTIONS = ("--fine-tune", "--tta-crops")


def _asked_for(args: list[str]) -> str:
    """What the command line asked for, as the missing-extra line names it: ``aescore`` and the
    command words (``data pairwise``), plus any option of :data:`_TORCH_OPTIONS` it used."""
    words: list[str] = []
    for a in args:
        if a.startswith("-"):
            if words:
                break
            continue
        words.append(a)
    groups = {g.name for g in app.registered_groups}  # `data`, `cache`: the next word is a subcommand
    words = words[:2] if words and words[0] in groups else words[:1]  # (the rest are paths)
    used = [o for o in _TORCH_OPTIONS if any(a == o or a.startswith(o + "=") for a in args)]
    return " ".join(["aescore", *words, *used])


def _first_word(args: list[str]) -> str | None:
    """The command named on the command line (the first argument that is not an option)."""
    return next((a for a in args if not a.startswith("-")), None)


if __name__ == "__main__":
    # Run as `python -m aescore.cli.main` (e.g. `torchrun -m aescore.cli.main train ...`): this file
    # is then the module `__main__`, while the command modules register on `aescore.cli.main`'s app.
    from aescore.cli.main import main as _main

    _main()
