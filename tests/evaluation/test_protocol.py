import numpy as np
import pytest

from pdiff_jax.evaluation import protocol


def test_best_is_selected_by_train_not_test():
    # Member 1 has the best TEST accuracy, member 2 the best TRAINING accuracy.
    train = np.array([90.0, 91.0, 95.0, 80.0])
    test = np.array([70.0, 79.0, 72.0, 60.0])
    s = protocol.summarize(train, test)
    assert s["best_index"] == 2
    assert s["best"] == 72.0  # not 79.0, which test-set selection would report
    assert s["best_train"] == 95.0
    assert s["oracle_best"] == 79.0
    assert s["avg"] == pytest.approx(70.25)
    assert s["median"] == pytest.approx(71.0)
    assert s["worst"] == 60.0
    assert s["n"] == 4


def test_ties_in_train_go_to_lowest_index():
    s = protocol.summarize([0.5, 0.9, 0.9, 0.9], [0.1, 0.2, 0.8, 0.3])
    assert s["best_index"] == 1
    assert s["best"] == pytest.approx(0.2)


def test_nan_train_is_never_selected():
    assert protocol.select_by_train([np.nan, 0.3, 0.2]) == 1


def test_shape_mismatch_and_empty_raise():
    with pytest.raises(ValueError):
        protocol.summarize([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        protocol.summarize([], [])


def test_original_summary_is_best_test_and_reports_train_selection():
    test = np.array([76.1, 76.7, 76.3])
    train = np.array([99.0, 98.0, 99.5])
    s = protocol.original_summary(test)
    assert s["best"] == pytest.approx(76.7) and s["best_index"] == 1
    assert s["median"] == pytest.approx(76.3)
    assert s["avg"] == pytest.approx(np.mean(test))
    assert s["n"] == 3 and "best_by_train" not in s
    s2 = protocol.original_summary(test, train)
    assert s2["best_by_train"] == pytest.approx(76.3) and s2["best_by_train_index"] == 2


def test_as_percent_units():
    np.testing.assert_allclose(protocol.as_percent([0.5, 0.925]), [50.0, 92.5])
    np.testing.assert_allclose(protocol.as_percent([50.0, 92.5]), [50.0, 92.5])
    np.testing.assert_allclose(protocol.as_percent([0.5], "percent"), [0.5])
    np.testing.assert_allclose(protocol.as_percent([1.0], "fraction"), [100.0])
    with pytest.raises(ValueError):
        protocol.as_percent([1.0], "per-mille")
