"""Spec files: read, override, validate and render.

    spec = load_spec("specs/mnist.toml", overrides=["train.epochs=3"])
    print(render_spec(spec))

`load_spec` raises `SpecError` holding every problem found, each naming the
file (or the `--set` it came from), the dotted key path, what was expected
and what was found.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlpspec.errors import Problem, SpecError
from mlpspec.spec import model
from mlpspec.spec.checks import cross_check
from mlpspec.spec.limits import TOO_DEEP, too_deep
from mlpspec.spec.model import Spec
from mlpspec.spec.overrides import apply_overrides
from mlpspec.spec.schema import Reporter, structure, unstructure
from mlpspec.spec.toml_writer import dumps

__all__ = ["Spec", "load_spec", "parse_spec", "render_spec", "model"]


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Read a spec file, apply `--set` overrides, validate; raise `SpecError`."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SpecError([Problem(source, "", f"cannot read the file: {error.strerror or error}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError([Problem(source, "", f"expected UTF-8 text, found byte "
                                 f"0x{data[error.start]:02x} at offset {error.start}")])
    return parse_spec(text, source, overrides)


def parse_spec(text: str, source: str = "<spec>", overrides: Sequence[str] = ()) -> Spec:
    """Validate a spec given as TOML text; `source` names it in messages."""
    # Editors on Windows start UTF-8 files with a byte order mark; TOML has no
    # use for it and tomllib calls it an invalid statement.
    text = text.removeprefix("\ufeff")
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError([Problem(source, "", f"invalid TOML: {error}")])
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise SpecError([Problem(source, "", TOO_DEEP)]) from None
    deep = too_deep(raw)
    if deep is not None:  # copying and validating also recurse
        raise SpecError([Problem(source, deep, TOO_DEEP)])
    report = Reporter(source)
    raw = apply_overrides(raw, overrides, report)
    spec = structure(Spec, raw, "", report)
    if spec is not None:
        cross_check(spec, report)
    if report.problems:
        raise SpecError(report.problems, report.omitted)
    return spec


def render_spec(spec: Spec) -> str:
    """The fully resolved spec, every default filled in, as TOML."""
    return dumps(unstructure(spec))
