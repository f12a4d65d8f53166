"""What every command shares: turning user errors into a message and an exit code."""

from __future__ import annotations

import functools
from typing import Callable, NoReturn

import typer

from mlpspec.errors import MlpspecError, RunInterrupted, SpecError


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` on stderr and exit with `code`."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def user_errors(command: Callable) -> Callable:
    """Run a command; an `MlpspecError` becomes its message on stderr and exit code 2.

    A spec's problems are listed one per line; Ctrl-C exits with 130.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SpecError as error:
            count = len(error.problems)
            header = f"error: the spec has {count} problem{'s' if count != 1 else ''}:"
            fail("\n".join([header] + [f"  {p}" for p in error.problems]))
        except RunInterrupted as error:
            fail(str(error), error.exit_code)
        except MlpspecError as error:
            fail(f"error: {error}", error.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", RunInterrupted.exit_code)

    return wrapper
