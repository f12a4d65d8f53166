"""What every command shares: turning user errors into a message and an exit code."""

from __future__ import annotations

import functools
import os
from typing import Callable, NoReturn

import typer

from mlpspec.errors import MlpspecError, RunInterrupted, SpecError


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` on stderr and exit with `code`."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def user_errors(command: Callable) -> Callable:
    """Run a command; an `MlpspecError` becomes its message on stderr and exit code 2.

    A spec's problems are listed one per line, those left out counted; a
    file-system error (`OSError`: a full disk, a missing or unwritable folder)
    that no layer below turned into an `MlpspecError` is reported with the
    path it names; Ctrl-C exits with 130.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SpecError as error:
            count = len(error.problems) + error.omitted
            header = f"error: the spec has {count} problem{'s' if count != 1 else ''}:"
            lines = [header] + [f"  {p}" for p in error.problems]
            if error.omitted:
                lines.append(f"  ... and {error.omitted} more (only the first "
                             f"{len(error.problems)} are listed)")
            fail("\n".join(lines))
        except RunInterrupted as error:
            fail(str(error), error.exit_code)
        except MlpspecError as error:
            fail(f"error: {error}", error.exit_code)
        except BrokenPipeError:  # `mlpspec cache ls | head`: the reader has gone
            fail("error: the output was closed before everything was written")
        except OSError as error:
            fail(f"error: {os_error_message(error)}")
        except KeyboardInterrupt:
            fail("interrupted", RunInterrupted.exit_code)

    return wrapper


def os_error_message(error: OSError) -> str:
    """`<path>: <what failed>` for an `OSError`; the path(s) it names, if any."""
    what = error.strerror or str(error) or type(error).__name__
    if error.filename is None:
        return f"a file operation failed: {what}"
    where = os.fsdecode(error.filename)
    if error.filename2 is not None:
        where += f" -> {os.fsdecode(error.filename2)}"
    return f"{where}: {what}"
