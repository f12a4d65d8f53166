"""Per-epoch cost of `[data.augment]` next to the cost of a training epoch, on MNIST.

    python tools/bench_augment.py [--spec specs/mnist-best.toml] [--repeats 3]

Prepares the spec's data (its validation split carved out, as in a run), then
times, on the spec's training set:

* each augmentation setting below, distorting the whole training set once,
  as the training loop does at the start of every epoch;
* one epoch of the spec's training with augmentation off (forward, backward,
  optimizer step, regularisation; no validation pass).

Prints the median seconds of each and the augmentation's share of an
augmented epoch; the last line printed is one JSON object. Figures are
wall-clock and noisy on a shared 2-core machine: run it on a quiet one.
`MLPSPEC_MIRRORS` defaults to the local MNIST copy in `../shared/data/mnist`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import attrs

from mlpspec import rng
from mlpspec.data.augment import Augmenter
from mlpspec.data.prepare import load_raw, prepare
from mlpspec.spec import load_spec
from mlpspec.spec.model import AugmentSpec
from mlpspec.train import fit

REPO = Path(__file__).resolve().parent.parent

SETTINGS = {
    "shift ±2 px, whole pixels": AugmentSpec(translate=2, whole_pixels=True),
    "shift ±2 px, bilinear": AugmentSpec(translate=2),
    "shift ±2 px, rotate ±10°, scale ±10%": AugmentSpec(translate=2, rotate=10, scale=0.1),
    "the above + elastic (alpha 34, sigma 6)": AugmentSpec(translate=2, rotate=10, scale=0.1,
                                                           elastic_alpha=34, elastic_sigma=6),
}


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=str(REPO / "specs" / "mnist-best.toml"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MLPSPEC_MIRRORS", str(REPO.parent / "shared" / "data" / "mnist"))

    spec = load_spec(args.spec)
    data = prepare(load_raw(spec.data, Path(args.spec).parent), spec.data, spec.seed,
                   spec.train.precision)
    X = data.x_train
    print(f"{args.spec}: {len(X)} training samples, {spec.train.precision}, "
          f"median of {args.repeats}")

    spec_setting = ("this spec's [data.augment]", spec.data.augment)
    results = {}
    for label, setting in [*SETTINGS.items(), spec_setting]:
        augmenter = Augmenter(setting, data.sample_shape, data.scaling)
        generator = rng.generator(spec.seed, "augment")
        results[label] = median_seconds(lambda: augmenter(X, generator), args.repeats)

    plain = attrs.evolve(spec, data=attrs.evolve(spec.data, augment=AugmentSpec()),
                         train=attrs.evolve(spec.train, epochs=1))
    no_validation = attrs.evolve(data, x_val=data.x_val[:0], y_val=data.y_val[:0])
    epoch = median_seconds(lambda: fit(plain, no_validation), args.repeats)

    print(f"{'training epoch, augmentation off':42s} {epoch:6.2f} s")
    for label, seconds in results.items():
        print(f"{label:42s} {seconds:6.2f} s  ({100 * seconds / (epoch + seconds):4.1f} % "
              f"of an augmented epoch)")
    print(json.dumps({"spec": args.spec, "samples": len(X), "train_epoch_seconds": epoch,
                      "augment_seconds": results}))


if __name__ == "__main__":
    main()
