"""User-facing errors.

Everything a user can get wrong (a spec, a data file, a model file, a CLI
argument) ends in an `MlpspecError`. The CLI prints its message and exits
with code 2; anything else escaping is a bug in mlpspec.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Problem:
    """One thing wrong with an input: where it is and what was wrong.

    `source` names the file (or "--set" for a command-line override), `path`
    the dotted key inside it (`network.layers[2].units`; empty for the whole
    file) and `message` what was expected and what was found.
    """

    source: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return f"{where}: {self.message}"


class MlpspecError(Exception):
    """Base class of errors caused by user input or the environment."""

    exit_code = 2


class SpecError(MlpspecError):
    """A spec (file plus overrides) failed validation.

    `problems` lists what was found, in order; past a limit further problems
    are only counted, in `omitted`, so a spec with a million unknown keys
    still fails fast with a readable message.
    """

    def __init__(self, problems: list[Problem], omitted: int = 0):
        self.problems = list(problems)
        self.omitted = omitted
        lines = [str(p) for p in self.problems]
        if omitted:
            lines.append(f"... and {omitted} more")
        super().__init__("\n".join(lines))


class DataError(MlpspecError):
    """A dataset could not be read or failed its checks."""


class DownloadError(DataError):
    """Every mirror failed for a dataset file."""


class TrainingError(MlpspecError):
    """Training could not continue (for example it diverged to NaN)."""


class RunInterrupted(MlpspecError):
    """The user pressed Ctrl-C; the message says what was kept."""

    exit_code = 130
