"""The two generator stages (pdiff_jax.generator.stages: train_autoencoder,
train_diffusion) on tiny settings: the NaN guard, divergence, resuming, several steps
per dispatch, a device mesh, the principal-coordinate input and the other generator
kinds (VAE, no autoencoder, latent fits instead of diffusion)."""

import json

import chex
import jax
import numpy as np
import pytest

from pdiff_jax.generator import (
    SamplerSettings,
    TrainedGenerator,
    TrainingDivergedError,
    default_generator_config,
    load_generator,
    train_autoencoder,
    train_diffusion,
)
from pdiff_jax.runtime.checkpoint import restore_pytree


class Interrupt(Exception):
    pass


def _interrupt_at(step):
    def fn(s, r):
        if s == step and "loss" in r:
            raise Interrupt
    return fn


def test_nan_zoo_is_rejected(tmp_path, tiny_zoo, tiny_config, ae_stage):
    zoo = tiny_zoo()[0]
    zoo[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ae_stage(zoo, config=tiny_config(), workdir=tmp_path, key=jax.random.key(0))


def test_divergence_stops_with_the_step(tmp_path, tiny_zoo, tiny_config, ae_stage):
    cfg = tiny_config(ae_steps=20)  # same compiled step as the other tests
    cfg.normalization.mode = "none"
    zoo = tiny_zoo()[0] * 1e30  # finite, but the squared error overflows to inf
    with pytest.raises(TrainingDivergedError, match=r"step 1\b.*lower learning rate"):
        ae_stage(zoo, config=cfg, workdir=tmp_path, key=jax.random.key(0))
    assert isinstance(TrainingDivergedError("x"), FloatingPointError)
    assert not (tmp_path / "autoencoder").exists()


def test_resume_is_identical_to_an_uninterrupted_run(tmp_path, tiny_zoo, tiny_config, ae_stage,
                                                     diffusion_stage):
    zoo = tiny_zoo()[0]
    cfg = tiny_config(ae_steps=40, diff_steps=40, ckpt=20)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    ae_stage(zoo, config=cfg, workdir=straight, key=jax.random.key(0))
    diffusion_stage(config=cfg, workdir=straight, key=jax.random.key(1))
    with pytest.raises(Interrupt):
        ae_stage(zoo, config=cfg, workdir=resumed, key=jax.random.key(0),
                 metrics_fn=_interrupt_at(30))
    assert not (resumed / "autoencoder").exists()
    ae_stage(zoo, config=cfg, workdir=resumed, key=jax.random.key(0))
    with pytest.raises(Interrupt):
        diffusion_stage(config=cfg, workdir=resumed, key=jax.random.key(1),
                        metrics_fn=_interrupt_at(30))
    diffusion_stage(config=cfg, workdir=resumed, key=jax.random.key(1))
    for name in ("autoencoder", "diffusion"):
        a, b = restore_pytree(straight / name / "arrays"), restore_pytree(resumed / name / "arrays")
        jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.slow
def test_eight_device_mesh_matches_one_device(tmp_path, mesh_losses, mesh_losses_on_devices):
    one_ae, one_diff = mesh_losses(tmp_path / "one", None)
    mesh_ae, mesh_diff = mesh_losses_on_devices(8, tmp_path / "m", tmp_path / "one" / "ae")
    assert len(mesh_ae) == len(one_ae) == 20 and len(mesh_diff) == len(one_diff) == 20
    # Same data: the same computation up to float reassociation of sharded reductions.
    # The tolerances are 10-300x what one (AMD) CPU measured, as XLA rounds differently on
    # another; a wrong batch, key or shard changes a loss by percents.
    np.testing.assert_allclose(mesh_diff, one_diff, rtol=1e-4)  # measured: 3e-7
    # The AE's early Adam steps divide by |g|: differences of 1e-7 in near-zero
    # gradients grow with the steps. The first steps match tightly, the rest closely.
    np.testing.assert_allclose(mesh_ae[:3], one_ae[:3], rtol=1e-3)  # measured: 1.3e-5 at step 3
    np.testing.assert_allclose(mesh_ae, one_ae, rtol=0.1)  # measured: 9e-3 by step 19


@pytest.fixture(scope="module")
def projected_run(tmp_path_factory, independent_zoo, fc_config, ae_stage, diffusion_stage):
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
    K, D = zoo.shape
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
    s = gen.sample(jax.random.key(0), 3, SamplerSettings("ddim", 5))
    assert s.shape == (3, D) and np.all(np.isfinite(s))


def assert_trees_close(a, b, **tol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


@pytest.fixture(scope="module")
def generator_run(tiny_zoo, tiny_config, ae_stage, diffusion_stage):
    """``generator_run(workdir, *, k, steps=7, ckpt=10**6, metrics_fn=None)
    -> (arrays, [(stage, step, loss)])``: both generator stages with ``k`` steps per
    dispatch at a learning rate so small that the weights barely move: Adam on this tiny
    AE turns a 1e-7 relative change of the weights into a 3 % different loss within five
    steps, so rounding differences between a scan and single calls would swamp any
    comparison at a normal rate. Each step's loss still depends on its batch and noise
    key, which is what must match."""
    def run(workdir, *, k, steps=7, ckpt=10**6, metrics_fn=None):
        cfg = tiny_config(ae_steps=steps, diff_steps=steps, ckpt=ckpt)
        for section in (cfg.autoencoder.train, cfg.diffusion.train):
            section.update(steps_per_dispatch=k, log_every=1, learning_rate=1e-6)
        records = []

        def log(done, rec):
            if "loss" in rec:
                records.append((rec["stage"], done, rec["loss"]))
            if metrics_fn:
                metrics_fn(done, rec)

        ae_stage(tiny_zoo()[0], config=cfg, workdir=workdir, key=jax.random.key(0),
                 metrics_fn=log)
        diffusion_stage(config=cfg, workdir=workdir, key=jax.random.key(1), metrics_fn=log)
        arrays = [restore_pytree(workdir / name / "arrays")
                  for name in ("autoencoder", "diffusion")]
        return arrays, records

    return run


def window_means(per_step, ends):
    """Mean loss of each window ``(previous end, end]`` of 1-based step losses."""
    losses = {(stage, done): loss for stage, done, loss in per_step}
    out, last = [], {}
    for stage, end in ends:
        start = last.get(stage, 0)
        out.append(np.mean([losses[(stage, s)] for s in range(start + 1, end + 1)]))
        last[stage] = end
    return out


def test_generator_k_steps_per_dispatch_equal_single_steps(tmp_path, generator_run):
    single, single_log = generator_run(tmp_path / "k1", k=1)
    scanned, scanned_log = generator_run(tmp_path / "k3", k=3)
    ends = [(stage, done) for stage, done, _ in scanned_log]
    assert [d for _, d in ends] == [3, 6, 7, 3, 6, 7]   # chunks of 3, 3 and 1 per stage
    np.testing.assert_allclose([loss for *_, loss in scanned_log],
                               window_means(single_log, ends), rtol=1e-4)
    assert_trees_close(single, scanned, rtol=0, atol=1e-5)


def test_a_run_resumes_with_another_number_of_steps_per_dispatch(tmp_path, generator_run):
    straight, straight_log = generator_run(tmp_path / "straight", k=1)
    with pytest.raises(Interrupt):   # stopped after step 6 of the AE: its checkpoint is at 4
        generator_run(tmp_path / "resumed", k=1, ckpt=4, metrics_fn=_interrupt_at(6))
    resumed, resumed_log = generator_run(tmp_path / "resumed", k=3, ckpt=4)
    ends = [(stage, done) for stage, done, _ in resumed_log]
    # The AE resumed at 4 in one chunk of 3; the diffusion stage ran in chunks of 3, 3, 1.
    assert ends == [("autoencoder", 7), ("diffusion", 3), ("diffusion", 6), ("diffusion", 7)]
    expected = window_means(straight_log, [("autoencoder", 4), *ends])[1:]
    np.testing.assert_allclose([loss for *_, loss in resumed_log], expected, rtol=1e-4)
    assert_trees_close(straight, resumed, rtol=0, atol=1e-5)


def _trained_generators(ae_kind: str, fit_kinds):
    """A 2-step generator per latent model in ``fit_kinds``, all on one trained AE."""
    cfg = default_generator_config()
    rng = np.random.default_rng(0)
    zoo = (rng.normal(size=(1, 48)) + 0.05 * rng.normal(size=(8, 48))).astype(np.float32)
    model = dict(cfg.autoencoder.model.to_dict(), kind=ae_kind, channels=(8, 8, 8, 8))
    short = {"steps": 2, "batch_size": 8, "log_every": 1}
    ae_arrays, ae_meta = train_autoencoder(
        zoo, key=jax.random.key(0), normalization=cfg.normalization, model=model,
        train=dict(cfg.autoencoder.train.to_dict(), **short))
    for fit_kind in fit_kinds:
        diff_arrays, diff_meta = train_diffusion(
            ae_arrays["latents"], key=jax.random.key(1), process=cfg.diffusion.process,
            model=dict(cfg.diffusion.model.to_dict(), kind=fit_kind, channels=(8, 8)),
            train=dict(cfg.diffusion.train.to_dict(), **short))
        gen = TrainedGenerator(ae_arrays, ae_meta, diff_arrays, diff_meta)
        out = gen.sample(jax.random.key(2), 3, SamplerSettings(sampler="ddim", steps=4))
        chex.assert_shape(out, (3, 48))
        chex.assert_tree_all_finite(out)
        yield gen, ae_meta, diff_meta


@pytest.mark.parametrize("ae_kind", ["vae", "identity"])
def test_vae_and_identity_train_and_sample_through_the_generator_stages(ae_kind):
    for gen, ae_meta, diff_meta in _trained_generators(ae_kind, ["unet"]):
        assert diff_meta["steps"] == 2
        if ae_kind == "identity":   # latents are the normalized parameters: decode(encode) = id
            assert ae_meta["rel_recon_error"] < 1e-6
            assert ae_meta["latent_shape"] == [12, 4]
            assert gen.latent_bound == np.inf


def test_latent_fits_replace_diffusion_in_the_generator_stages():
    for gen, _, diff_meta in _trained_generators("conv", ["gaussian", "kde"]):
        assert diff_meta["steps"] == 0 and diff_meta["fit"]["K"] == 8
        z = gen.sample_latents(jax.random.key(4), 6)
        assert np.abs(z).max() <= gen.latent_bound
        np.testing.assert_array_equal(z, gen.sample_latents(jax.random.key(4), 6))
