"""Preprocessing (pdiff_jax.data.preprocess): class-balanced subsets."""

import numpy as np
import pytest

from pdiff_jax.data import preprocess


def test_balanced_subset_redistributes_small_classes_and_excludes():
    labels = np.asarray([0] * 2 + [1] * 50 + [2] * 50)
    idx = preprocess.balanced_subset(labels, 30, num_classes=3, seed=0)
    assert np.bincount(labels[idx]).tolist() == [2, 14, 14]
    assert len(set(idx)) == 30 and np.all(np.diff(idx) > 0)
    again = preprocess.balanced_subset(labels, 30, num_classes=3, seed=0, exclude=idx)
    assert not set(idx) & set(again)
    assert np.array_equal(idx, preprocess.balanced_subset(labels, 30, num_classes=3, seed=0))
    with pytest.raises(ValueError, match="only 102 are available"):
        preprocess.balanced_subset(labels, 103, num_classes=3, seed=0)
