"""Near-duplicate grouping from neighbour lists (``mumic_core.model.duplicates``)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.near_duplicates import union_find_groups  # the rule, pair by pair: the baseline
from mumic_core.model.duplicates import group_near_duplicates


@pytest.mark.parametrize("seed", range(40))
def test_groups_match_the_pairwise_rule(seed):
    """Random neighbour lists with what an index really returns: the image itself or not, -1
    padding, ids deleted since the index was built, unsorted ids, ties in group size."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 60)), int(rng.integers(1, 7))
    ids = rng.choice(np.arange(1, 500), size=n, replace=False)
    found = rng.choice(np.r_[ids, [-1, 900, 901]], size=(n, k))
    sims = rng.choice([0.5, 0.9, 0.96, 0.985, 0.999, 1.0], size=(n, k)).astype(np.float32)
    for relative in (0.1, 10.0):
        got = group_near_duplicates(ids, found, sims, relative=relative)
        assert got == union_find_groups(ids, found, sims, relative=relative)


def test_a_collection_that_is_all_alike_is_not_one_group():
    """An untrained model: every neighbour at 0.99. Only pairs far closer than typical link."""
    ids = np.arange(10)
    found = np.stack([ids, (ids + 1) % 10], axis=1)
    sims = np.full((10, 2), 0.99, dtype=np.float32)
    sims[:, 0] = 1.0
    sims[3, 1] = sims[4, 1] = 1.0  # 3-4 and 4-5 identical
    assert group_near_duplicates(ids, found, sims) == [[3, 4, 5]]
    sims[:, 1] = 0.99
    assert group_near_duplicates(ids, found, sims) == []


def test_too_few_images_or_neighbours():
    assert group_near_duplicates(np.array([7]), np.array([[7]]), np.array([[1.0]])) == []
    assert group_near_duplicates(np.arange(3), np.empty((3, 0)), np.empty((3, 0))) == []
    assert group_near_duplicates(np.arange(3), np.full((3, 2), -1), np.zeros((3, 2))) == []
