"""Explicit randomness: one root seed, one independent generator per purpose.

Every random choice in mlpspec (the validation split, weight init, shuffling,
dropout masks) draws from `generator(seed, purpose)`. Streams are derived
from the root seed and the purpose's name, not from call order, so adding a
new use of randomness never shifts the numbers an existing one sees.
"""

from __future__ import annotations

import hashlib

import numpy as np


def generator(seed: int, purpose: str) -> np.random.Generator:
    """A generator for `purpose` derived deterministically from the root `seed`."""
    key = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))
