"""Inference speed of the standalone `mlpspec.infer` side by side with onnxruntime.

    python tools/bench_infer.py [--arch 784-1024-256-10] [--repeats 2000] [--rounds 5]

One model (ReLU hidden layers, He-normal random weights: speed does not
depend on the values), written as an mlpspec model file and exported to ONNX
with `mlpspec.onnx_export`. Measured, all wall-clock on this machine:

Each engine runs in its own process, `--rounds` times alternating with the
others (infer, onnxruntime 1 thread, onnxruntime default, infer, ...), so slow
and quiet stretches of a shared machine fall on every engine alike. Each
figure is reported as the median over the rounds with its spread (lowest and
highest round); the targets compare medians.

- load: median time of `infer.load(path)` (file in the page cache; includes
  reading, the CRC-32, parsing and validation) and of creating an
  onnxruntime session from the .onnx file;
- latency: median time of one call on one raw sample (pixel values 0..255 as
  float32; both engines apply the scaling and infer also checks the input
  contract), `model.predict_proba(x)` against `session.run(["probabilities"], ...)`;
- throughput: samples per second on a batch of 10000 raw samples
  (best of a few runs within the round).

onnxruntime runs twice: with one intra-op thread and with its default (one
per core). NumPy uses OpenBLAS's default threads (one per core). The targets
(issue 12) compare against the better onnxruntime setting for each figure:
single-sample latency at most onnxruntime's (1.0x), batch throughput at least
onnxruntime's, load under 5 ms for about 1M parameters. Needs the `onnx`
extra. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlpspec import infer
from mlpspec.data.prepare import RawInput, Scaling
from mlpspec.export import model_to_bytes, write_model
from mlpspec.onnx_export import to_onnx
from mlpspec.spec import parse_spec
from mlpspec.train import build_network

BATCH = 10_000
SPEC = """
spec_version = 1
name = "bench"
[data]
source = "mnist"
[network]
inputs = {inputs}
{layers}
[train]
epochs = 1
"""


def build_model(arch: str, folder: Path) -> tuple[Path, Path, int]:
    sizes = [int(s) for s in arch.split("-")]
    layers = []
    for units in sizes[1:-1]:
        layers.append(f'[[network.layers]]\ntype = "dense.v1"\nunits = {units}\n'
                      f'[[network.layers]]\ntype = "relu.v1"')
    layers.append(f'[[network.layers]]\ntype = "dense.v1"\nunits = {sizes[-1]}')
    spec = parse_spec(SPEC.format(inputs=sizes[0], layers="\n".join(layers)))
    network = build_network(spec)
    side = int(round(sizes[0] ** 0.5))
    shape = (side, side) if side * side == sizes[0] else (sizes[0],)
    data = model_to_bytes(network, spec, scaling=Scaling("unit", np.array(0.0), np.array(255.0)),
                          raw_input=RawInput("uint8", True, np.zeros(sizes[0]), np.full(sizes[0], 255.0)),
                          sample_shape=shape, class_names=tuple(map(str, range(sizes[-1]))),
                          metrics={}, checksums={}, cache_key="bench")
    model_path = write_model(folder / "bench.mlpm", data)
    onnx_path = folder / "bench.onnx"
    onnx_path.write_bytes(to_onnx(infer.load(data)))
    return model_path, onnx_path, sum(a.size for a in network.state_dict().values())


def timings(call, repeats: int, warmup: int) -> list[float]:
    """Seconds of `repeats` calls, after `warmup` calls that warm caches and thread pools."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(call, repeats: int) -> float:
    return statistics.median(timings(call, repeats, warmup=min(50, repeats)))


def best_seconds(call, repeats: int) -> float:
    return min(timings(call, repeats, warmup=1))


def measure(engine: str, model_path: Path, onnx_path: Path, repeats: int) -> dict:
    """Figures for one engine: "infer", or "onnxruntime:<threads>" (0 = its default)."""
    rng = np.random.default_rng(0)
    model = infer.load(model_path)
    batch = rng.integers(0, 256, (BATCH, *model.sample_shape)).astype(np.float32)
    one = batch[0].copy()
    if engine == "infer":
        return {
            "load_ms": 1e3 * median_seconds(lambda: infer.load(model_path), 200),
            "latency_us": 1e6 * median_seconds(lambda: model.predict_proba(one), repeats),
            "throughput_per_s": BATCH / best_seconds(lambda: model.predict_proba(batch), 5),
        }
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(engine.split(":")[1])

    def session():
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    sess = session()
    feed_one, feed_batch = {"input": one[None]}, {"input": batch}
    probabilities = sess.run(["probabilities"], feed_batch)[0]
    return {
        "load_ms": 1e3 * median_seconds(session, 20),
        "latency_us": 1e6 * median_seconds(lambda: sess.run(["probabilities"], feed_one), repeats),
        "throughput_per_s": BATCH / best_seconds(lambda: sess.run(["probabilities"], feed_batch), 5),
        "outputs_match": bool(np.allclose(probabilities, model.predict_proba(batch), rtol=1e-4, atol=1e-6)),
        "version": ort.__version__,
    }


FIGURES = ("load_ms", "latency_us", "throughput_per_s")


def summary(rows: list[dict]) -> dict:
    """Median over the rounds of each figure, with its spread and every round's value."""
    out = {key: statistics.median(row[key] for row in rows) for key in FIGURES}
    out["spread"] = {key: [min(row[key] for row in rows), max(row[key] for row in rows)] for key in FIGURES}
    out["rounds"] = {key: [round(row[key], 3) for row in rows] for key in FIGURES}
    if "outputs_match" in rows[0]:
        out["outputs_match"] = all(row["outputs_match"] for row in rows)
        out["version"] = rows[0]["version"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="784-1024-256-10")
    parser.add_argument("--repeats", type=int, default=2000, help="calls for the latency median")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each engine, alternating")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # ENGINE MODEL ONNX: one engine, in-process
    args, rest = parser.parse_known_args()
    if args.worker:
        print(json.dumps(measure(args.worker, Path(rest[0]), Path(rest[1]), args.repeats)))
        return

    results: dict = {"arch": args.arch, "cpus": os.cpu_count(), "rounds": args.rounds,
                     "loadavg_before": os.getloadavg()[0]}
    engines = {"infer": "infer", "onnxruntime_1_thread": "onnxruntime:1",
               "onnxruntime_default": "onnxruntime:0"}
    rows: dict[str, list[dict]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory() as folder:
        model_path, onnx_path, parameters = build_model(args.arch, Path(folder))
        results.update(parameters=parameters, file_bytes=model_path.stat().st_size)
        for _ in range(args.rounds):
            for name, engine in engines.items():
                # One process per engine: idle OpenBLAS and onnxruntime threads spin for a
                # while after each call and would slow down whichever engine runs next.
                done = subprocess.run([sys.executable, __file__, "--worker", engine, str(model_path),
                                       str(onnx_path), "--repeats", str(args.repeats)],
                                      capture_output=True, text=True, check=True)
                rows[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results["loadavg_after"] = os.getloadavg()[0]
    for name in engines:
        results[name] = summary(rows[name])

    ours = results["infer"]
    peers = [results[name] for name in engines if name != "infer"]
    best_throughput = max(row["throughput_per_s"] for row in peers)
    best_latency = min(row["latency_us"] for row in peers)
    results["ratios_vs_best_onnxruntime"] = {
        "throughput": ours["throughput_per_s"] / best_throughput,
        "latency": ours["latency_us"] / best_latency,
    }
    results["targets_met"] = {
        "throughput_at_least_onnxruntime": ours["throughput_per_s"] >= best_throughput,
        "latency_at_most_onnxruntime": ours["latency_us"] <= best_latency,
        "load_under_5ms": ours["load_ms"] < 5.0,
    }
    print(f"medians over {args.rounds} alternated rounds [lowest - highest round]", file=sys.stderr)
    for name in engines:
        row, (load, latency, throughput) = results[name], (results[name]["spread"][k] for k in FIGURES)
        print(f"{name:22} load {row['load_ms']:6.2f} ms [{load[0]:.2f}-{load[1]:.2f}]   "
              f"latency {row['latency_us']:6.1f} us [{latency[0]:.1f}-{latency[1]:.1f}]   "
              f"throughput {row['throughput_per_s']:7.0f}/s [{throughput[0]:.0f}-{throughput[1]:.0f}]",
              file=sys.stderr)
    ratios = results["ratios_vs_best_onnxruntime"]
    print(f"infer / best onnxruntime: latency {ratios['latency']:.2f}x (target <= 1.00), "
          f"throughput {ratios['throughput']:.2f}x (target >= 1.00)", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
