"""Bounds on what a spec may hold, so that hostile input fails fast with a message.

A real spec nests tables and arrays four levels deep and has a handful of
problems at a time; these limits are far above that and far below what
would exhaust Python's stack or take seconds to report.
"""

from __future__ import annotations

from typing import Any

#: Tables and arrays nested deeper than this are refused ("nested too deeply").
MAX_DEPTH = 100

#: Problems listed in full; any further ones are only counted.
MAX_PROBLEMS = 50

TOO_DEEP = f"nested too deeply: more than {MAX_DEPTH} levels of tables and arrays"


def too_deep(value: Any) -> str | None:
    """The top-level key under which `value` nests deeper than `MAX_DEPTH`, else None.

    `value` is a parsed TOML document (dicts, lists, scalars); an array or a
    scalar given as a whole is keyed "". Walks with an explicit stack, so any
    depth is measured without recursion.
    """
    roots = list(value.items()) if isinstance(value, dict) else [("", value)]
    for key, root in roots:
        stack = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if not isinstance(node, (dict, list)):
                continue
            if depth > MAX_DEPTH:
                return key
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return None
