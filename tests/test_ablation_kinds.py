"""The ablations' generator kinds (latent Gaussian / KDE, identity AE, VAE), the
paper_vs_ours suite, and zoo sharing between suite runs."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.config.diff import with_new_defaults
from pdiff_jax.generator import (
    SamplerSettings,
    TrainedGenerator,
    default_generator_config,
    latent_fit,
    train_autoencoder,
    train_diffusion,
)
from pdiff_jax.generator import autoencoder as ae_lib
from pdiff_jax.generator.train import ae_train_step, init_generator_state
from pdiff_jax.generator.vae import kl_to_standard_normal
from pdiff_jax.runtime.optimizer import make_optimizer
from pdiff_jax.suites import catalog as suites
from pdiff_jax.suites import placement as suite_placement
from pdiff_jax.suites import runner as suite_runner
from pdiff_jax.suites import shared_zoos as suite_zoos

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- latent fits


def test_gaussian_fit_reproduces_mean_and_covariance():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6)) * 0.3
    latents = (rng.normal(size=(4000, 6)) @ A.T + np.arange(6)).reshape(4000, 3, 2)
    arrays, meta = latent_fit.fit_latents(latent_fit.GaussianFit(), latents)
    assert meta == {"K": 4000, "d": 6}
    z = latent_fit.sample_fit("gaussian", arrays, jax.random.key(1), 20000, (3, 2), clip=None)
    chex.assert_shape(z, (20000, 3, 2))
    flat = z.reshape(len(z), -1)
    np.testing.assert_allclose(flat.mean(0), latents.reshape(4000, -1).mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(flat, rowvar=False),
                               np.cov(latents.reshape(4000, -1), rowvar=False), atol=0.03)


def test_gaussian_fit_of_fewer_members_than_dimensions_is_proper():
    latents = np.random.default_rng(0).normal(size=(3, 4, 4))   # K = 3 < d = 16
    arrays, _ = latent_fit.fit_latents(latent_fit.GaussianFit(), latents)
    assert np.all(np.isfinite(arrays["chol"]))
    z = latent_fit.sample_fit("gaussian", arrays, jax.random.key(0), 5, (4, 4), clip=0.5)
    assert np.abs(z).max() <= 0.5


def test_kde_samples_sit_at_zoo_latents_within_the_bandwidth():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(10, 2, 4)).astype(np.float32)
    arrays, meta = latent_fit.fit_latents(latent_fit.KDEFit(bandwidth=1e-3), latents)
    assert meta["bandwidth_factor"] == 1e-3
    z = latent_fit.sample_fit("kde", arrays, jax.random.key(3), 50, (2, 4), clip=None)
    dist = np.linalg.norm(z.reshape(50, 1, -1) - latents.reshape(1, 10, -1), axis=-1).min(1)
    assert dist.max() < 0.02    # each sample is one member plus noise of std ~1e-3
    again = latent_fit.sample_fit("kde", arrays, jax.random.key(3), 50, (2, 4), clip=None)
    np.testing.assert_array_equal(z, again)   # a pure function of the key
    # Scott's rule when bandwidth = 0: K ** (-1 / (d + 4)).
    _, meta = latent_fit.fit_latents(latent_fit.KDEFit(), latents)
    assert meta["bandwidth_factor"] == pytest.approx(10 ** (-1 / 12))


# ----------------------------------------------------------------------------- autoencoders


def test_identity_autoencoder_round_trips_and_is_unbounded():
    ae = ae_lib.build(10, kind="identity", latent_channels=4, fold=32, hidden=(8,))
    x = jnp.arange(20.0).reshape(2, 10)
    variables = ae.init(jax.random.key(0), x)
    z = ae.apply(variables, x, method="encode")
    chex.assert_shape(z, (2, 3, 4))                     # ceil(10 / 4) = 3, zero-padded
    np.testing.assert_array_equal(z.reshape(2, -1)[:, 10:], 0.0)
    np.testing.assert_array_equal(ae.apply(variables, z, method="decode"), x)
    assert ae.latent_bound == np.inf


def test_vae_loss_adds_exactly_the_weighted_kl():
    K, D = 6, 64
    x = jnp.asarray(np.random.default_rng(0).normal(size=(K, D)), jnp.float32)
    losses = {}
    for w in (0.0, 0.5):
        ae = ae_lib.build(D, kind="vae", kl_weight=w, input_noise=0.0, channels=(8, 8, 8, 8))
        variables = ae.init({"params": jax.random.key(0)}, x[:1])
        tx = make_optimizer(optimizer="adamw", lr=1e-3, b1=0.9, b2=0.999, weight_decay=0.0)
        mu, logvar = ae.apply(variables, x, method="posterior")
        state = init_generator_state(jax.tree.map(jnp.array, variables), tx, ema=False)
        _, losses[w] = ae_train_step(state, x, jax.random.key(1), model=ae, tx=tx, batch_size=K)
    kl = jnp.mean(kl_to_standard_normal(mu, logvar))
    assert float(kl) > 0
    np.testing.assert_allclose(losses[0.5] - losses[0.0], 0.5 * kl, rtol=1e-4)
    np.testing.assert_allclose(kl_to_standard_normal(jnp.zeros(3), jnp.zeros(3)), 0.0)


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


# ----------------------------------------------------------------------------- suites


def _sweep_module():
    spec = importlib.util.spec_from_file_location("launch_sweep_kinds",
                                                  ROOT / "launch" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_new_rows_and_paper_vs_ours_are_valid_overrides_of_their_configs():
    from pdiff_jax.config.check import validate_config
    from pdiff_jax.config.defaults import get_config

    sweep = _sweep_module()
    runs = suites.ablations()
    assert runs["no_ae"] == {f"{suites.AE}.kind": "identity"}
    assert runs["ae_vae"] == {f"{suites.AE}.kind": "vae"}
    assert {runs[n][f"{suites.DENOISER}.kind"] for n in ("latent_gaussian", "latent_kde")} \
        == {"gaussian", "kde"}
    for name in ("ae_vae", "no_ae", "latent_gaussian", "latent_kde"):
        validate_config(sweep.check_overrides(get_config("smoke"), name, runs[name]))
    for spec, size in (("configs/default.py", "small"), ("configs/mlp3.py", "medium")):
        _, _, _, config = sweep.load_config(str(ROOT / spec))
        pair = suites.paper_vs_ours(arch=config.model.name, mode=config.zoo.mode)
        assert pair["ours"] == {} and pair["paper"][f"{suites.AE}.size"] == size
        paper = sweep.check_overrides(config, "paper", pair["paper"])
        assert paper.generator.autoencoder.model.kind == "paper"
        assert paper.generator.diffusion.train.learning_rate == 1e-3
        # The suite's row is configs/paper.py's generator at the base config's step counts.
        arg = "" if size == "small" else "mlp3"
        reference = sweep.load_config(str(ROOT / f"configs/paper.py:{arg}"))[3].generator
        for stage in ("autoencoder", "diffusion"):
            assert paper.generator[stage].train.steps == config.generator[stage].train.steps
            reference[stage].train.steps = config.generator[stage].train.steps
        assert paper.generator.to_dict() == reference.to_dict()


def test_set_overrides_every_run_and_is_parsed_as_literals():
    sweep = _sweep_module()
    assert sweep.parse_sets(["a.b=500", "c=kde", "d=(1, 2)"]) == {"a.b": 500, "c": "kde",
                                                                 "d": (1, 2)}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        sweep.parse_sets(["nothing"])
    cmds = dict(sweep.commands("c.py", "w", {"x": {"k": 1}, "y": {}}, common={"s": 5}))
    assert cmds["x"][-2:] == ["--config.s=5", "--config.k=1"]
    assert cmds["y"][-1] == "--config.s=5"


def test_zoo_key_reads_only_the_collect_sections():
    sections = ("seed", "zoo", "evaluate.train_examples")
    a = {"seed": 0, "zoo": {"num_models": 200}, "evaluate": {"train_examples": 10, "x": 1},
         "generator": {"kind": "conv"}}
    b = json.loads(json.dumps(a))
    b["generator"]["kind"], b["evaluate"]["x"] = "fc", 2
    assert suite_zoos.zoo_key(a, sections) == suite_zoos.zoo_key(b, sections)
    b["zoo"]["num_models"] = 50
    assert suite_zoos.zoo_key(a, sections) != suite_zoos.zoo_key(b, sections)


def test_runs_with_the_same_zoo_wait_for_it_and_start_from_a_link(tmp_path):
    """'first' collects a zoo slowly; 'second' (same key) must not start until it exists and
    must find it linked in; 'other' (another key) starts at once in the free slot."""
    script = (
        "import json, os, pathlib, sys, time\n"
        "w = pathlib.Path(sys.argv[1]); zoo = w / 'zoo'\n"
        "log = {'had_zoo': zoo.is_dir(), 'start': time.time()}\n"
        "(w / 'config.json').write_text(json.dumps({'zoo': sys.argv[2]}))\n"
        "if not zoo.is_dir():\n"
        "    time.sleep(1.0); tmp = w / '.zoo.partial'; (tmp / 'arrays').mkdir(parents=True)\n"
        "    (tmp / 'arrays' / 'data').write_text('zoo of ' + str(w)); (tmp / 'meta.json')"
        ".write_text('{}')\n"
        "    os.replace(tmp, zoo)\n"
        "(w / 'trace.json').write_text(json.dumps(log)); time.sleep(0.05)\n"
        "(w / 'results.json').write_text('{}')\n")

    def job(name, key):
        w = tmp_path / "suite" / name
        return suite_runner.Job(name, [sys.executable, "-c", script, str(w), key], w,
                                zoo_key=key)

    jobs = [job("first", "A"), job("second", "A"), job("other", "B")]
    said = []
    donors = lambda: [(json.loads((w / "config.json").read_text())["zoo"], w)
                      for w in (tmp_path / "suite").glob("*")
                      if (w / "zoo" / "meta.json").is_file()]
    outcomes = suite_runner.run_jobs(jobs, [suite_placement.Slot(), suite_placement.Slot()],
                                     say=said.append, donors=donors, poll_s=0.1)
    assert all(o["state"] == "finished" for o in outcomes.values()), outcomes
    trace = {n: json.loads((tmp_path / "suite" / n / "trace.json").read_text())
             for n in ("first", "second", "other")}
    assert not trace["first"]["had_zoo"] and not trace["other"]["had_zoo"]
    assert trace["second"]["had_zoo"]
    assert trace["other"]["start"] < trace["second"]["start"]   # did not wait behind it
    linked = tmp_path / "suite" / "second" / "zoo" / "arrays" / "data"
    first = tmp_path / "suite" / "first" / "zoo" / "arrays" / "data"
    assert linked.read_text() == f"zoo of {tmp_path / 'suite' / 'first'}"
    assert os.stat(linked).st_ino == os.stat(first).st_ino        # a hard link, not a copy
    status = suite_runner.read_status(tmp_path / "suite" / "second")
    assert status["attempts"][0]["zoo_from"] == str(tmp_path / "suite" / "first")
    assert any("zoo linked from" in m for m in said)


def test_zoo_donors_find_finished_zoos_of_any_suite(tmp_path):
    sections = ("zoo",)
    for suite, run, finished in (("s1", "a", True), ("s2", "b", True), ("s2", "c", False)):
        w = tmp_path / suite / run
        (w / "zoo" / "arrays").mkdir(parents=True)
        if finished:
            (w / "zoo" / "meta.json").write_text("{}")
        (w / "config.json").write_text(json.dumps({"zoo": {"k": run}}))
    donors = suite_zoos.zoo_donors(tmp_path, sections)
    assert [w.name for _, w in donors] == ["a", "b"]
    # Keys a newer version added are read at their defaults (config_diff.with_new_defaults).
    assert donors[0][0] == suite_zoos.zoo_key(with_new_defaults({"zoo": {"k": "a"}}), sections)
    assert donors[0][0] != donors[1][0]
