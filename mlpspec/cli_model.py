"""The model commands: `predict`, `inspect` and `export` (registered on the main app).

    from mlpspec import cli_model
    cli_model.register(app)

Commands stay thin: reading inputs and printing here, the work in
`mlpspec.infer` and `mlpspec.onnx_export`. NumPy, Pillow and onnx are imported
inside the commands so `mlpspec --help` stays fast. A bad model file or input
ends in `error: <file>: <message>` and exit code 2, never a traceback. Text
from a model file (class names, metrics, provenance) reaches the terminal
through `printable`: control characters and escape sequences are shown
escaped, never sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlpspec.cli_support import user_errors
from mlpspec.errors import MlpspecError

ModelArg = Annotated[Path, typer.Argument(help="Model file written by mlpspec.", show_default=False)]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


class ModelFileError(MlpspecError):
    """A model or input file could not be used; the message names the file."""

    def __init__(self, path: Path | str, message: str):
        super().__init__(f"{path}: {message}")


def load_model(path: Path):
    """The model file at `path`, or a `ModelFileError` naming it."""
    from mlpspec import infer

    try:
        return infer.load(path)
    except infer.ModelFormatError as error:  # may quote the file's own strings
        raise ModelFileError(path, printable(str(error))) from None
    except OSError as error:
        raise ModelFileError(path, f"cannot read the file: {error.strerror or error}") from None


def register(app: typer.Typer) -> None:
    """Add `predict`, `inspect` and `export` to `app`."""
    app.command("predict")(user_errors(predict))
    app.command("inspect")(user_errors(inspect))
    app.command("export")(user_errors(export))


# ---------------------------------------------------------------- predict


def predict(
    model_path: ModelArg,
    inputs: Annotated[list[Path], typer.Argument(
        help="Images (PNG, JPEG, ...; needs Pillow), .npy arrays or IDX files (gzip or raw); "
             "each holds one sample or a batch.", show_default=False)],
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Show the K most likely classes.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")] = False,
) -> None:
    """Classify raw samples with a model file: prints the top classes of each sample.

    Samples are raw, as the training data gave them (pixels 0..255, CSV
    numbers); the model applies its own preprocessing and refuses samples that
    cannot be what it was trained on.
    """
    from mlpspec import infer

    model = load_model(model_path)
    top = min(top, model.outputs)
    score_name = "probability" if model.output == "softmax" else "score"
    for path in inputs:
        samples = _read_input(path, model)
        try:
            scores = model.predict_proba(samples)
        except infer.InputError as error:
            raise ModelFileError(path, str(error)) from None
        single = scores.ndim == 1
        for index, row in enumerate(scores[None] if single else scores):
            best = row.argsort(kind="stable")[::-1][:top]
            ranked = [{"class": int(c), "label": model.classes[c], score_name: float(row[c])} for c in best]
            where = str(path) if single else f"{path}[{index}]"
            if as_json:
                typer.echo(json.dumps({"input": str(path), "index": None if single else index,
                                       "top": ranked}))
            else:
                shown = ", ".join(f"{printable(r['label'])} ({r[score_name]:.4g})" for r in ranked)
                typer.echo(f"{where}: {shown}")


def _read_input(path: Path, model):
    """The raw samples in `path` as a NumPy array, in the file's dtype."""
    import numpy as np

    if not path.is_file():
        raise ModelFileError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise ModelFileError(path, f"not a readable .npy file: {error}") from None
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path, model)
    from mlpspec.data.idx import read_idx_file

    try:
        return read_idx_file(path)
    except MlpspecError as error:  # the message names the file already
        raise MlpspecError(f"{error} (inputs are images, .npy or IDX files)") from None


def _read_image(path: Path, model):
    import numpy as np

    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ModelFileError(path, "reading images needs Pillow: pip install 'mlpspec[images]'") from None
    shape = model.sample_shape
    if len(shape) == 2:
        mode = "L"
    elif len(shape) == 3 and shape[-1] in (1, 3, 4):
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[shape[-1]]
    else:
        raise ModelFileError(path, f"the model takes samples of shape {shape}, not images")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ModelFileError(path, f"cannot read the image: {error}") from None
    if len(shape) == 3 and shape[-1] == 1:
        pixels = pixels[..., None]
    if pixels.shape != shape:
        height, width = pixels.shape[:2]
        raise ModelFileError(path, f"the image is {width}x{height} pixels; the model expects "
                                   f"{shape[1]}x{shape[0]}")
    return pixels


# ---------------------------------------------------------------- inspect


def inspect(
    model_path: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
    spec: Annotated[bool, typer.Option("--spec", help="Print only the resolved spec (TOML).")] = False,
) -> None:
    """Architecture, parameter count, format version, metrics and provenance of a model file."""
    model = load_model(model_path)
    if spec:
        text = model.provenance.get("spec", "")
        if not isinstance(text, str):
            raise ModelFileError(model_path, f"provenance.spec: expected the spec as text, found "
                                             f"{type(text).__name__}")
        typer.echo(printable(text, keep="\n\t"), nl=False)
        return
    if as_json:
        typer.echo(json.dumps(model.describe(), indent=2))  # escapes every control character
        return
    typer.echo(_format_inspect(model))


def _column_lines(columns) -> list[str]:
    """`columns` lines for a model trained on a table (format 1.2), none otherwise."""
    if columns is None:
        return []
    described = []
    for feature in columns["features"]:
        kind = (f"{len(feature['categories'])} categories" if feature["kind"] == "categorical"
                else "numeric")
        fill = f", fill {_text(feature['fill'])}" if feature["fill"] is not None else ""
        described.append(f"{feature['name']} ({kind}{fill})")
    return [f"columns      {len(columns['features'])} of {len(columns['source'])} "
            f"(label {', '.join(columns['label'])}; missing {columns['missing']}, "
            f"unseen {columns['unseen']}): {_shorten(printable(', '.join(described)))}"]


def _format_inspect(model) -> str:
    """The plain-text summary. Every field `infer.load` accepts prints, whatever its value."""
    major, minor = model.format_version
    scaling = model.scaling
    contract = model.input_contract
    raw = ("no input contract (format 1.0)" if contract is None else
           f"raw {contract['dtype']} {_number(contract['min'].min())}..{_number(contract['max'].max())}")
    lines = [
        f"format       mlpspec-model {major}.{minor}, written by {printable(model.writer) or 'unknown'}",
        f"input        {' x '.join(map(str, model.sample_shape))} -> {model.inputs} features, "
        f"{raw}, scaling {scaling['kind']}",
        f"output       {model.outputs} classes ({model.output}"
        f"{', loss ' + printable(model.loss) if model.loss else ''}): "
        f"{_shorten(printable(', '.join(model.classes)))}",
        f"parameters   {model.parameter_count:,} ({model.dtype.name})",
    ]
    lines.extend(_column_lines(getattr(model, "columns", None)))
    lines.append("layers")
    from mlpspec.infer import LAYER_OPS

    n = model.inputs
    for i, layer in enumerate(model.layers):
        settings = printable(", ".join(f"{k}={_text(v)}" for k, v in layer["settings"].items()))
        layer_op = LAYER_OPS[layer["type"]]  # the reader's table knows which layers resize
        if layer_op.layout is not None:
            width = layer_op.shapes(layer["settings"], n, "")[1]
            shape, n = f"{n} -> {width}", width
        else:
            shape = f"{n}"
        lines.append(f"  {i:<3} {layer['type']:<14} {shape:<14} {_shorten(settings)}")
    if model.metrics:
        lines.append("metrics")
        for key, value in model.metrics.items():
            lines.append(f"  {printable(key):<20} {_shorten(printable(_text(value)))}")
    provenance = model.provenance
    if provenance:
        lines.append("provenance")
        if provenance.get("cache_key"):
            lines.append(f"  cache key          {_shorten(printable(_text(provenance['cache_key'])))}")
        checksums = provenance.get("checksums")
        if isinstance(checksums, dict):
            for name, digest in checksums.items():
                lines.append(f"  sha256 {_shorten(printable(f'{_text(digest)}  {name}'))}")
        elif checksums:
            lines.append(f"  checksums          {_shorten(printable(_text(checksums)))}")
        if provenance.get("spec"):
            spec = provenance["spec"]
            lines.append(f"  spec               {len(spec.splitlines())} lines of TOML (show with --spec)"
                         if isinstance(spec, str) else
                         f"  spec               {_shorten(printable(_text(spec)))} (not text)")
    return "\n".join(lines)


def printable(text: str, keep: str = "") -> str:
    """`text` safe for a terminal: control and other non-printing characters escaped.

    `\\x1b[31m` (an escape sequence), a newline, a bidi override and so on
    appear as Python escapes (`\\x1b`, `\\n`, `\\u202e`); characters in
    `keep` (say a newline, for multi-line text) pass through.
    """
    if text.isprintable() and not keep:
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _text(value) -> str:
    """A value from a model file as short text: JSON for numbers, strings, lists and maps."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    from mlpspec import infer

    return json.dumps(infer.json_ready(value))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- export


def export(
    model_path: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.", show_default=False)],
    format_: Annotated[str, typer.Option("--format", "-f", help="Target format: onnx.")] = "onnx",
) -> None:
    """Convert a model file to another format (ONNX: needs the onnx extra)."""
    if format_ != "onnx":
        raise MlpspecError(f"--format: unknown format {format_!r}; available: onnx")
    model = load_model(model_path)
    try:
        from mlpspec.onnx_export import to_onnx

        data = to_onnx(model)
    except ImportError:
        raise MlpspecError("exporting to ONNX needs the onnx package: pip install 'mlpspec[onnx]'") from None
    from mlpspec.export import write_model

    try:
        write_model(output, data)
    except OSError as error:
        raise ModelFileError(output, f"cannot write the file: {error.strerror or error}") from None
    shape = ", ".join(map(str, model.sample_shape))
    typer.echo(f"{output}: ONNX, {len(data)} bytes (input: raw samples as float32 (N, {shape}); "
               f"the graph applies the scaling)")
