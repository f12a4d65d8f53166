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
from typing import Annotated

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
        help="Images (PNG, JPEG, ...; needs Pillow), .npy or .npz arrays, CSV files of raw "
             "values (one sample a row; for a model trained on a CSV file, its columns by "
             "header name, or in the training file's order) or IDX files (gzip or raw); each "
             "holds one sample or a batch.", show_default=False)],
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Show the K most likely classes.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")] = False,
    invert: Annotated[str, typer.Option(
        "--invert", metavar="auto|yes|no",
        help="Images: invert grey levels. auto inverts dark ink on a light background "
             "(the border's median brighter than mid-grey); yes/no force it.")] = "auto",
) -> None:
    """Predict raw samples with a model file: the top classes, or a regression model's values.

    Samples are raw, as the training data gave them (pixels 0..255, CSV
    numbers); the model applies its own preprocessing and refuses samples that
    cannot be what it was trained on. Images for a model of 2-D samples are
    brought to the form of MNIST's digits first (fit in a 20x20 box keeping
    the aspect ratio, centred by centre of mass in 28x28; scaled for other
    sizes), unless they already have the model's size. An input that cannot
    be read or does not fit is reported on stderr and the others are still
    predicted; the exit code is then 2.
    """
    from mlpspec import infer
    from mlpspec.image_input import INVERT_CHOICES

    if invert not in INVERT_CHOICES:
        raise MlpspecError(f"--invert: expected one of {', '.join(INVERT_CHOICES)}, "
                           f"found {invert!r}")
    model = load_model(model_path)
    regression = model.task == "regression"
    failed = 0
    for path in inputs:
        # One bad input is reported and skipped: the others are still predicted.
        try:
            samples = _read_input(path, model, invert=invert)
            try:
                scores = model.predict(samples) if regression else model.predict_proba(samples)
            except infer.InputError as error:
                raise ModelFileError(path, str(error)) from None
        except MlpspecError as error:
            typer.echo(f"error: {error}", err=True)
            failed += 1
            continue
        single = scores.ndim == 1
        for index, row in enumerate(scores[None] if single else scores):
            where = str(path) if single else f"{path}[{index}]"
            typer.echo(_format_row(model, row, where, path, None if single else index, top, as_json))
    if failed:
        if len(inputs) > 1:
            typer.echo(f"error: {failed} of {len(inputs)} inputs failed (reported above); "
                       f"the others were predicted", err=True)
        raise typer.Exit(2)


def _format_row(model, row, where: str, path: Path, index: int | None, top: int,
                as_json: bool) -> str:
    """One sample's answer as a line: its top classes (with probabilities or scores), or
    (regression) its predicted value for each target."""
    if model.task == "regression":
        values = {name: float(value) for name, value in zip(model.target_names, row)}
        if as_json:
            return json.dumps({"input": str(path), "index": index, "values": values})
        return f"{where}: " + ", ".join(f"{printable(name)} = {value:.6g}" for name, value in values.items())
    score_name = "probability" if model.output == "softmax" else "score"
    best = row.argsort(kind="stable")[::-1][:min(top, model.outputs)]
    ranked = [{"class": int(c), "label": model.classes[c], score_name: float(row[c])} for c in best]
    if as_json:
        return json.dumps({"input": str(path), "index": index, "top": ranked})
    return f"{where}: " + ", ".join(f"{printable(r['label'])} ({r[score_name]:.4g})" for r in ranked)


INPUT_KINDS = "inputs are images, .npy, .npz, .csv or IDX files"


def _read_input(path: Path, model, *, invert: str = "auto"):
    """The raw samples in `path` as a NumPy array, in the file's dtype (float64 from CSV).

    `.npy`: the array; `.npz`: its array `x`, or its only array; `.csv`: one
    sample a row, comma-separated numbers (a first row that is not numbers is
    a header and skipped), reshaped to the model's sample shape; images: see
    `_read_image`; anything else is read as an IDX file.
    """
    import numpy as np

    if not path.is_file():
        raise ModelFileError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise ModelFileError(path, f"not a readable .npy file: {error}") from None
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".csv":
        return _read_csv(path, model)
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path, model, invert=invert)
    from mlpspec.data.idx import read_idx_file

    try:
        return read_idx_file(path)
    except MlpspecError as error:  # the message names the file already
        raise MlpspecError(f"{error} ({INPUT_KINDS})") from None


def _read_npz(path: Path):
    """Array `x` of an `.npz` archive, or its only array."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if "x" in names:
                name = "x"
            elif len(names) == 1:
                name = names[0]
            else:
                found = ", ".join(names) or "no arrays"
                raise ModelFileError(path, f"expected an array named x or a single array, "
                                           f"found {found}")
            return archive[name]
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as error:
        raise ModelFileError(path, f"not a readable .npz archive: {error}") from None


def _read_csv(path: Path, model):
    """Rows of comma-separated numbers `(n, *sample_shape)` float64; a non-numeric
    first row is a header and skipped."""
    import csv
    import io
    import math

    import numpy as np

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ModelFileError(path, f"not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ModelFileError(path, f"cannot read the file: {error.strerror or error}") from None
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), start=1)
            if row and "".join(row).strip()]
    if getattr(model, "columns", None) is not None:
        return _table_rows(path, rows, model.columns)
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]  # a header: column names
    if not rows:
        raise ModelFileError(path, "no rows of numbers")
    width = math.prod(model.sample_shape)
    values = []
    for number, row in rows:
        if len(row) != width:
            hint = " (a label column? remove it)" if len(row) == width + 1 else ""
            raise ModelFileError(path, f"line {number}: expected {width} values per row (the "
                                       f"model's samples have {width} features), found "
                                       f"{len(row)}{hint}")
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            bad = next(i for i, cell in enumerate(row, start=1) if not _is_number(cell))
            raise ModelFileError(path, f"line {number}, column {bad}: expected a number, "
                                       f"found {row[bad - 1]!r}") from None
    return np.array(values, dtype=np.float64).reshape(len(values), *model.sample_shape)


def _table_rows(path: Path, rows: list[tuple[int, list[str]]], columns: dict):
    """Raw table rows for a model trained on a CSV file (one with `columns`): the cells as
    text, for the model to encode (categories, missing values) as it was trained to.

    With a header naming every feature column, cells are taken by name (any order, other
    columns ignored): a list of records. Without one, each row holds the training file's
    columns or just the feature columns, in order: an object array `(n, width)`.
    """
    import numpy as np

    features = [feature["name"] for feature in columns["features"]]
    source = list(columns["source"])
    if not rows:
        raise ModelFileError(path, "no rows")
    number, first = rows[0]
    names = [cell.strip() for cell in first]
    if set(features) <= set(names):
        records = []
        for number, row in rows[1:]:
            if len(row) != len(names):
                raise ModelFileError(path, f"line {number}: expected {len(names)} values (the "
                                           f"header's columns), found {len(row)}")
            records.append({name: cell for name, cell in zip(names, row) if name in features})
        if not records:
            raise ModelFileError(path, "a header and no rows")
        return records
    if set(names) & (set(source) - set(features)) or (set(names) & set(features)
                                                     and not set(names) & set(_category_cells(columns))):
        absent = [name for name in features if name not in names]
        raise ModelFileError(path, f"line {number} looks like a header, but it has no column "
                                   f"{absent[0]!r}; the model reads the columns "
                                   f"{', '.join(repr(f) for f in features)}")
    from mlpspec.data.tabular import is_missing

    # The cells a header would hold names in: the features' (a row of the training file's
    # columns also has the label's, which may be text).
    feature_cells = ([first[source.index(name)] for name in features]
                     if len(first) == len(source) else first)
    if not _category_cells(columns) and not all(_is_number(c) or is_missing(c) for c in feature_cells):
        rows = rows[1:]  # a header of other names, for a model of numbers only: as before, skipped
        if not rows:
            raise ModelFileError(path, "a header and no rows")
    widths = (len(source), len(features))
    for number, row in rows:
        if len(row) not in widths:
            raise ModelFileError(path, f"line {number}: expected the {len(source)} columns of the "
                                       f"training file ({', '.join(source)}) or the {len(features)} "
                                       f"feature columns ({', '.join(features)}), found {len(row)} values")
    if len({len(row) for _, row in rows}) > 1:
        raise ModelFileError(path, f"rows of {len(rows[0][1])} and of other numbers of values; "
                                   f"expected the same columns in every row")
    table = np.empty((len(rows), len(rows[0][1])), dtype=object)
    table[...] = [row for _, row in rows]
    return table


def _category_cells(columns: dict) -> list[str]:
    return [c for feature in columns["features"] for c in feature["categories"]]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_image(path: Path, model, *, invert: str = "auto"):
    """An image as the model's raw sample.

    For a model of 2-D samples (grey images): converted to grey; an image of
    another size is brought to the form of MNIST's digits (`mlpspec.image_input`),
    inverted first if it is dark on light (`invert`: auto, yes, no); one of the
    model's size is taken as it is, inverted only if asked to or if auto finds
    a light background. Colour models `(h, w, 1|3|4)` take the image as it is.
    """
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
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                # Transparent pixels count as background: flatten onto white.
                rgba = image.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(paper, rgba)
            pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise ModelFileError(path, f"cannot read the image: {error}") from None
    if len(shape) == 2:
        return _grey_sample(path, pixels, model, invert)
    if len(shape) == 3 and shape[-1] == 1:
        pixels = pixels[..., None]
    if pixels.shape != shape:
        height, width = pixels.shape[:2]
        raise ModelFileError(path, f"the image is {width}x{height} pixels; the model expects "
                                   f"{shape[1]}x{shape[0]}")
    return pixels


def _grey_sample(path: Path, pixels, model, invert: str):
    """A grey `(h, w)` uint8 image as a sample of the model's 2-D shape."""
    import numpy as np

    from mlpspec.image_input import mnist_like, should_invert

    shape = tuple(model.sample_shape)
    contract = model.input_contract
    maximum = float(contract["max"].max()) if contract is not None else 255.0
    if pixels.shape == shape and maximum == 255.0:
        inverted = should_invert(pixels, invert)
        sample = 255 - pixels if inverted else pixels
    else:
        whole = contract is None or bool(contract["whole"])
        sample, inverted = mnist_like(pixels, shape, invert=invert, maximum=maximum, whole=whole)
        if contract is not None and contract["dtype"] == "uint8":
            sample = sample.astype(np.uint8)
    if inverted and invert == "auto":
        typer.echo(f"note: {path}: dark on a light background: inverted (--invert no keeps it "
                   f"as it is)", err=True)
    return sample


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
        _output_line(model),
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


def _output_line(model) -> str:
    """What the outputs are: the classes, or (regression) the targets and their scaling."""
    loss = f", loss {printable(model.loss)}" if model.loss else ""
    if model.task == "regression":
        scaling = model.target_scaling
        kind = scaling["kind"] if scaling["kind"] == "none" else (
            f"{scaling['kind']}: mean {_numbers(scaling['offset'])}, std {_numbers(scaling['scale'])}")
        return (f"output       regression, {model.outputs} targets ({model.output}{loss}; "
                f"predict gives values in their units): "
                f"{_shorten(printable(', '.join(model.target_names)))}\n"
                f"targets      scaling {_shorten(kind)}")
    return (f"output       {model.outputs} classes ({model.output}{loss}): "
            f"{_shorten(printable(', '.join(model.classes)))}")


def _numbers(values) -> str:
    return "[" + ", ".join(_number(float(v)) for v in values) + "]"


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
    """A number as the model file's reader writes it in messages."""
    from mlpspec import infer

    return infer._num(value)


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
