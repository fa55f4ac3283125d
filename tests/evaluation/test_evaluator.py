"""Evaluating many networks (pdiff_jax.evaluation.evaluator): the cached tail inputs give
the full network's logits, and the evaluator's answers are the plain network's."""

import numpy as np

from pdiff_jax.evaluation.evaluator import ManyModelEvaluator, compute_tail_inputs
from pdiff_jax.params.subset import merge, unflatten_subset


def test_tail_gives_same_logits_as_full_network(subset_zoo, small_mnist):
    md, zoo, _, _ = subset_zoo
    x = small_mnist.x_test[:64]
    h = compute_tail_inputs(md, zoo.base, x, zoo.split_point, batch_size=32)
    tail = md.apply(zoo.base, h, start=zoo.split_point)
    full = md.apply(zoo.base, x)
    np.testing.assert_allclose(tail, full, rtol=1e-5, atol=1e-5)


def test_evaluator_matches_plain_full_network(subset_zoo, small_mnist):
    md, zoo, _, _ = subset_zoo
    x, y = small_mnist.x_test[:300], small_mnist.y_test[:300]
    cached = ManyModelEvaluator(md, zoo.base, zoo.spec, {"test": (x, y)},
                                split_point=zoo.split_point, batch_size=128, models_per_call=5)
    whole = ManyModelEvaluator(md, zoo.base, zoo.spec, {"test": (x, y)}, split_point=None,
                               batch_size=128, models_per_call=5, vectorize="map")
    acc_cached, wrong_cached = cached.evaluate(zoo.vectors[:7], "test")
    acc_whole, wrong_whole = whole.evaluate(zoo.vectors[:7], "test")
    for i in range(7):
        v = merge(zoo.base, unflatten_subset(zoo.vectors[i], zoo.spec))
        ref = np.asarray(md.apply(v, x).argmax(-1) != y)
        np.testing.assert_array_equal(wrong_cached[i], ref)
    np.testing.assert_array_equal(wrong_cached, wrong_whole)
    np.testing.assert_allclose(acc_cached, acc_whole)
