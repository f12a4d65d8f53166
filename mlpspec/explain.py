"""`mlpspec cache explain`: why each stage of a spec hits or misses the cache.

    for item in explain(spec, base_dir, cache):
        print(item.stage, item.hit, item.reasons)

A miss is compared with the newest entry of the same stage (of the same spec
if there is one): the differences are listed by spec key (`train.epochs: 3 ->
5`), then changed stage versions, inputs from other stages and data files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from mlpspec.cache import Cache, Entry
from mlpspec.pipeline import STAGES, stage_keys
from mlpspec.spec import model


@attrs.frozen
class Explanation:
    """Why a stage hits or misses the cache."""

    stage: str
    key: str
    hit: bool
    reasons: tuple[str, ...]
    compared_with: Entry | None = None


def explain(spec: model.Spec, base_dir: Path, cache: Cache) -> list[Explanation]:
    """For every stage: hit or miss and, on a miss, what changed since the last entry."""
    keys, info = stage_keys(spec, base_dir)
    result = []
    for stage in STAGES:
        if cache.peek(stage, keys[stage]) is not None:
            result.append(Explanation(stage, keys[stage], True, ()))
            continue
        previous = (cache.latest(stage, lambda e: e.manifest.get("spec_name") == spec.name)
                    or cache.latest(stage, lambda e: True))
        result.append(Explanation(stage, keys[stage], False,
                                  _differences(info[stage], previous), previous))
    return result


def _differences(current: Mapping[str, Any], previous: Entry | None) -> tuple[str, ...]:
    if previous is None:
        return ("no cached entry for this stage yet",)
    before = previous.manifest
    reasons = []
    if before.get("version") != current["version"]:
        reasons.append(f"stage version {before.get('version')} -> {current['version']}")
    old, new = _flatten(before.get("reads", {})), _flatten(current["reads"])
    for key in sorted(old.keys() | new.keys()):
        if old.get(key, _ABSENT) != new.get(key, _ABSENT):
            reasons.append(f"{key}: {_show(old.get(key, _ABSENT))} -> {_show(new.get(key, _ABSENT))}")
    for name, key in current["consumes"].items():
        if before.get("consumes", {}).get(name) != key:
            reasons.append(f"its input from stage {name!r} changed")
    if before.get("checksums", {}) != current["checksums"]:
        reasons.append("the data files changed (checksums differ)")
    if not reasons:
        reasons.append("the cached entry was removed or is incomplete")
    return tuple(reasons)


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def _flatten(table: Any, prefix: str = "") -> dict[str, Any]:
    """`{"train": {"epochs": 3}}` -> `{"train.epochs": 3}`; arrays index as `[i]`."""
    if isinstance(table, dict):
        out: dict[str, Any] = {}
        for key, value in table.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(table, list) and any(isinstance(v, (dict, list)) for v in table):
        out = {}
        for index, value in enumerate(table):
            out.update(_flatten(value, f"{prefix}[{index}]"))
        if not table:
            out[prefix] = []
        return out
    return {prefix: table}
