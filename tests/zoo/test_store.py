"""The Zoo artifact: saved and restored exactly, with its spec and metadata."""

import chex
import jax
import numpy as np

from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec
from pdiff_jax.zoo.store import Zoo, load_zoo, save_zoo


def test_saved_zoo_restores_exactly(tmp_path):
    md = get_model("cnn_bn", num_classes=10, input_shape=(28, 28, 1))
    base = jax.device_get(md.init(jax.random.key(0)))
    spec = ParamSpec.from_variables(base, md)
    rng = np.random.default_rng(0)
    zoo = Zoo(base, rng.normal(size=(5, spec.size)).astype(np.float32), spec, "bn3",
              rng.uniform(0, 100, 5).astype(np.float32), rng.uniform(0, 100, 5).astype(np.float32),
              {"dataset": {"name": "mnist"}, "mode": "subset"})
    save_zoo(tmp_path / "zoo", zoo, seconds=1.5)
    back = load_zoo(tmp_path / "zoo")
    chex.assert_trees_all_equal(back.base, base)
    np.testing.assert_array_equal(back.vectors, zoo.vectors)
    np.testing.assert_array_equal(back.test_acc, zoo.test_acc)
    assert back.spec == zoo.spec and back.split_point == zoo.split_point
    assert back.meta["dataset"] == zoo.meta["dataset"] and back.meta["seconds"] == 1.5
    assert back.segments == [int(np.prod(s)) for s in spec.shapes]
    assert sum(back.segments) == spec.size
