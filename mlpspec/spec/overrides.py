"""Command-line overrides: `--set train.epochs=3`, `--set network.layers[0].units=512`.

The value is parsed as a TOML value (`3`, `0.1`, `true`, `"text"`,
`[1, 2]`, `{ type = "adam.v1" }`); a bare word that is not valid TOML
(`--set data.source=fashion-mnist`) is taken as a string. Overrides are
applied to the parsed document before validation, so they are checked
exactly like the file, and problems they cause name the `--set` itself.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from mlpspec.errors import Problem
from mlpspec.spec.limits import MAX_DEPTH, TOO_DEEP, too_deep
from mlpspec.spec.schema import Reporter, join, toml_type_name

_KEY = r"[A-Za-z0-9_-]+"
_PATH = re.compile(rf"{_KEY}(?:\.{_KEY}|\[\d+\])*")
_STEP = re.compile(rf"\.?({_KEY})|\[(\d+)\]")
_BARE_STRING = re.compile(r"[^\s\"'\[\]{}=#,]+")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Split `KEY=VALUE` into path steps and a value; ValueError says what is wrong."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError("expected KEY=VALUE, found no '='")
    if not _PATH.fullmatch(key):
        raise ValueError(f"expected a key path like train.epochs or network.layers[0].units, "
                         f"found {key!r}")
    steps: list[str | int] = [m.group(1) if m.group(1) is not None else int(m.group(2))
                              for m in _STEP.finditer(key)]
    if len(steps) > MAX_DEPTH:
        raise ValueError(f"key path {TOO_DEEP}")
    return steps, parse_value(value_text.strip())


def parse_value(text: str) -> Any:
    """A TOML value; a bare word that TOML rejects is taken as a string."""
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError as error:
        if _BARE_STRING.fullmatch(text) and text.isprintable():
            return text
        raise ValueError(f"expected a TOML value, found {text!r} ({error})") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ValueError(f"value {TOO_DEEP}") from None
    if too_deep(value) is not None:
        raise ValueError(f"value {TOO_DEEP}")
    return value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], report: Reporter) -> dict[str, Any]:
    """A copy of `raw` with every override applied; problems go to `report`."""
    result = copy.deepcopy(raw)
    for text in overrides:
        try:
            steps, value = parse_override(text)
        except ValueError as error:
            report.append(_problem(text, error))
            continue
        path = ""
        for step in steps:
            path = join(path, step)
        report.overridden[path] = text
        try:
            _set(result, steps, value)
        except _Unreachable as error:
            report.append(Problem(f"--set {text}", error.path, str(error)))
    return result


def _set(node: Any, steps: list[str | int], value: Any) -> None:
    """Set `value` at `steps` inside `node`, creating missing tables on the way."""
    path = ""
    for index, step in enumerate(steps):
        if isinstance(step, int):
            if not isinstance(node, list):
                raise _Unreachable(path, f"expected an array to index with [{step}], "
                                         f"found {toml_type_name(node)}")
            if step >= len(node):
                raise _Unreachable(join(path, step), f"no such element: {path or 'it'} has "
                                                     f"{len(node)} entries")
        elif not isinstance(node, dict):
            raise _Unreachable(path, f"cannot set key {step!r} inside {toml_type_name(node)}")
        path = join(path, step)
        if index == len(steps) - 1:
            node[step] = value
        else:
            if isinstance(step, str) and step not in node:
                node[step] = [] if isinstance(steps[index + 1], int) else {}
            node = node[step]


class _Unreachable(Exception):
    """An override's path runs through something that is not a table or array."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def _problem(text: str, error: ValueError) -> Problem:
    return Problem(f"--set {text}", "", str(error))
