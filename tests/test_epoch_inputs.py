"""What `fit` trains on each epoch when [data.augment] is set: two halves distorted at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mlpspec import rng
from mlpspec.train import _augmenter, _distorted, fit

from test_augment import AUGMENT, pictures, spec


def test_each_half_comes_from_its_own_child_generator_whatever_thread_runs_it():
    data = pictures(n=101)  # odd: the first half is the larger one
    augmenter = _augmenter(spec(*AUGMENT), data)
    with ThreadPoolExecutor(1) as helper:
        both = _distorted(augmenter, data.x_train, rng.generator(0, "augment/epoch-1"), helper)
        again = _distorted(augmenter, data.x_train, rng.generator(0, "augment/epoch-1"), helper)
    first, second = rng.generator(0, "augment/epoch-1").spawn(2)
    expected = np.concatenate([augmenter(data.x_train[:51], first), augmenter(data.x_train[51:], second)])
    assert both.tobytes() == expected.tobytes() == again.tobytes()
    assert not np.array_equal(both, data.x_train)


def test_fit_trains_on_the_distorted_halves(monkeypatch):
    """fit's epoch input is _distorted's output (a wrong wiring would train on plain images)."""
    import mlpspec.train as train

    seen = []
    original = train._distorted

    def spy(augmenter, X, generator, helper):
        out = original(augmenter, X, generator, helper)
        seen.append(out.copy())
        return out

    monkeypatch.setattr(train, "_distorted", spy)
    data = pictures()
    fit(spec(*AUGMENT, "train.epochs=2"), data)
    assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])
    assert not np.array_equal(seen[0], data.x_train)
