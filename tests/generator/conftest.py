"""What the generator tests share: tiny generator configs and zoos, and the two
generator stages as the pipeline runs them on a workdir.

Each fixture is a function (session-scoped: nothing is built until a test calls it).
Run as a script, this file trains both stages on a mesh of all the process's devices
and prints their losses (``mesh_losses_on_devices``; JAX fixes the device count when
it starts, so that runs in a fresh process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pdiff_jax import artifacts
from pdiff_jax.generator import default_generator_config, train_autoencoder, train_diffusion

ROOT = Path(__file__).resolve().parents[2]


def _tiny_config(ae_steps=300, diff_steps=400, ckpt=10**6):
    cfg = default_generator_config()
    cfg.autoencoder.model.update(channels=(16, 16, 16, 16), min_len=16, max_len=64)
    cfg.diffusion.process.num_timesteps = 100
    cfg.diffusion.model.update(channels=(16, 16), time_dim=16)
    for section, steps in ((cfg.autoencoder.train, ae_steps), (cfg.diffusion.train, diff_steps)):
        section.update(steps=steps, batch_size=32, log_every=10, checkpoint_every=ckpt)
    cfg.diffusion.train.learning_rate = 3e-3
    return cfg


def _fc_config(**model):
    cfg = _tiny_config(ae_steps=150, diff_steps=20)
    cfg.autoencoder.model.update(kind="fc", hidden=(64,), latent_len=4, latent_channels=2,
                                 **model)
    cfg.autoencoder.train.learning_rate = 1e-2
    return cfg


def _tiny_zoo(seed=0, K=32, D=64):
    """K structured vectors: a base point plus 2-D variation (like snapshots of one model)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=D).astype(np.float32)
    basis = rng.normal(size=(2, D)).astype(np.float32)
    coef = rng.uniform(-1, 1, size=(K, 2)).astype(np.float32)
    return base + 0.1 * coef @ basis, base, basis


def _independent_zoo(seed=0):
    """16 independent vectors of 96 coordinates with per-tensor scales (like whole networks;
    the tensors have 32, 48 and 16 coordinates)."""
    rng = np.random.default_rng(seed)
    scale = np.repeat(np.array([0.5, 2.0, 0.1], np.float32), [32, 48, 16])
    return (rng.normal(size=(16, 96)) * scale + 1.0).astype(np.float32)


def _ae_stage(zoo, *, config, workdir, key, **kw):
    path = artifacts.artifact_dir(workdir, artifacts.AUTOENCODER)
    if artifacts.exists(path):
        return
    arrays, meta = train_autoencoder(
        zoo, key=key, normalization=config.normalization, model=config.autoencoder.model,
        train=config.autoencoder.train,
        checkpoint_dir=artifacts.checkpoint_dir(workdir, "autoencoder"), **kw)
    artifacts.save_artifact(path, arrays, meta)


def _diffusion_stage(*, config, workdir, key, **kw):
    path = artifacts.artifact_dir(workdir, artifacts.DIFFUSION)
    if artifacts.exists(path):
        return
    ae, _ = artifacts.load_artifact(artifacts.artifact_dir(workdir, artifacts.AUTOENCODER),
                                    what="autoencoder", hint="train the autoencoder first")
    arrays, meta = train_diffusion(
        ae["latents"], key=key, process=config.diffusion.process, model=config.diffusion.model,
        train=config.diffusion.train,
        checkpoint_dir=artifacts.checkpoint_dir(workdir, "diffusion"), **kw)
    artifacts.save_artifact(path, arrays, meta)


def _mesh_losses(workdir, mesh, ae_source=None):
    workdir = Path(workdir)
    cfg = _tiny_config(ae_steps=20, diff_steps=20)
    for s in (cfg.autoencoder.train, cfg.diffusion.train):
        s.log_every = 1
    ae_logs, diff_logs = [], []
    _ae_stage(_tiny_zoo()[0], config=cfg, workdir=workdir / "ae", key=jax.random.key(0),
              mesh=mesh, metrics_fn=lambda s, r: ae_logs.append(r.get("loss")))
    source = Path(ae_source or workdir / "ae")
    (workdir / "diff").mkdir()
    os.symlink(source / "autoencoder", workdir / "diff" / "autoencoder")
    _diffusion_stage(config=cfg, workdir=workdir / "diff", key=jax.random.key(1), mesh=mesh,
                     metrics_fn=lambda s, r: diff_logs.append(r["loss"]))
    return [v for v in ae_logs if v is not None], diff_logs


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(ae_steps=300, diff_steps=400, ckpt=10**6)``: a generator config small
    enough to train in seconds (checkpoints every ``ckpt`` steps)."""
    return _tiny_config


@pytest.fixture(scope="session")
def fc_config():
    """``fc_config(**model)``: ``tiny_config`` with the fully-connected autoencoder."""
    return _fc_config


@pytest.fixture(scope="session")
def tiny_zoo():
    """``tiny_zoo(seed=0) -> (zoo f32[32, 64], base, basis)``: a base point plus 2-D
    variation along ``basis`` (like snapshots of one model)."""
    return _tiny_zoo


@pytest.fixture(scope="session")
def independent_zoo():
    """``independent_zoo(seed=0) -> f32[16, 96]``: independent vectors with per-tensor
    scales (segments 32, 48, 16), like a zoo of whole networks."""
    return _independent_zoo


@pytest.fixture(scope="session")
def ae_stage():
    """``ae_stage(zoo, *, config, workdir, key, **kw)``: the autoencoder stage as the
    pipeline runs it: skipped when stored, else trained (resuming from its checkpoints)
    and stored."""
    return _ae_stage


@pytest.fixture(scope="session")
def diffusion_stage():
    """``diffusion_stage(*, config, workdir, key, **kw)``: the diffusion stage as the
    pipeline runs it, on the stored autoencoder's latents."""
    return _diffusion_stage


@pytest.fixture(scope="session")
def mesh_losses():
    """``mesh_losses(workdir, mesh, ae_source=None) -> (ae_losses, diffusion_losses)``:
    the losses of 20 AE steps and 20 diffusion steps (on ``mesh`` if given). The
    diffusion stage trains on the latents of the AE in ``ae_source`` if given."""
    return _mesh_losses


@pytest.fixture(scope="session")
def mesh_losses_on_devices():
    """``mesh_losses_on_devices(n, workdir, ae_source)``: ``mesh_losses`` on a mesh of
    ``n`` virtual CPU devices, in a fresh process running this file."""
    def run(n: int, workdir, ae_source):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                   JAX_PLATFORMS="cpu",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                            os.environ.get("PYTHONPATH")])))
        # The timeout catches a hang; a loaded machine may take minutes.
        res = subprocess.run([sys.executable, __file__, str(n), str(workdir), str(ae_source)],
                             capture_output=True, text=True, env=env, timeout=1200,
                             check=False, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout.strip().splitlines()[-1])

    return run


if __name__ == "__main__":
    from pdiff_jax.runtime.sharding import make_mesh

    assert jax.device_count() == int(sys.argv[1]), jax.devices()
    print(json.dumps(_mesh_losses(sys.argv[2], make_mesh(), ae_source=sys.argv[3])))
