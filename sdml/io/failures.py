"""What the command lines print when something fails: one line and an exit code, no traceback.

:func:`describe_failure` maps an exception to an exit code and a message that says what happened
and what to do; for a training command that was interrupted or crashed, the message gives the
exact ``--resume`` command that continues the run. Used by ``python -m sdml`` and
``python -m sdml.notebooks``; ``--debug`` (or ``SDML_DEBUG=1``) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import errno
import re
import shlex
import sys

from sdml.io.lock import FolderBusy
from sdml.io.readback import DamagedFile

#: Exit codes of the command lines.
EXIT_OK, EXIT_CRASH, EXIT_INPUT, EXIT_FILE, EXIT_BUSY, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

EXIT_CODES_HELP = """exit codes:
  0    done
  1    unexpected error (an internal fault; --debug shows the traceback)
  2    bad input: an option, a parameter or a config value (the message names it)
  3    a file or folder problem: missing, damaged, not writable, disk full (the message names it)
  4    the run folder is in use by another process (the message names it)
  5    the run diverged (a non-finite loss); the message says which checkpoint is kept
  130  interrupted (Ctrl-C); the message gives the --resume command that continues
Negative values can follow an option as usual: --weight-decay -1e-4."""

#: Commands whose run can be continued with ``--resume``.
RESUMABLE_COMMANDS = ("train", "train-many")


class UsageError(ValueError):
    """A command line that does not parse (unknown option, missing or malformed value)."""


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (no usage block), raised as
    :class:`UsageError` for the command line's ``main`` to report with the other failures."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)


def join_negative_values(argv: list[str], parser) -> list[str]:
    """``--opt -1e-4`` as ``--opt=-1e-4`` for every option that takes one value.

    argparse takes a token that starts with ``-`` for an option unless it looks like a negative
    number, and its test for that misses scientific notation (``-1e-4``); joining option and
    value with ``=`` is argparse's own unambiguous form, so nothing else changes.
    """
    single = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:  # the parsers' actions: the only way to list their options
            if action.option_strings and action.nargs is None:
                single.update(action.option_strings)
            if action.choices and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok in single and i + 1 < len(argv) and _NUMBER.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def parse_command_line(parser, argv: list[str] | None, prog: str):
    """``(argv, args)`` parsed by ``parser`` (negative option values allowed), or ``(argv, None)``
    after printing the usage error as one line: what both entry points do first."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return argv, parser.parse_args(join_negative_values(argv, parser))
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return argv, None


def resume_command(command: str, argv: list[str], prog: str = "python -m sdml") -> str:
    args = list(argv)
    if "--resume" not in args:
        args.append("--resume")
    return f"{prog} {shlex.join(args)}"


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def os_error(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    what = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}{what} (the disk is full; free some space)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{what} (not writable here; choose another folder or fix its permissions)"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{where}{what} (a file stands where a folder is needed; choose another path)"
    return f"{where}{what}"


def describe_failure(err: BaseException, command: str, argv: list[str],
                     prog: str = "python -m sdml", started: bool = False) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached a command line.

    ``started``: the command's run folder holds a run, so a crash names the ``--resume``
    command that continues it (an interrupt always does: a resume of nothing starts afresh).
    """
    resumable = command in RESUMABLE_COMMANDS
    cont = f"; continue with: {resume_command(command, argv, prog)}" if resumable else ""
    if isinstance(err, KeyboardInterrupt):
        kept = " (every finished epoch is checkpointed)" if cont else ""
        return EXIT_INTERRUPTED, f"interrupted{kept}{cont}"
    cont = cont if started else ""
    if isinstance(err, FolderBusy):
        return EXIT_BUSY, one_line(err)
    if isinstance(err, FloatingPointError):
        return EXIT_DIVERGED, one_line(err)
    if isinstance(err, (DamagedFile, FileNotFoundError)) and not getattr(err, "errno", None):
        return EXIT_FILE, one_line(err)
    if isinstance(err, OSError):
        return EXIT_FILE, one_line(os_error(err)) + cont
    if isinstance(err, ValueError):
        return EXIT_INPUT, one_line(err)
    return EXIT_CRASH, (f"unexpected {type(err).__name__}: {one_line(err)[:300]} (run again with "
                        f"--debug for the traceback){cont}")
