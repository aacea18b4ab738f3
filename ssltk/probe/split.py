"""Probe-train / probe-test split by episode (never by frame: neighbouring frames are near-duplicates)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ssltk.errors import UsageError


def split_episodes(episodes: Iterable[str], seed: int, test_fraction: float = 0.35) -> tuple[list[str], list[str]]:
    """``(train, test)`` episode names: a seeded permutation of the sorted names, at least one in each."""
    names = sorted(set(episodes))
    if len(names) < 2:
        raise UsageError(
            f"the probe needs at least 2 episodes to split into probe-train and probe-test, got {len(names)}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"test fraction must be between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = min(len(names) - 1, max(1, int(round(test_fraction * len(names)))))
    test = sorted(names[i] for i in order[:n_test])
    train = sorted(names[i] for i in order[n_test:])
    return train, test
