"""The generator pieces for entire-network zoos (issue 17): the zoo's principal
coordinates as the autoencoder's input, latent diagnostics, reconstruction accuracy,
and their place in the autoencoder artifact and the report."""

import json

import jax
import numpy as np
import pytest
from test_generator import DDIM5, ae_stage, diffusion_stage, fc_config

from pdiff_jax.evaluation import report
from pdiff_jax.generator import TrainedGenerator, load_generator, train_autoencoder
from pdiff_jax.generator.autoencoder import FCAutoencoder
from pdiff_jax.generator.diagnostics import latent_diagnostics, reconstruction_accuracy
from pdiff_jax.generator.normalize import (
    denormalize,
    fit_normalizer,
    normalize,
    normalizer_from_arrays,
)

K, D = 16, 96


def independent_zoo(seed=0):
    """K independent vectors with per-tensor scales (like whole networks)."""
    rng = np.random.default_rng(seed)
    scale = np.repeat(np.array([0.5, 2.0, 0.1], np.float32), [32, 48, 16])
    return (rng.normal(size=(K, D)) * scale + 1.0).astype(np.float32)


def test_projection_round_trip_is_exact_for_the_zoo():
    x = independent_zoo()
    norm = fit_normalizer(x, [32, 48, 16], mode="tensor", components=200)
    assert norm.out_dim == K - 1          # the centred zoo spans K - 1 directions
    y = normalize(norm, x)
    assert y.shape == (K, K - 1)
    np.testing.assert_allclose(np.sqrt(np.mean(y ** 2)), 1.0, rtol=1e-4)   # unit RMS
    np.testing.assert_allclose(norm.basis @ norm.basis.T, np.eye(K - 1), atol=1e-5)
    np.testing.assert_allclose(denormalize(norm, y), x, rtol=1e-4, atol=1e-4)
    # stored and rebuilt, the map is the same
    again = normalizer_from_arrays(norm.arrays())
    np.testing.assert_array_equal(normalize(again, x), y)


def test_fewer_components_give_the_best_low_rank_approximation():
    x = independent_zoo(1)
    plain = fit_normalizer(x, mode="coordinate")
    norm = fit_normalizer(x, mode="coordinate", components=4)
    xn = normalize(plain, x)
    got = normalize(plain, denormalize(norm, normalize(norm, x)))
    # the SVD's rank-4 approximation of the centred, normalized zoo
    centred = xn - xn.mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    best = (u[:, :4] * s[:4]) @ vt[:4] + xn.mean(0)
    np.testing.assert_allclose(got, best, atol=1e-3)
    assert np.linalg.norm(got - xn) > 0.1 * np.linalg.norm(centred)   # rank 4 loses a lot


def test_without_components_the_normalizer_is_unchanged():
    x = independent_zoo()
    norm = fit_normalizer(x, mode="tensor", components=0)
    assert norm.basis is None and norm.out_dim == D
    assert set(norm.arrays()) == {"mean", "std"}


def test_latent_diagnostics_count_the_dimensions_that_vary():
    rng = np.random.default_rng(0)
    z = np.zeros((200, 2, 3), np.float32)
    z[:, 0, 0] = rng.normal(0, 0.5, 200)      # informative
    z[:, 0, 1] = rng.normal(0, 0.05, 200)     # varies, but below the latent noise
    z[:, 1, 2] = 0.3                          # constant
    out = latent_diagnostics(z, latent_noise=0.1)
    assert out["latent_dims"] == 6
    assert out["latent_dims_varying"] == 2
    assert out["latent_dims_above_noise"] == 1
    assert out["latent_std_min"] == 0.0
    assert 0.4 < out["latent_std_max"] < 0.6
    assert latent_diagnostics(z)["latent_dims_above_noise"] == 2   # no noise: same as varying


def test_reconstruction_accuracy_measures_the_decoded_zoo():
    latents = np.arange(5, dtype=np.float32)[:, None]
    decoded = []
    out = reconstruction_accuracy(lambda z: decoded.append(z) or np.repeat(z, 3, 1), latents,
                                  lambda v: v[:, 0] * 10.0)
    assert decoded[0] is latents
    assert out == {"recon_test_acc_best": 40.0, "recon_test_acc_median": 20.0,
                   "recon_test_acc_min": 0.0, "recon_test_acc_mean": 20.0}


@pytest.fixture(scope="module")
def projected_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("pca")
    zoo = independent_zoo()
    cfg = fc_config(latent_noise=0.05)
    cfg.normalization.update(mode="tensor", components=64)
    cfg.autoencoder.train.update(batch_size=16, steps=300)
    cfg.diffusion.train.batch_size = 16
    ae_stage(zoo, config=cfg, workdir=wd, key=jax.random.key(0), segments=[32, 48, 16])
    diffusion_stage(config=cfg, workdir=wd, key=jax.random.key(1))
    return wd, zoo


def test_autoencoder_on_principal_coordinates(projected_run):
    wd, zoo = projected_run
    meta = json.loads((wd / "autoencoder" / "meta.json").read_text())
    assert meta["D"] == D and meta["input_dim"] == K - 1
    assert meta["latent_dims"] == 8 and 0 <= meta["latent_dims_varying"] <= 8
    gen = load_generator(wd)
    assert gen.ae.D == K - 1 and gen.D == D
    recon = gen.decode(gen.encode(zoo))
    assert recon.shape == (K, D)
    # every member comes back nearest to itself, far closer than the zoo's spread
    d = np.linalg.norm(recon[:, None] - zoo[None], axis=-1)
    assert np.all(d.argmin(1) == np.arange(K))
    assert np.mean(np.diag(d)) < 0.5 * np.linalg.norm(zoo - zoo.mean(0), axis=1).mean()
    s = gen.sample(jax.random.key(0), 3, DDIM5)
    assert s.shape == (3, D) and np.all(np.isfinite(s))


def test_report_shows_the_autoencoder_diagnostics(tmp_path):
    ae = report.autoencoder_summary({
        "recon_test_acc_best": 95.5, "recon_test_acc_median": 94.25, "recon_test_acc_min": 90.0,
        "latent_dims": 16, "latent_dims_varying": 12, "latent_dims_above_noise": 9,
        "latent_std_max": 0.9, "latent_std_median": 0.3, "latent_std_min": 0.001,
        "input_dim": 199, "model": {"kind": "fc"}})
    assert "model" not in ae
    results = {"original": {"best": 96.0, "median": 95.0, "avg": 95.0, "n": 200},
               "pdiff": {"best": 95.0, "avg": 94.0, "median": 94.5, "n": 100},
               "autoencoder": ae}
    text = report.write_report(results, tmp_path).read_text()
    assert "## Autoencoder" in text
    assert "95.50 / 94.25 / 90.00" in text and "12 / 9 / 16" in text
    assert "zoo through the AE: best 95.50, median 94.25, min 90.00" in report.summary_text(
        results)


def _train_fc(zoo, **model):
    cfg = fc_config(latent_noise=0.0, input_noise=0.0, **model)
    cfg.normalization.update(mode="none", components=64)
    cfg.autoencoder.train.update(batch_size=16, steps=400)
    arrays, meta = train_autoencoder(zoo, key=jax.random.key(0), normalization=cfg.normalization,
                                     model=cfg.autoencoder.model, train=cfg.autoencoder.train)
    return TrainedGenerator(arrays, meta)


def test_latent_mix_makes_the_decoder_linear_between_members():
    """Trained on latent mixes, the latent midpoint of two members decodes to (nearly) the
    midpoint of their parameters; trained without, it decodes far from it."""
    zoo = independent_zoo(2)
    errors = {}
    for mix in (0.0, 0.5):
        gen = _train_fc(zoo, latent_mix=mix)
        z = gen.encode(zoo)
        i, j = np.arange(K), np.roll(np.arange(K), 1)
        mid = gen.decode(0.5 * (z[i] + z[j]))
        errors[mix] = np.linalg.norm(mid - 0.5 * (zoo[i] + zoo[j])) / np.linalg.norm(
            0.5 * (zoo[i] - zoo[j]))
        own = np.linalg.norm(gen.decode(z) - zoo) / np.linalg.norm(zoo - zoo.mean(0))
        assert own < 0.5, (mix, own)   # members are still reconstructed
    assert errors[0.5] < 0.6 * errors[0.0], errors


def test_latent_mix_changes_training_only():
    x = independent_zoo()[:6]
    plain, mixed = (FCAutoencoder(D=D, hidden=(32,), latent_len=2, latent_channels=2,
                                  latent_mix=m) for m in (0.0, 0.5))
    variables = plain.init(jax.random.key(0), x)
    np.testing.assert_array_equal(plain.apply(variables, x)[0], mixed.apply(variables, x)[0])
    rngs = {"noise": jax.random.key(1)}
    out_plain = plain.apply(variables, x, train=True, rngs=rngs)[0]
    out_mixed = mixed.apply(variables, x, train=True, rngs=rngs)[0]
    assert out_mixed.shape == x.shape and not np.allclose(out_plain, out_mixed)
