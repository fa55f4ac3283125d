"""Accuracy-conditioned generation: the condition embedding, classifier-free guidance,
the conditional training stage, the config section, the per-level report and the
accuracy-spread zoo (seed zoo with epoch snapshots)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pdiff_jax import artifacts
from pdiff_jax.config import check as config_check
from pdiff_jax.config.check import ConfigError
from pdiff_jax.config.defaults import get_config
from pdiff_jax.evaluation import conditional as cond_report
from pdiff_jax.generator import (
    SamplerSettings,
    conditioning,
    default_generator_config,
    load_generator,
    train_autoencoder,
    train_diffusion,
)
from pdiff_jax.generator.conditioning import ConditionSettings, guided_eps_fn
from pdiff_jax.generator.denoiser import UNet1D, build

DDIM = SamplerSettings("ddim", 20)
LEVELS = (0.0, 70.0, 100.0)   # two levels: [0, 70), [70, 100]


# ----------------------------------------------------------------------------- settings


def test_levels_label_members_and_outsiders_are_null():
    s = ConditionSettings(kind="level", levels=(75, 85, 90, 92, 95))
    acc = np.array([70.0, 75.0, 84.99, 85.0, 91.0, 92.0, 95.0, 96.0])
    np.testing.assert_array_equal(s.level_of(acc), [-1, 0, 0, 1, 2, 3, 3, -1])
    np.testing.assert_array_equal(s.labels(acc), [-1, 0, 0, 1, 2, 3, 3, -1])
    v = ConditionSettings(kind="value", levels=(75, 85, 90, 92, 95))
    np.testing.assert_allclose(v.labels(acc), [-1, .75, .8499, .85, .91, .92, .95, -1],
                               rtol=1e-6)
    assert s.request(2) == 2.0 and v.request(2) == 91.0


def test_condition_kinds_match_the_config_check():
    assert config_check.CONDITION_KINDS == conditioning.KINDS
    assert config_check.CONDITION_ON == conditioning.ON
    assert set(default_generator_config().condition.to_dict()) == {
        f.name for f in __import__("dataclasses").fields(ConditionSettings)}


# ----------------------------------------------------------------------------- network


@pytest.fixture(scope="module")
def unet():
    model = UNet1D(channels=(8, 8), time_dim=16, condition="level", num_levels=3)
    x = jax.random.normal(jax.random.key(0), (5, 4, 2))
    t = jnp.array([0, 3, 10, 50, 99])
    params = model.init(jax.random.key(1), x, t, jnp.zeros(5))["params"]
    # the output layer starts at zero: perturb every weight so outputs depend on c
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape),
                          params)
    return model, params, x, t


def test_condition_changes_the_prediction_and_null_is_its_own(unet):
    model, params, x, t = unet
    apply = lambda c: model.apply({"params": params}, x, t, c)
    e0, e1 = apply(jnp.zeros(5)), apply(jnp.ones(5))
    assert float(jnp.abs(e0 - e1).max()) > 1e-3
    np.testing.assert_array_equal(apply(None), apply(jnp.full(5, -1.0)))
    assert float(jnp.abs(apply(None) - e0).max()) > 1e-3


def test_guidance_scale_zero_is_the_unconditional_model(unet):
    model, params, x, t = unet
    apply = lambda x, t, c: model.apply({"params": params}, x, t, c)
    uncond = apply(x, t, None)
    guided0 = guided_eps_fn(apply, jnp.full(5, 2.0), 0.0)(x, t)
    np.testing.assert_allclose(guided0, uncond, atol=1e-5)
    # scale 1 is the conditional model; scale 3 extrapolates past it
    cond = apply(x, t, jnp.full(5, 2.0))
    np.testing.assert_allclose(guided_eps_fn(apply, jnp.full(5, 2.0), 1.0)(x, t), cond,
                               atol=1e-6)
    np.testing.assert_allclose(guided_eps_fn(apply, jnp.full(5, 2.0), 3.0)(x, t),
                               uncond + 3 * (cond - uncond), atol=1e-4)


def test_value_condition_and_paper_denoiser_refuses_a_condition():
    model = build("unet", channels=(8, 8), time_dim=16, condition="value")
    x, t = jnp.zeros((2, 4, 2)), jnp.array([1, 2])
    params = model.init(jax.random.key(0), x, t, jnp.array([0.8, 0.9]))["params"]
    assert "null" in params["ConditionEmbedding_0"]
    with pytest.raises(ValueError, match="unconditional"):
        build("paper", condition="level", num_levels=4)


# ----------------------------------------------------------------------------- stages


def _config(kind="level"):
    cfg = default_generator_config()
    cfg.normalization.mode = "tensor"
    cfg.autoencoder.model.update(kind="fc", hidden=(32,), latent_len=2, latent_channels=2,
                                 latent_noise=0.05, input_noise=0.0)
    cfg.autoencoder.train.update(steps=150, batch_size=32, learning_rate=1e-2,
                                 checkpoint_every=10**6)
    cfg.diffusion.process.num_timesteps = 100
    cfg.diffusion.model.update(channels=(16, 16), time_dim=16)
    cfg.diffusion.train.update(steps=500, batch_size=32, learning_rate=3e-3,
                               checkpoint_every=10**6)
    cfg.condition.update(kind=kind, levels=LEVELS, dropout=0.2)
    return cfg


def two_cluster_zoo(K=32, D=24, seed=0):
    """Half the members near +1 with accuracy 90, half near -1 with accuracy 40."""
    rng = np.random.default_rng(seed)
    sign = np.where(np.arange(K) % 2 == 0, 1.0, -1.0)
    zoo = sign[:, None] + 0.05 * rng.normal(size=(K, D))
    acc = np.where(sign > 0, 90.0, 40.0) + rng.uniform(-2, 2, K)
    return zoo.astype(np.float32), acc.astype(np.float32), sign


@pytest.fixture(scope="module", params=["level", "value"])
def conditional_generator(request, tmp_path_factory):
    wd = tmp_path_factory.mktemp(f"cond_{request.param}")
    zoo, acc, sign = two_cluster_zoo()
    cfg = _config(request.param)
    ae_arrays, ae_meta = train_autoencoder(
        zoo, key=jax.random.key(0), normalization=cfg.normalization,
        model=cfg.autoencoder.model, train=cfg.autoencoder.train)
    artifacts.save_artifact(artifacts.artifact_dir(wd, artifacts.AUTOENCODER), ae_arrays,
                            ae_meta)
    arrays, meta = train_diffusion(
        ae_arrays["latents"], key=jax.random.key(1), process=cfg.diffusion.process,
        model=cfg.diffusion.model, train=cfg.diffusion.train, condition=cfg.condition,
        accuracies=acc)
    artifacts.save_artifact(artifacts.artifact_dir(wd, artifacts.DIFFUSION), arrays, meta)
    return load_generator(wd), zoo, sign, meta


def test_condition_is_stored_and_rebuilt(conditional_generator):
    gen, _, _, meta = conditional_generator
    assert meta["condition"]["members_per_level"] == [16, 16]
    assert gen.condition.enabled and gen.condition.num_levels == 2


def test_same_key_and_condition_give_the_same_samples(conditional_generator):
    gen = conditional_generator[0]
    c = gen.condition.request(1)
    a = gen.sample(jax.random.key(3), 8, DDIM, condition=c)
    b = gen.sample(jax.random.key(3), 8, DDIM, condition=c)
    np.testing.assert_array_equal(a, b)
    other = gen.sample(jax.random.key(3), 8, DDIM, condition=gen.condition.request(0))
    assert np.abs(a - other).max() > 0.1


def test_samples_land_in_the_requested_cluster(conditional_generator):
    gen = conditional_generator[0]
    for level, want in ((0, -1.0), (1, 1.0)):   # level 0: accuracy 40 (-1); level 1: 90 (+1)
        out = gen.sample(jax.random.key(4), 16, DDIM, condition=gen.condition.request(level),
                         guidance_scale=3.0)   # guidance sharpens a briefly trained model
        got = np.sign(out.mean(1))
        assert (got == want).mean() >= 0.9, (level, got)


def test_guidance_zero_sampling_equals_unconditional_sampling(conditional_generator):
    gen = conditional_generator[0]
    uncond = gen.sample_latents(jax.random.key(5), 8, DDIM)
    guided0 = gen.sample_latents(jax.random.key(5), 8, DDIM, condition=gen.condition.request(1),
                                 guidance_scale=0.0)
    np.testing.assert_allclose(guided0, uncond, atol=1e-4)


def test_bad_conditions_are_refused(conditional_generator):
    gen = conditional_generator[0]
    bad = 5 if gen.condition.kind == "level" else 150.0
    with pytest.raises(ValueError, match="condition must be"):
        gen.sample(jax.random.key(0), 2, DDIM, condition=bad)
    with pytest.raises(ValueError, match="guidance_scale"):
        gen.sample(jax.random.key(0), 2, DDIM, condition=gen.condition.request(0),
                   guidance_scale=-1.0)


def test_conditional_training_needs_labelled_members():
    from pdiff_jax.errors import MismatchError

    cfg = _config()
    latents = np.zeros((4, 2, 2), np.float32)
    for acc, match in ((None, "one accuracy per zoo member"),
                       (np.full(4, 100.5, np.float32), "no zoo member lies")):
        with pytest.raises(MismatchError, match=match):
            train_diffusion(latents, key=jax.random.key(0), process=cfg.diffusion.process,
                            model=cfg.diffusion.model, train=cfg.diffusion.train,
                            condition=cfg.condition, accuracies=acc)


# ----------------------------------------------------------------------------- report


def test_level_report_counts_what_lands_inside():
    s = cond_report.level_summary([1, 2, 3, 4], [80.0, 86.0, 88.0, 91.0], 85, 90, last=False)
    assert s["fraction_inside"] == 0.5 and s["median_inside"] and s["median_miss"] == 0.0
    assert s["best"] == 91.0   # chosen by training accuracy, not test
    miss = cond_report.level_summary([1, 1], [70.0, 72.0], 85, 90, last=False)
    assert not miss["median_inside"] and miss["median_miss"] == pytest.approx(14.0)
    assert cond_report.inside([95.0], 92, 95, last=True)[0]
    assert not cond_report.inside([95.0], 92, 95, last=False)[0]


def test_report_section_and_plot(tmp_path):
    levels = [{"level": i, "range": [lo, hi], "members": 3,
               "generated": cond_report.level_summary([1, 2], g, lo, hi, i == 1),
               "generated_test_acc": g, "zoo": cond_report.level_summary([1], [lo], lo, hi,
                                                                         i == 1),
               "zoo_test_acc": [lo]}
              for i, (lo, hi, g) in enumerate([(70, 80, [72.0, 75.0]), (80, 90, [70.0, 85.0])])]
    results = {"conditional": {"kind": "level", "on": "test", "guidance_scale": 1.0,
                               "noise_amplitude": 0.1, "target_fraction": 0.8,
                               "all_levels_met": False, "levels": levels}}
    (tmp_path / "report.md").write_text("# p-diff evaluation\n")
    cond_report.append_to_report(results, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| 1 | 80-90 | generated | 2 | 85.00 | 77.50 | 77.50 | 50 % |" in text
    assert "**NOT met**" in text and (tmp_path / "conditional_levels.png").stat().st_size > 0


# ----------------------------------------------------------------------------- config


def _cfg(**condition) -> ml_collections.ConfigDict:
    config = get_config("smoke")
    d = config.to_dict()
    d["generator"]["condition"].update(condition)
    return ml_collections.ConfigDict(d)


@pytest.mark.parametrize("fields, match", [
    ({"kind": "levle"}, r"did you mean --config.generator.condition.kind=level"),
    ({"guidance": 2.0}, r"no field 'guidance'; did you mean generator.condition.guidance_scale"),
    ({"kind": "level", "levels": ()}, r"at least 2 range edges"),
    ({"kind": "level", "levels": (90, 80, 100)}, r"increasing accuracy range edges"),
    ({"dropout": 1.0}, r"generator.condition.dropout must be in \[0, 1\)"),
    ({"guidance_scale": -1.0}, r"guidance_scale must be a number >= 0"),
    ({"on": "val"}, r"generator.condition.on must be one of"),
])
def test_condition_config_mistakes_are_one_clear_line(fields, match):
    with pytest.raises(ConfigError, match=match) as e:
        config_check._check_values(_cfg(**fields))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["paper", "kde"])
def test_unconditional_denoisers_with_a_condition_are_refused(kind):
    config = _cfg(kind="level", levels=(0, 50, 100))
    config.generator.diffusion.model.kind = kind
    with pytest.raises(ConfigError, match=f"must be 'unet'.*unconditional.*got '{kind}'"):
        config_check._check_values(config)


def test_snapshot_epochs_are_checked():
    config = get_config("smoke")
    config.zoo.snapshot_epochs = (1, 2)
    with pytest.raises(ConfigError, match=r"zoo\.snapshot_epochs must be empty unless"):
        config_check._check_values(config)
    config.zoo.mode = "seed"
    config.zoo.snapshot_epochs = (2, 1)
    with pytest.raises(ConfigError, match="increasing positive epoch counts"):
        config_check._check_values(config)


# ----------------------------------------------------------------------------- zoo


def test_seed_zoo_with_epoch_snapshots_is_seed_major(small_mnist, tmp_path):
    from pdiff_jax.models import get_model
    from pdiff_jax.params.subset import ParamSpec, flatten_subset
    from pdiff_jax.zoo import training
    from pdiff_jax.zoo.collect import collect_vectors, seed_of_member

    model_def = get_model("mlp3", num_classes=10, input_shape=(28, 28, 1))
    recipe = dict(epochs=1, batch_size=128, optimizer="sgd", lr=0.01, momentum=0.9,
                  schedule="constant")
    _, vectors, spec, _ = collect_vectors(
        small_mnist, model_def, seed=0, checkpoints=tmp_path, mode="seed", selector=".*",
        num_models=2, models_per_step=2, snapshot_epochs=(1, 2), **recipe)
    assert vectors.shape == (4, spec.size)
    # member 1 * 2 + 1 is seed 1 after 2 epochs: the ordinary training of that seed
    one = training.train_classifiers_batched(
        model_def, [seed_of_member(0, 0), seed_of_member(0, 1)], small_mnist.x_train,
        small_mnist.y_train, **dict(recipe, epochs=2))
    np.testing.assert_allclose(vectors[3], flatten_subset(one[1], ParamSpec.from_variables(
        one[1], ".*")), atol=1e-6)
    assert np.abs(vectors[2] - vectors[3]).max() > 1e-3   # epoch 1 != epoch 2


def test_sample_stage_draws_each_level_with_the_given_guidance(conditional_generator):
    from pdiff_jax.generator.trained import sample_and_decode

    gen = conditional_generator[0]
    key = jax.random.key(6)
    arrays, meta = sample_and_decode(gen, key, DDIM, n=3, guidance_scale=0.0)
    np.testing.assert_array_equal(arrays["condition_level"], [0, 0, 0, 1, 1, 1])
    assert meta["condition"]["guidance_scale"] == 0.0
    # scale 0: each level's draw is the unconditional model with that level's key
    for i in range(2):
        np.testing.assert_allclose(arrays["latents"][3 * i:3 * i + 3],
                                   gen.sample_latents(jax.random.fold_in(key, 1000 + i), 3,
                                                      DDIM), atol=1e-4)
