"""Text that is safe to print: file names, EXIF fields and messages never drive the terminal.

Every control character (C0, DEL, C1) is shown escaped wherever aescore prints text, so a file
name or an EXIF field cannot move the cursor, retitle the terminal or hide a line; so are the
bidirectional overrides and isolates, which would make ``"\\u202etxt.jpg"`` display as
``"gpj.txt"``. Output goes to two sinks: stdout carries data (results), stderr everything else,
through :func:`say` or the one Rich console of each (:func:`stderr_console`,
:func:`stdout_console`). This module imports nothing of aescore's: every layer may use it.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any

__all__ = ["csv_text", "display_path", "escape_path", "json_text", "say", "stderr_console", "stdout_console", "terminal_text"]

# The backslash is escaped too, so a name holding a real newline never looks like one holding "\n".
_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_BIDI = "\u202a-\u202e\u2066-\u2069"
_CONTROLS = f"\x00-\x1f\x7f-\x9f{_BIDI}"
# Undecodable bytes 0x80-0x9f (surrogate escapes) are C1 controls to an 8-bit terminal.
_ESCAPED = re.compile(f"[\\\\{_CONTROLS}\udc80-\udc9f]")
_ESCAPED_DISPLAY = re.compile(f"[\\\\{_CONTROLS}\udc80-\udcff]")
_UNSAFE = re.compile(f"[{_CONTROLS}\udc80-\udcff]")
_UNSAFE_JSON = re.compile(f"[\x7f-\x9f{_BIDI}]")  # json.dumps escapes C0 itself
_UNSAFE_CSV = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")  # quoting carries TAB, LF, CR


def _escape_char(c: str) -> str:
    """One character as an escape: ``\\n``-style for the named ones, ``\\xNN`` for other
    characters below 256 and for undecodable bytes, ``\\uNNNN`` for the rest (bidi controls)."""
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_path(path: str) -> str:
    """``path`` with backslash, newline, tab and carriage return shown as ``\\\\``, ``\\n``, ``\\t``,
    ``\\r``, every other control character and bidi override as ``\\xNN`` / ``\\uNNNN`` (TSV:
    valid UTF-8 and other undecodable bytes are kept as they are)."""
    return _ESCAPED.sub(lambda m: _escape_char(m.group()), path)


def display_path(path: str) -> str:
    """``path`` for a terminal line: :func:`escape_path`, plus bytes that are not valid UTF-8
    (surrogate escapes) shown as ``\\xff``, so every name prints on one line and none looks
    like another."""
    return _ESCAPED_DISPLAY.sub(lambda m: _escape_char(m.group()), path)


def terminal_text(text: str) -> str:
    """A message for the terminal with its control characters, bidi overrides and undecodable
    bytes escaped as in :func:`display_path`, backslashes left alone (so a line already built with
    :func:`display_path` reads the same). The last guard before anything reaches stderr."""
    return _UNSAFE.sub(lambda m: _escape_char(m.group()), text)


def json_text(text: str) -> str:
    """JSON text from ``json.dumps(ensure_ascii=False)`` with DEL, C1 controls and bidi overrides
    written as ``\\uNNNN`` escapes: the same JSON value, safe to print on a terminal."""
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def csv_text(text: str) -> str:
    """A CSV cell's text with control characters other than TAB, LF and CR (which RFC 4180 quoting
    carries) and bidi overrides escaped as in :func:`escape_path`."""
    return _UNSAFE_CSV.sub(lambda m: _escape_char(m.group()), text)


@functools.cache
def stderr_console() -> Any:
    """The one Rich console for stderr (progress bars, messages beside them)."""
    from rich.console import Console

    return Console(stderr=True)


@functools.cache
def stdout_console() -> Any:
    """The one Rich console for stdout (tables of results on a terminal)."""
    from rich.console import Console

    return Console()


def say(line: str) -> None:
    """Print one message line to stderr through :func:`terminal_text`."""
    print(terminal_text(line), file=sys.stderr, flush=True)
