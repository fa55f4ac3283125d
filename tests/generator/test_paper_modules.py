"""The port of the authors' generator: exact sizes, their PyTorch outputs, fast layers, training.

The golden file (tests/golden/paper_modules.npz) holds their modules' weights,
inputs and eval-mode outputs; tests/golden/make_paper_golden.py regenerates it
from a local checkout of their code.
"""

from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.generator import default_generator_config, registry
from pdiff_jax.generator import diffusion as dp
from pdiff_jax.generator.denoiser import UNet1D
from pdiff_jax.generator.paper_modules import (
    PaperAutoencoder,
    PaperDenoiser,
    PatchConv1D,
    SubPixelConvTranspose1D,
    TorchConv1D,
    ae_params_from_torch,
    convex_noise,
    denoiser_params_from_torch,
    min_paper_dim,
)
from pdiff_jax.generator.stages import plain
from pdiff_jax.generator.train import ae_train_step, diffusion_train_step, init_generator_state
from pdiff_jax.runtime.optimizer import make_optimizer


def build_autoencoder(D, cfg):
    return registry.build_autoencoder(D, **plain(cfg.autoencoder.model))


def build_denoiser(cfg):
    return registry.build_denoiser(num_timesteps=cfg.diffusion.process.num_timesteps,
                              **plain(cfg.diffusion.model))

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "paper_modules.npz"


def n_weights(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_init(model, *args):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), *args))


# -- sizes ------------------------------------------------------------------------------

@pytest.mark.parametrize("D, latent", [(2048, (3, 4)), (10_000, (16, 4)), (100_000, (160, 4))])
def test_medium_ae_has_their_weight_count_and_latent(D, latent):
    ae = PaperAutoencoder(D)
    x = jnp.zeros((2, D))
    assert n_weights(abstract_init(ae, x, False)) == 1_000_497
    recon, z = jax.eval_shape(lambda: ae.init_with_output(jax.random.key(0), x, False)[0])
    assert z.shape == (2, *latent)  # ours [B, L, C]; theirs [B, C, L]
    assert recon.shape == (2, D)


def test_small_ae_weight_count():
    assert n_weights(abstract_init(PaperAutoencoder(2048, size="small"), jnp.zeros((1, 2048)),
                                   False)) == 39_393


def test_denoiser_has_their_weight_count_at_in_dim_12():
    den = PaperDenoiser()
    assert n_weights(abstract_init(den, jnp.zeros((1, 3, 4)), jnp.zeros((1,), jnp.int32))) \
        == 2_362_273


@pytest.mark.parametrize("size, D_min", [("medium", 1250), ("small", 81)])
def test_too_small_D_is_refused_with_the_minimum(size, D_min):
    assert min_paper_dim(size) == D_min
    abstract_init(PaperAutoencoder(D_min, size=size), jnp.zeros((1, D_min)), False)  # works
    with pytest.raises(ValueError, match=f"needs D >= {D_min}"):
        abstract_init(PaperAutoencoder(D_min - 1, size=size), jnp.zeros((1, D_min - 1)), False)


# -- their PyTorch outputs ----------------------------------------------------------------

@pytest.fixture(scope="module")
def golden():
    data = np.load(GOLDEN)
    return {k: data[k] for k in data.files}


def torch_state(golden, tag: str) -> dict:
    """The f32 weights their modules ran with: q * scale, exactly as the script made them."""
    prefix = f"{tag}/q/"
    return {k[len(prefix):]: golden[k].astype(np.float32) * golden[f"{tag}/scale/{k[len(prefix):]}"]
            for k in golden if k.startswith(prefix)}


def assert_matches_theirs(forward, golden, key: str, inputs, params):
    """``forward(params, *inputs)`` against their module's output ``golden[key]``.

    Exactness: in float64 (same weights) ours equals theirs to ~1e-12. Float32:
    our error from the float64 truth is within a few times their own float32
    error (InstanceNorm over few positions makes some inputs ill-conditioned:
    both float32 runs then drift ~1e-4 from the truth, in different ways).
    """
    truth = golden[f"{key}_f64"]
    forward = jax.jit(forward)  # one compilation beats hundreds of eager ops
    with jax.enable_x64(True):
        as64 = lambda tree: jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64) if np.issubdtype(np.asarray(a).dtype,
                                                                   np.floating) else a, tree)
        ours64 = np.asarray(forward(as64(params), *as64(inputs)))
    assert ours64.dtype == np.float64
    np.testing.assert_allclose(ours64, truth, rtol=1e-9, atol=1e-9)
    ours32 = np.asarray(forward(params, *inputs))
    assert ours32.dtype == np.float32
    their_err = np.abs(golden[key] - truth).max()
    assert np.abs(ours32 - truth).max() <= max(4 * their_err, 1e-5)


@pytest.mark.parametrize("tag, size", [("ae_small", "small"), ("ae_medium", "medium")])
def test_ae_matches_their_pytorch_module(golden, tag, size):
    D = int(golden[f"{tag}/D"])
    ae = PaperAutoencoder(D, size=size)
    variables = ae_params_from_torch(torch_state(golden, tag))
    shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)
    assert shapes(variables) == shapes(abstract_init(ae, jnp.zeros((1, D)), False))
    to_ours = lambda z: z.transpose(0, 2, 1)  # their latent [B, C, L] -> ours [B, L, C]
    encode = lambda v, x: to_ours(ae.apply(v, x, method="encode"))
    decode = lambda v, z: ae.apply(v, to_ours(z), method="decode")
    x = golden[f"{tag}/x"]
    assert_matches_theirs(encode, golden, f"{tag}/latent", (x,), variables)
    assert_matches_theirs(decode, golden, f"{tag}/recon", (golden[f"{tag}/latent_f64"],),
                          variables)
    assert_matches_theirs(decode, golden, f"{tag}/decoded_rand", (golden[f"{tag}/z_rand"],),
                          variables)
    # eval-mode __call__ is encode -> clamp -> decode, their forward without noise
    assert_matches_theirs(lambda v, x: ae.apply(v, x, train=False)[0], golden, f"{tag}/recon",
                          (x,), variables)


def test_denoiser_matches_their_pytorch_module_per_sample_t(golden):
    variables = denoiser_params_from_torch(torch_state(golden, "denoiser"))
    t = golden["denoiser/t"].astype(np.int32)  # distinct per sample
    eps = lambda v, x: PaperDenoiser().apply(v, x.transpose(0, 2, 1), t).transpose(0, 2, 1)
    assert_matches_theirs(eps, golden, "denoiser/eps", (golden["denoiser/x"],), variables)


# -- fast formulations == the plain layers ------------------------------------------------

@pytest.mark.parametrize("k, s", [(5, 5), (3, 3), (5, 2), (2, 3)])
def test_subpixel_conv_transpose_equals_conv_transpose(k, s):
    x = jax.random.normal(jax.random.key(0), (2, 7, 3))
    layer = SubPixelConvTranspose1D(features=4, kernel_size=k, stride=s)
    params = layer.init(jax.random.key(1), x)
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]

    def reference(x, kernel):  # out[i*s + m] += x[i] @ kernel[m], via lax.conv_transpose
        y = jax.lax.conv_transpose(x, kernel[::-1], (s,), ((k - 1, k - 1),),
                                   dimension_numbers=("NWC", "WIO", "NWC"))
        return y + bias

    fast = lambda x, kernel: layer.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    np.testing.assert_allclose(fast(x, kernel), reference(x, kernel), atol=1e-5)
    assert fast(x, kernel).shape == (2, (7 - 1) * s + k, 4)
    loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
    g_fast = jax.grad(loss(fast), argnums=(0, 1))(x, kernel)
    g_ref = jax.grad(loss(reference), argnums=(0, 1))(x, kernel)
    chex.assert_trees_all_close(g_fast, g_ref, atol=1e-4)


@pytest.mark.parametrize("L", [15, 17])
def test_patch_conv_equals_strided_conv(L):
    x = jax.random.normal(jax.random.key(0), (2, L, 3))
    layer = PatchConv1D(features=4, kernel_size=5)
    params = layer.init(jax.random.key(1), x)
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    ref = jax.lax.conv_general_dilated(x, kernel, (5,), "VALID",
                                       dimension_numbers=("NWC", "WIO", "NWC")) + bias
    np.testing.assert_allclose(layer.apply(params, x), ref, atol=1e-5)


@pytest.mark.parametrize("k, pad", [(5, 4), (5, 5), (5, 1), (3, 1)])
def test_wide_padding_conv_equals_the_padded_lax_conv(k, pad):
    x = jax.random.normal(jax.random.key(0), (2, 9, 3))
    layer = TorchConv1D(features=4, kernel_size=k, padding=pad)
    params = layer.init(jax.random.key(1), x)

    def reference(params, x):
        p = params["params"]
        return jax.lax.conv_general_dilated(x, p["kernel"], (1,), ((pad, pad),),
                                            dimension_numbers=("NWC", "WIO", "NWC")) + p["bias"]

    np.testing.assert_allclose(layer.apply(params, x), reference(params, x), atol=1e-5)
    loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f(p, x)))
    chex.assert_trees_all_close(jax.grad(loss(layer.apply), argnums=(0, 1))(params, x),
                                jax.grad(loss(reference), argnums=(0, 1))(params, x), atol=1e-4)


# -- noise ---------------------------------------------------------------------------------

def test_convex_noise_mix():
    x = jnp.linspace(-2, 2, 12).reshape(3, 4)
    key = jax.random.key(3)
    np.testing.assert_allclose(convex_noise(x, 0.25, key),
                               0.75 * x + 0.25 * jax.random.normal(key, x.shape), atol=1e-6)


def test_training_noise_is_on_only_in_training_and_off_at_zero():
    D = 200
    x = jax.random.normal(jax.random.key(0), (4, D)) * 0.1
    ae = PaperAutoencoder(D, size="small")
    variables = ae.init(jax.random.key(1), x, False)
    run = jax.jit(lambda model, train: model.apply(variables, x, train=train,
                                                   rngs={"noise": jax.random.key(2)}),
                  static_argnums=(0, 1))
    clean, z = run(ae, False)
    noisy, _ = run(ae, True)
    assert not np.allclose(noisy, clean, atol=1e-4)
    assert np.abs(z).max() <= 1.0
    quiet = PaperAutoencoder(D, size="small", input_noise=0.0, latent_noise=0.0)
    np.testing.assert_allclose(run(quiet, True)[0], clean, atol=1e-6)


# -- through our builders and train steps --------------------------------------------------

def paper_config():
    cfg = default_generator_config()
    cfg.autoencoder.model.kind = "paper"
    cfg.autoencoder.model.size = "small"
    cfg.diffusion.model.kind = "paper"
    return cfg


def test_builders_pick_the_paper_kinds_and_old_configs_keep_theirs():
    cfg = paper_config()
    assert isinstance(build_autoencoder(300, cfg), PaperAutoencoder)
    den = build_denoiser(cfg)
    assert isinstance(den, PaperDenoiser) and den.num_timesteps == 1000
    assert isinstance(build_denoiser(default_generator_config()), UNet1D)
    with pytest.raises(ValueError, match=r"diffusion\.model\.kind must be one of"):
        registry.build_denoiser(kind="papr")
    with pytest.raises(ValueError, match="paper autoencoder size must be one of"):
        abstract_init(registry.build_autoencoder(300, kind="paper", size="large"),
                      jnp.zeros((1, 300)), False)


def test_paper_kinds_train_one_step_each():
    cfg = paper_config()
    K, D = 8, 300
    zoo = jax.random.normal(jax.random.key(0), (K, D)) * 0.05
    ae = build_autoencoder(D, cfg)
    tx = make_optimizer(optimizer="adamw", lr=1e-3, weight_decay=2e-6)
    state = init_generator_state(ae.init(jax.random.key(1), zoo[:1], False), tx, ema=False)
    before = jax.tree.map(np.array, state["params"])
    state, loss = ae_train_step(state, zoo, jax.random.key(2), model=ae, tx=tx, batch_size=K)
    assert np.isfinite(float(loss)) and int(state["step"]) == 1
    head = lambda params: params["dec_convs_3"]["kernel"]
    assert not np.allclose(head(before), head(state["params"]))

    latents = ae.apply({"params": state["params"]}, zoo, method="encode")  # [K, L, C]
    den = build_denoiser(cfg)
    sched = dp.linear_schedule(**cfg.diffusion.process)
    den_vars = den.init(jax.random.key(3), latents[:1], jnp.zeros((1,), jnp.int32))
    dstate = init_generator_state(den_vars, tx, ema=True)
    dstate, dloss = diffusion_train_step(dstate, latents, jax.random.key(4), sched, model=den,
                                         tx=tx, batch_size=K, ema_decay=0.9999)
    assert np.isfinite(float(dloss)) and int(dstate["step"]) == 1
    chex.assert_trees_all_equal_shapes(dstate["params"], dstate["ema_params"])


def test_paper_generator_trains_saves_loads_and_samples(tmp_path, ae_stage, diffusion_stage):
    """The shared stages, checkpoints and TrainedGenerator rebuild the paper kinds from disk."""
    from pdiff_jax.generator import SamplerSettings, load_generator

    cfg = paper_config()
    cfg.normalization.mode = "none"
    for stage in (cfg.autoencoder.train, cfg.diffusion.train):
        stage.update(steps=3, batch_size=8, log_every=1, checkpoint_every=2)
    ddim3 = SamplerSettings("ddim", 3)
    zoo = np.asarray(jax.random.normal(jax.random.key(0), (8, 200)) * 0.05, np.float32)
    ae_stage(zoo, config=cfg, workdir=tmp_path, key=jax.random.key(1))
    diffusion_stage(config=cfg, workdir=tmp_path, key=jax.random.key(2))
    gen = load_generator(tmp_path)
    assert isinstance(gen.ae, PaperAutoencoder) and isinstance(gen.prior.denoiser, PaperDenoiser)
    assert gen.latent_shape == (3, 2)  # small at D = 200: their [2, 3], transposed
    np.testing.assert_array_equal(gen.normalizer.std, np.ones(200, np.float32))
    a = gen.sample(jax.random.key(5), 4, ddim3)
    assert a.shape == (4, 200) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, gen.sample(jax.random.key(5), 4, ddim3))
