"""The machinery that turns TOML tables into frozen attrs objects and back.

The spec classes (in `model.py`) declare their keys as attrs fields made by
`option()`: a type annotation, a default, a one-line doc and optional checks.
This module walks those declarations to

* `structure` a parsed TOML document into objects, collecting *every*
  problem (unknown keys with a did-you-mean, missing keys, wrong types, values
  out of range) instead of stopping at the first;
* `unstructure` objects back into plain tables for rendering;
* `describe` the schema for the generated reference in `docs/spec.md`.

Polymorphic tables (a layer, an optimizer, a data source) are `Tagged`
fields: one key (`type`, `source`) picks the class from a registry, and the
remaining keys are validated against that class.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from mlpspec.errors import Problem
from mlpspec.spec.limits import MAX_PROBLEMS

# A check returns None when the value is fine, or the text after "expected".
Check = Callable[[Any], "str | None"]

_MISSING = attrs.NOTHING


def option(default: Any = _MISSING, *, doc: str, checks: tuple[Check, ...] = (),
           tagged: "Tagged | None" = None) -> Any:
    """Declare one spec key: its default (none means required), doc and checks."""
    metadata = {"doc": doc, "checks": checks, "tagged": tagged}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple or a factory for mutable defaults")
    if attrs.has(type(default)):
        return attrs.field(factory=lambda: default, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


@attrs.frozen
class Tagged:
    """A table whose class is chosen by the value of one of its keys.

    `inline` tables share their parent's table: `[data] source = "npz"` puts
    the npz keys (`train`, `test`, ...) next to the parent's own keys.
    `choices` maps each name to its class, or is a function returning that
    map when first needed (the registered components of `mlpspec.registry`,
    which imports the spec classes and so cannot be imported by them).
    """

    key: str
    _choices: Mapping[str, type] | Callable[[], Mapping[str, type]]
    inline: bool = False

    @property
    def choices(self) -> Mapping[str, type]:
        return self._choices() if callable(self._choices) else self._choices

    def name_of(self, obj: Any) -> str:
        for name, cls in self.choices.items():
            if type(obj) is cls:
                return name
        raise KeyError(type(obj).__name__)


# ---------------------------------------------------------------- checks


def positive(value: Any) -> str | None:
    return None if value > 0 else "a value > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "a value >= 0"


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    left, right = ("(" if low_open else "["), (")" if high_open else "]")

    def check(value: Any) -> str | None:
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        return f"a value in {left}{low}, {high}{right}" if too_low or too_high else None

    return check


def one_of(*choices: str | Callable[[], Iterable[str]]) -> Check:
    """The value is one of `choices`: the strings given, or those a single function
    returns when first needed (names from `mlpspec.registry`, as for `Tagged`)."""
    if len(choices) == 1 and callable(choices[0]):
        return _OneOf(choices[0])
    return _OneOf(lambda: choices)


@attrs.frozen
class _OneOf:
    names: Callable[[], Iterable[str]]

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.names())

    def __call__(self, value: Any) -> str | None:
        choices = self.choices
        if value in choices:
            return None
        return "one of " + ", ".join(repr(c) for c in choices)


def matches(pattern: str, description: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: Any) -> str | None:
        return None if compiled.fullmatch(value) else description

    return check


def non_empty(value: Any) -> str | None:
    return None if len(value) > 0 else "at least one entry"


def _suggest(word: Any, candidates: typing.Iterable[str]) -> str:
    # No key is long: a long word has no close match, and difflib's cost grows
    # with the square of its length.
    if not isinstance(word, str) or len(word) > 64:
        return ""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------- paths


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def toml_type_name(value: Any) -> str:
    """Name a parsed TOML value the way the TOML spec does."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def show(value: Any) -> str:
    """A found value as it appears in a message: type and, when short, the value."""
    if isinstance(value, (dict, list)):
        return toml_type_name(value)
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{toml_type_name(value)} {text}"


# ---------------------------------------------------------------- structure


class Reporter:
    """Collects problems; names the source of each path (file or a --set).

    The first `MAX_PROBLEMS` distinct problems are kept in `problems`; later
    ones are only counted in `omitted` (their did-you-mean is never computed),
    so reporting stays linear in the size of the spec.
    """

    def __init__(self, source: str, overridden: Mapping[str, str] | None = None):
        self.source = source
        self.overridden = dict(overridden or {})
        self.problems: list[Problem] = []
        self.omitted = 0
        self._seen: set[Problem] = set()

    def source_of(self, path: str) -> str:
        for key, text in self.overridden.items():
            # At, below or above what the override set: an override can create
            # a table where a value was expected (`--set seed.x=1`).
            if _within(path, key) or _within(key, path):
                return f"--set {text}"
        return self.source

    def add(self, path: str, message: str, hint: Callable[[], str] | None = None) -> None:
        """Report `message` at `path`; `hint()` (a did-you-mean) is appended if it is listed."""
        self.append(Problem(self.source_of(path), path, message), hint)

    def append(self, problem: Problem, hint: Callable[[], str] | None = None) -> None:
        """Keep `problem` (once), or only count it once `MAX_PROBLEMS` are kept."""
        if problem in self._seen:
            return
        self._seen.add(problem)
        if len(self.problems) >= MAX_PROBLEMS:
            self.omitted += 1
            return
        if hint is not None:
            problem = attrs.evolve(problem, message=problem.message + hint())
        self.problems.append(problem)

    def expected(self, path: str, expected: str, found: Any, choices: typing.Iterable[str] = ()) -> None:
        self.add(path, f"expected {expected}, found {show(found)}",
                 lambda: _suggest(found, choices))


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def fields_of(cls: type) -> tuple[attrs.Attribute, ...]:
    attrs.resolve_types(cls)
    return attrs.fields(cls)


def structure(cls: type, raw: Any, path: str, report: Reporter) -> Any:
    """Build `cls` from a parsed TOML table; None (and problems) when it can't."""
    if not isinstance(raw, dict):
        report.expected(path or "(top level)", "a table", raw)
        return None
    known: set[str] = set()
    for field in fields_of(cls):
        tagged = field.metadata.get("tagged")
        known.add(field.name)
        if tagged is not None and tagged.inline:
            known.add(tagged.key)
    values: dict[str, Any] = {}
    ok = True
    for field in fields_of(cls):
        tagged = field.metadata.get("tagged")
        if tagged is not None and tagged.inline:
            value = _structure_tagged(tagged, raw, path, report, own_keys=known)
            ok &= value is not None
            values[field.name] = value
            continue
        child = join(path, field.name)
        if field.name not in raw:
            if field.default is _MISSING:
                report.add(child, "required key is missing")
                ok = False
            continue
        value = _structure_value(field.type, field, raw[field.name], child, report)
        if value is None:
            ok = False
        else:
            values[field.name] = value
    inline = any(f.metadata.get("tagged") is not None and f.metadata["tagged"].inline
                 for f in fields_of(cls))
    if not inline:  # an inline variant reports the keys it doesn't know itself
        for key in raw:
            if key not in known:
                report.add(join(path, key), "unknown key", lambda key=key: _suggest(key, known))
                ok = False
    if not ok:
        return None
    return cls(**values)


def _structure_tagged(tagged: Tagged, raw: dict, path: str, report: Reporter,
                      own_keys: set[str] | None = None) -> Any:
    key_path = join(path, tagged.key)
    if tagged.key not in raw:
        report.add(key_path, "required key is missing (one of "
                   + ", ".join(repr(c) for c in tagged.choices) + ")")
        return None
    name = raw[tagged.key]
    if not isinstance(name, str) or name not in tagged.choices:
        report.expected(key_path, "one of " + ", ".join(repr(c) for c in tagged.choices),
                        name, tagged.choices)
        return None
    variant = tagged.choices[name]
    body = {k: v for k, v in raw.items() if k != tagged.key}
    if own_keys is not None:  # inline: the parent's keys are not the variant's
        body = {k: v for k, v in body.items() if k not in own_keys}
        variant_keys = {f.name for f in fields_of(variant)}
        for key in body:
            if key not in variant_keys:
                report.add(join(path, key), f"unknown key for {tagged.key} {name!r}",
                           lambda key=key: _suggest(key, variant_keys | own_keys))
        body = {k: v for k, v in body.items() if k in variant_keys}
    else:
        variant_keys = {f.name for f in fields_of(variant)}
        for key in body:
            if key not in variant_keys:
                report.add(join(path, key), f"unknown key for {tagged.key} {name!r}",
                           lambda key=key: _suggest(key, variant_keys | {tagged.key}))
        body = {k: v for k, v in body.items() if k in variant_keys}
    return structure(variant, body, path, report)


def _structure_value(annotation: Any, field: attrs.Attribute, raw: Any, path: str,
                     report: Reporter) -> Any:
    tagged: Tagged | None = field.metadata.get("tagged")
    origin = typing.get_origin(annotation)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if not isinstance(raw, list):
            report.expected(path, "an array", raw)
            return None
        items = []
        for index, item in enumerate(raw):
            child = join(path, index)
            if tagged is not None:
                if not isinstance(item, dict):
                    report.expected(child, "a table", item)
                    value = None
                else:
                    value = _structure_tagged(tagged, item, child, report)
            else:
                value = _scalar(item_type, item, child, report)
            items.append(value)
        if any(item is None for item in items):
            return None
        value = tuple(items)
    elif tagged is not None:
        if not isinstance(raw, dict):
            report.expected(path, "a table", raw)
            return None
        value = _structure_tagged(tagged, raw, path, report)
        if value is None:
            return None
    elif attrs.has(annotation):
        return structure(annotation, raw, path, report)
    else:
        value = _scalar(annotation, raw, path, report)
        if value is None:
            return None
    for check in field.metadata.get("checks", ()):
        expected = check(value)
        if expected is not None:
            report.expected(path, expected, raw, getattr(check, "choices", ()))
            return None
    return value


def _scalar(annotation: Any, raw: Any, path: str, report: Reporter) -> Any:
    """Type-check one scalar; ints are accepted where floats are expected."""
    wanted = _scalar_types(annotation)
    if isinstance(raw, bool):
        if bool in wanted:
            return raw
    elif isinstance(raw, int) and int in wanted:
        return raw
    elif isinstance(raw, (int, float)) and float in wanted:
        if math.isfinite(raw):
            return float(raw)
        report.expected(path, "a finite number", raw)
        return None
    elif isinstance(raw, str) and str in wanted:
        return raw
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    report.expected(path, " or ".join(names[t] for t in wanted if not (t is int and float in wanted)), raw)
    return None


def _scalar_types(annotation: Any) -> tuple[type, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


# ---------------------------------------------------------------- unstructure


def unstructure(obj: Any) -> dict[str, Any]:
    """The plain table for an object built by `structure` (inverse of it)."""
    table: dict[str, Any] = {}
    for field in fields_of(type(obj)):
        value = getattr(obj, field.name)
        tagged: Tagged | None = field.metadata.get("tagged")
        if tagged is not None and tagged.inline:
            table[tagged.key] = tagged.name_of(value)
            table.update(unstructure(value))
        elif tagged is not None and isinstance(value, tuple):
            table[field.name] = [{tagged.key: tagged.name_of(v), **unstructure(v)} for v in value]
        elif tagged is not None:
            table[field.name] = {tagged.key: tagged.name_of(value), **unstructure(value)}
        elif attrs.has(type(value)):
            table[field.name] = unstructure(value)
        elif isinstance(value, tuple):
            table[field.name] = list(value)
        else:
            table[field.name] = value
    return table


# ---------------------------------------------------------------- describe


@attrs.frozen
class KeyDoc:
    """One row of the spec reference."""

    path: str
    type: str
    default: str
    doc: str


@attrs.frozen
class Section:
    """One table of the spec reference: its title, the class's docstring, its keys."""

    title: str
    doc: str
    rows: list[KeyDoc]


def describe(cls: type, path: str = "", title: str | None = None) -> list[Section]:
    """Sections documenting every key under `cls`, in declaration order."""
    rows: list[KeyDoc] = []
    doc = " ".join((cls.__doc__ or "").split())
    sections = [Section(path if title is None else title, doc, rows)]
    for field in fields_of(cls):
        tagged: Tagged | None = field.metadata.get("tagged")
        child = join(path, field.name)
        is_array = typing.get_origin(field.type) is tuple
        if tagged is not None:
            base = path if tagged.inline else (f"{child}[]" if is_array else child)
            rows.append(KeyDoc(join(base, tagged.key), "string", _default_text(field, tagged),
                               field.metadata["doc"] + " One of: "
                               + ", ".join(f"`{c}`" for c in tagged.choices) + "."))
            for name, variant in tagged.choices.items():
                sections.extend(describe(variant, base, f'{base} ({tagged.key} = "{name}")'))
        elif attrs.has(field.type):
            sections.extend(describe(field.type, child))
        else:
            rows.append(KeyDoc(child, _type_name(field.type), _default_text(field),
                               field.metadata["doc"] + _choices_text(field)))
    return sections


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        return f"array of {_type_name(typing.get_args(annotation)[0])}"
    names = {bool: "boolean", int: "integer", float: "float", str: "string"}
    return " or ".join(names[t] for t in _scalar_types(annotation))


def _default_text(field: attrs.Attribute, tagged: Tagged | None = None) -> str:
    if field.default is _MISSING:
        return "required"
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    if tagged is not None:
        return f'`"{tagged.name_of(default)}"`'
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, str):
        return f'`"{default}"`'
    if isinstance(default, tuple):
        return "`[]`" if not default else f"`{list(default)}`"
    return f"`{default!r}`"


def _choices_text(field: attrs.Attribute) -> str:
    for check in field.metadata.get("checks", ()):
        choices = getattr(check, "choices", None)
        if choices:
            return " One of: " + ", ".join(f"`{c}`" for c in choices) + "."
    return ""
