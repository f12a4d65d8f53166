"""Trained network -> model file (format "mlpspec-model", see docs/model-format.md).

    data = model_to_bytes(network, spec, scaling=prepared.scaling, raw_input=prepared.raw_input,
                          sample_shape=prepared.sample_shape, class_names=prepared.class_names,
                          metrics=metrics, checksums=raw.checksums, cache_key=key)
    write_model("runs/mnist/model.mlpm", data)

The bytes are a pure function of the arguments (no timestamp unless `created`
is given), and every file written is read back by `mlpspec.infer` before it
is returned, so mlpspec never writes a model it cannot load. The encoding
itself (tensor entries, checksum) lives in `mlpspec.infer`, the standalone
reader, so the writer and the reader cannot drift apart.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpspec import __version__, atomic, infer, registry
from mlpspec.data.prepare import RawInput, Scaling
from mlpspec.data.tabular import TabularEncoder
from mlpspec.nn.layers import Network
from mlpspec.spec import model, render_spec
from mlpspec.spec.schema import unstructure


def model_to_bytes(network: Network, spec: model.Spec, *, scaling: Scaling, raw_input: RawInput,
                   sample_shape: tuple[int, ...], class_names: tuple[str, ...],
                   metrics: Mapping[str, Any], checksums: Mapping[str, str], cache_key: str,
                   created: str | None = None,
                   targets: Mapping[str, Any] | None = None,
                   encoder: TabularEncoder | None = None) -> bytes:
    """The model file for a trained `network` built from `spec`.

    `scaling`, `raw_input` (the input contract: raw dtype and per-feature
    training range), `sample_shape` and `class_names` come from the prepared data;
    `metrics` is a tree of numbers, strings, lists and maps (NumPy scalars and
    arrays are converted); `checksums` maps each data file read to its sha256;
    `created`, when given, is stored as is (an ISO 8601 time, say); `encoder`,
    the fitted column handling of tabular data, becomes `preprocessing.columns`.
    A regression model (the spec's `task = "regression"`) has no class names and takes
    `targets={"names": [...], "scaling": Scaling}` (the prepared data's
    `target_names` and `target_scaling`), stored as `task` and `targets`.
    Raises ValueError when the pieces do not fit together.
    """
    layers = spec.network.layers
    if len(layers) != len(network.layers):
        raise ValueError(f"the spec has {len(layers)} layers, the network {len(network.layers)}")
    for i, (declared, built) in enumerate(zip(layers, network.layers)):
        if type(built) is not registry.entry_of(declared).engine:
            raise ValueError(f"layer {i}: the spec says {model.name_of(declared)}, the network has "
                             f"{type(built).__name__}")
    if network.n_in != spec.network.inputs or math.prod(sample_shape) != network.n_in:
        raise ValueError(f"inputs disagree: spec {spec.network.inputs}, network {network.n_in}, "
                         f"sample shape {tuple(sample_shape)}")
    if raw_input.minimum.shape != (network.n_in,) or raw_input.maximum.shape != (network.n_in,):
        raise ValueError(f"the input range has {raw_input.minimum.shape} minima and "
                         f"{raw_input.maximum.shape} maxima for {network.n_in} inputs")
    task = spec.task
    if task == "regression":
        if class_names or targets is None or len(targets["names"]) != network.n_out:
            raise ValueError(f"a regression model takes no class names and one target name per "
                             f"output ({network.n_out})")
    elif len(class_names) != network.n_out or targets is not None:
        raise ValueError(f"{len(class_names)} class names for {network.n_out} network outputs"
                         + ("; targets are for regression" if targets is not None else ""))
    loss = model.name_of(spec.train.loss)

    document: dict[str, Any] = {
        "format": infer.FORMAT_NAME,
        "format_version": list(infer.FORMAT_VERSION),
        "writer": f"mlpspec {__version__}",
    }
    if created is not None:
        document["created"] = str(created)
    document.update({
        "architecture": {
            "inputs": spec.network.inputs,
            "dtype": network.dtype.name,
            "output": registry.LOSSES[loss].output,  # what predict_proba applies to the outputs
            "loss": loss,
            "layers": [{"type": model.name_of(layer), "settings": unstructure(layer)}
                       for layer in layers],
        },
        "tensors": {name: infer.tensor_entry(array) for name, array in network.state_dict().items()},
        "preprocessing": {
            "sample_shape": [int(d) for d in sample_shape],
            "scaling": {
                "kind": scaling.kind,
                "offset": infer.tensor_entry(np.asarray(scaling.offset, dtype=np.float64)),
                "scale": infer.tensor_entry(np.asarray(scaling.scale, dtype=np.float64)),
            },
            "input": {
                "dtype": str(raw_input.dtype),
                "whole": bool(raw_input.whole),
                "min": infer.tensor_entry(np.asarray(raw_input.minimum, dtype=np.float64)),
                "max": infer.tensor_entry(np.asarray(raw_input.maximum, dtype=np.float64)),
            },
            **({"columns": encoder.to_document()} if encoder is not None else {}),
        },
        **_outputs(task, class_names, targets),
        "metrics": plain(metrics, "metrics"),
        "provenance": {
            "spec": render_spec(spec),
            "checksums": {str(k): str(v) for k, v in sorted(checksums.items())},
            "cache_key": str(cache_key),
        },
    })
    data = infer.encode(document)
    infer.load(data)  # never write a file the reader refuses
    return data


def _outputs(task: str, class_names: tuple[str, ...], targets: Mapping[str, Any] | None) -> dict:
    """What the outputs mean: `classes` (classification, as in format 1.0), or `task` and
    `targets` (regression, format 1.2)."""
    if task == "classification":
        return {"classes": [str(name) for name in class_names]}
    scaling = targets["scaling"]
    k = len(targets["names"])
    return {"task": task, "targets": {
        "names": [str(name) for name in targets["names"]],
        "scaling": {
            "kind": scaling.kind,
            "offset": infer.tensor_entry(np.broadcast_to(np.asarray(scaling.offset, np.float64), (k,))),
            "scale": infer.tensor_entry(np.broadcast_to(np.asarray(scaling.scale, np.float64), (k,))),
        },
    }}


def write_model(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (`mlpspec.atomic`).

    A crash at any moment leaves either the old file or the new one, never
    half of it.
    """
    return atomic.write_bytes(path, data)


def plain(value: Any, path: str) -> Any:
    """`value` as plain msgpack data: None, bool, int, float, str, list and str-keyed maps."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return float(value) if isinstance(value, float) else value
    if isinstance(value, np.generic):
        return plain(value.item(), path)
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), path)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: map keys must be strings, found {key!r}")
            out[key] = plain(item, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{path}: cannot store a {type(value).__name__} in a model file")
