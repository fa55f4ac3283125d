"""BatchNorm statistics recomputed from data (pdiff_jax/evaluation/batch_stats.py)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.evaluation.batch_stats import (
    recompute_batch_stats,
    recompute_in_vectors,
    touches_batch_stats,
)
from pdiff_jax.models import get_model
from pdiff_jax.params.subset import ParamSpec, flatten_subset, merge, unflatten_subset


def _images(n: int = 64) -> jax.Array:
    return jax.random.normal(jax.random.key(1), (n, 28, 28, 1))


def _cnn_bn_with_wrong_stats():
    model_def = get_model("cnn_bn", num_classes=10, input_shape=(28, 28, 1))
    variables = model_def.init(jax.random.key(0))
    # Running statistics far from anything the images produce.
    wrong = jax.tree.map(lambda a: jnp.full_like(a, 7.0), variables["batch_stats"])
    return model_def, {**variables, "batch_stats": wrong}


def test_each_batchnorm_gets_the_statistics_of_its_inputs():
    model_def, variables = _cnn_bn_with_wrong_stats()
    x = _images()
    fresh = recompute_batch_stats(model_def, variables, x)
    # The input of bn1 is conv1's output; of bn2, conv2's output with bn1 normalizing by
    # the batch (training mode), i.e. by bn1's recomputed statistics.
    for layer, stop, train in (("bn1", "bn1", False), ("bn2", "bn2", True)):
        out = model_def.apply(variables, x, train=train, stop=stop)
        inputs = out[0] if train else out
        np.testing.assert_allclose(fresh["batch_stats"][layer]["mean"],
                                   inputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fresh["batch_stats"][layer]["var"],
                                   inputs.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    # In inference mode the recomputed network computes what training mode computes on
    # the same images; with the wrong statistics it does not.
    in_training_mode, _ = model_def.apply(variables, x, train=True)
    np.testing.assert_allclose(model_def.apply(fresh, x), in_training_mode, rtol=1e-3,
                               atol=1e-3)
    assert not np.allclose(model_def.apply(variables, x), in_training_mode, atol=1e-2)
    # Nothing but the statistics changes.
    same = jax.tree.map(np.array_equal, fresh["params"], variables["params"])
    assert all(jax.tree.leaves(same))


def test_a_network_without_batchnorm_is_unchanged():
    model_def = get_model("mlp3", num_classes=10, input_shape=(28, 28, 1))
    variables = model_def.init(jax.random.key(0))
    assert recompute_batch_stats(model_def, variables, _images(8)) is variables


def test_vectors_of_an_entire_network_get_their_statistics_recomputed():
    model_def, variables = _cnn_bn_with_wrong_stats()
    spec = ParamSpec.from_variables(variables, ".*")
    assert touches_batch_stats(spec)
    keys = jax.random.split(jax.random.key(3), 3)
    members = [merge(variables, {"params": model_def.init(k)["params"]}) for k in keys]
    vectors = np.stack([np.asarray(flatten_subset(m, spec)) for m in members])
    x = _images(32)
    out = recompute_in_vectors(model_def, variables, spec, vectors, x)
    assert out.shape == vectors.shape
    for i, member in enumerate(members):
        expected = flatten_subset(recompute_batch_stats(model_def, member, x), spec)
        np.testing.assert_allclose(out[i], expected, rtol=1e-5, atol=1e-6)
        got = unflatten_subset(out[i], spec)
        assert all(jax.tree.leaves(jax.tree.map(np.array_equal, got["params"],
                                                member["params"])))
    assert not np.allclose(out, vectors)


def test_vectors_without_statistics_are_refused():
    model_def, variables = _cnn_bn_with_wrong_stats()
    spec = ParamSpec.from_variables(variables, r"^params/(bn3|bn4)/(scale|bias)$")
    assert not touches_batch_stats(spec)
    with pytest.raises(ValueError, match=r"no batch_stats.*zoo\.mode='seed'"):
        recompute_in_vectors(model_def, variables, spec, np.zeros((1, spec.size)), _images(4))


def test_the_evaluate_stage_measures_every_group_with_recomputed_statistics(tmp_path,
                                                                           tfds_dir,
                                                                           monkeypatch):
    import json

    from pdiff_jax import api, artifacts
    from pdiff_jax.config.defaults import config_file
    from pdiff_jax.evaluation.evaluator import make_evaluator
    from pdiff_jax.generator import diagnostics
    from pdiff_jax.pipeline import run_pipeline
    from pdiff_jax.run import open_run

    compared = []   # what the autoencoder stage holds its copies against
    gap = diagnostics.reconstruction_gap
    monkeypatch.setattr(diagnostics, "reconstruction_gap",
                        lambda meta, zoo_acc: compared.append(zoo_acc) or gap(meta, zoo_acc))

    config = config_file(Path(__file__).resolve().parents[2] / "configs" / "size_ladder.py",
                         "cnn_bn,smoke")
    config.data.data_dir = str(tfds_dir)
    config.evaluate.update(recompute_batch_stats=200, finetune_pairs=0, tsne=False,
                           trajectories=0)
    run_pipeline(config, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["batch_stats"] == "recomputed from 200 training images"
    assert "BatchNorm statistics of every evaluated network: recomputed from 200" in (
        tmp_path / "report.md").read_text()
    # The originals as measured equal the zoo's members with recomputed statistics, which
    # is not how collect measured them (stored statistics).
    inp = open_run(tmp_path)
    zoo, data = inp.zoo, inp.dataset
    measured, _ = artifacts.load_artifact(artifacts.artifact_dir(tmp_path, artifacts.EVALUATION),
                                          what="evaluation")
    plain = make_evaluator(inp.model_def, zoo.base, zoo.spec, zoo.split_point, data,
                           train_examples=config.evaluate.train_examples)
    fresh = recompute_in_vectors(inp.model_def, zoo.base, zoo.spec, zoo.vectors,
                                 data.x_train[:200])
    np.testing.assert_allclose(measured["original"]["test_acc"],
                               plain.evaluate(fresh, "test")[0], atol=1e-4)
    np.testing.assert_allclose(zoo.test_acc, plain.evaluate(zoo.vectors, "test")[0],
                               atol=1e-4)
    assert not np.allclose(measured["original"]["test_acc"], zoo.test_acc)
    # The autoencoder's copies (measured with recomputed statistics) were held against the
    # zoo measured the same way, not against its stored-statistics accuracies.
    np.testing.assert_allclose(compared[0], measured["original"]["test_acc"], atol=1e-4)
    # The notebook API measures as the evaluate stage did, and recomputes alike.
    run = api.load(tmp_path)
    np.testing.assert_allclose(run.accuracy(zoo.vectors), measured["original"]["test_acc"],
                               atol=1e-4)
    np.testing.assert_array_equal(run.recompute_batch_stats(zoo.vectors, images=200), fresh)
