"""The parameter autoencoders (pdiff_jax.generator.autoencoder): the convolutional one's
geometry, latent bound and noise, the fully-connected one, and latent mixing."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from pdiff_jax.generator import TrainedGenerator, default_generator_config, train_autoencoder
from pdiff_jax.generator.autoencoder import FCAutoencoder, ParamAutoencoder, geometry
from pdiff_jax.generator.registry import build_autoencoder as build
from pdiff_jax.generator.stages import plain

ROOT = Path(__file__).resolve().parents[2]


def build_autoencoder(D, cfg):
    return build(D, **plain(cfg.autoencoder.model))


@pytest.mark.parametrize("D_", [256, 2048, 24_714, 40_785, 100_000, 1_000_000])
def test_geometry_keeps_the_length_bounded(D_):
    g = geometry(D_, fold=32, min_len=32, max_len=512)
    assert g.length % 16 == 0 and 32 <= g.length <= 512
    assert g.padded >= D_ and g.padded - D_ < g.length  # padding wastes < one column
    assert g.latent_length == g.length // 16


@pytest.mark.parametrize("norm", ["instance", "group", "batch", "none"])
def test_autoencoder_shapes_and_bounded_latent(norm):
    model = ParamAutoencoder(D=100, channels=(8, 8, 8, 8), min_len=16, max_len=32, norm=norm,
                             latent_bound=0.5)
    x = np.random.default_rng(0).normal(size=(6, 100)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    recon, z = model.apply(variables, x * 1e4, train=True, rngs={"noise": jax.random.key(1)},
                           mutable=["batch_stats"])[0]
    assert recon.shape == (6, 100) and z.shape == (6, 1, 4)
    assert np.all(np.abs(np.asarray(z)) <= 0.5)
    z_eval = model.apply(variables, x, method=ParamAutoencoder.encode)
    np.testing.assert_array_equal(z_eval, model.apply(variables, x,
                                                      method=ParamAutoencoder.encode))


def test_autoencoder_noise_is_switchable():
    x = np.ones((2, 50), np.float32)
    model = ParamAutoencoder(D=50, channels=(8, 8, 8, 8), min_len=16, max_len=16,
                             input_noise=0.0, latent_noise=0.0)
    v = model.init(jax.random.key(0), x)
    a = model.apply(v, x, train=True, rngs={"noise": jax.random.key(1)})[0]
    b = model.apply(v, x, train=True, rngs={"noise": jax.random.key(2)})[0]
    np.testing.assert_array_equal(a, b)
    noisy = model.clone(latent_noise=0.1)
    c = noisy.apply(v, x, train=True, rngs={"noise": jax.random.key(1)})[0]
    assert not np.allclose(a, c)


@pytest.mark.parametrize("norm", ["instance", "group", "batch", "none"])
def test_fc_autoencoder_shapes_and_bounded_latent(norm, fc_config):
    cfg = fc_config(norm=norm, latent_bound=0.5)
    model = build_autoencoder(100, cfg)
    assert isinstance(model, FCAutoencoder) and model.hidden == (64,)
    x = np.random.default_rng(0).normal(size=(6, 100)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    recon, z = model.apply(variables, x * 1e4, train=True, rngs={"noise": jax.random.key(1)},
                           mutable=["batch_stats"])[0]
    assert recon.shape == (6, 100) and z.shape == (6, 4, 2)
    assert np.all(np.abs(np.asarray(z)) <= 0.5)
    assert variables["params"]["head"]["kernel"].shape == (64, 100)  # per-coordinate output
    a = model.apply(variables, x, method="encode")
    np.testing.assert_array_equal(a, model.apply(variables, x, method="encode"))
    assert model.apply(variables, a, method="decode").shape == (6, 100)
    quiet = model.clone(input_noise=0.0, latent_noise=0.0)
    r1 = quiet.apply(variables, x, train=True, rngs={"noise": jax.random.key(1)},
                     mutable=["batch_stats"])[0][0]
    r2 = quiet.apply(variables, x, train=True, rngs={"noise": jax.random.key(2)},
                     mutable=["batch_stats"])[0][0]
    np.testing.assert_array_equal(r1, r2)


def test_autoencoder_kind_switch():
    cfg = default_generator_config()
    assert cfg.autoencoder.model.kind == "conv"
    assert isinstance(build_autoencoder(256, cfg), ParamAutoencoder)
    cfg.autoencoder.model.kind = "fc"
    assert isinstance(build_autoencoder(256, cfg), FCAutoencoder)
    cfg.autoencoder.model.kind = "transformer"
    with pytest.raises(ValueError, match="kind"):
        build_autoencoder(256, cfg)
    cfg.autoencoder.model.kind = "fc"
    cfg.autoencoder.model.hiden = (8,)
    with pytest.raises(ValueError, match="hiden"):
        build_autoencoder(256, cfg)


@pytest.mark.parametrize("name", ["mlp3", "convnet3"])
def test_entire_network_configs_use_the_fc_autoencoder(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    assert cfg.generator.autoencoder.model.kind == "fc"
    ae = build_autoencoder(40_785, cfg.generator)
    assert ae.latent_len * ae.latent_channels <= 128


def _train_fc(fc_config, zoo, **model):
    cfg = fc_config(latent_noise=0.0, input_noise=0.0, **model)
    cfg.normalization.update(mode="none", components=64)
    cfg.autoencoder.train.update(batch_size=16, steps=400)
    arrays, meta = train_autoencoder(zoo, key=jax.random.key(0), normalization=cfg.normalization,
                                     model=cfg.autoencoder.model, train=cfg.autoencoder.train)
    return TrainedGenerator(arrays, meta)


def test_latent_mix_makes_the_decoder_linear_between_members(fc_config, independent_zoo):
    """Trained on latent mixes, the latent midpoint of two members decodes to (nearly) the
    midpoint of their parameters; trained without, it decodes far from it."""
    zoo = independent_zoo(2)
    K = len(zoo)
    errors = {}
    for mix in (0.0, 0.5):
        gen = _train_fc(fc_config, zoo, latent_mix=mix)
        z = gen.encode(zoo)
        i, j = np.arange(K), np.roll(np.arange(K), 1)
        mid = gen.decode(0.5 * (z[i] + z[j]))
        errors[mix] = np.linalg.norm(mid - 0.5 * (zoo[i] + zoo[j])) / np.linalg.norm(
            0.5 * (zoo[i] - zoo[j]))
        own = np.linalg.norm(gen.decode(z) - zoo) / np.linalg.norm(zoo - zoo.mean(0))
        assert own < 0.5, (mix, own)   # members are still reconstructed
    assert errors[0.5] < 0.6 * errors[0.0], errors


def test_latent_mix_changes_training_only(independent_zoo):
    x = independent_zoo()[:6]
    plain, mixed = (FCAutoencoder(D=x.shape[1], hidden=(32,), latent_len=2, latent_channels=2,
                                  latent_mix=m) for m in (0.0, 0.5))
    variables = plain.init(jax.random.key(0), x)
    np.testing.assert_array_equal(plain.apply(variables, x)[0], mixed.apply(variables, x)[0])
    rngs = {"noise": jax.random.key(1)}
    out_plain = plain.apply(variables, x, train=True, rngs=rngs)[0]
    out_mixed = mixed.apply(variables, x, train=True, rngs=rngs)[0]
    assert out_mixed.shape == x.shape and not np.allclose(out_plain, out_mixed)
