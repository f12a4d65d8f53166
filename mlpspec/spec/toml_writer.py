"""A TOML writer for the plain tables the spec language produces.

It covers what `schema.unstructure` emits (strings, booleans, integers,
finite floats, arrays of scalars, tables and arrays of tables) and writes
them so that `tomllib` reads back exactly the same values.
"""

from __future__ import annotations

import math
import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(table: dict[str, Any]) -> str:
    """Render a table as a TOML document."""
    lines: list[str] = []
    _emit(table, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def _emit(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    for key, value in table.items():
        if not isinstance(value, dict) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            lines += ["", f"[{'.'.join(_key(k) for k in path + [key])}]"]
            _emit(value, path + [key], lines)
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{'.'.join(_key(k) for k in path + [key])}]]"]
                _emit(item, path + [key], lines)


def value_text(value: Any) -> str:
    """One value (string, number, boolean, array) as TOML text, e.g. for `--set KEY=VALUE`."""
    return _value(value)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML spec values must be finite, got {value}")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
