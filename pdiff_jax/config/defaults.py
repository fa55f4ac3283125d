"""The built-in default configuration: the whole p-diff method on bundled MNIST.

It shows the paper's default subset method (the last two normalization layers
of a BatchNorm network) and runs offline, end to end, in a few minutes on a
2-core CPU. ``configs/default.py`` exposes it to ``--config``; the other
configs in ``configs/`` start from it and change what differs.

Every section is the keyword arguments of one function:
  data      -> pdiff_jax.data.load_dataset
  model     -> pdiff_jax.models.get_model (name + kwargs)
  zoo       -> pdiff_jax.zoo.collect.collect_vectors (base training, subset snapshots, seeds)
  generator -> pdiff_jax.generator (normalization, autoencoder, diffusion, sampling)
  evaluate  -> the sample, evaluate and report stages (pdiff_jax.pipeline.STAGES says
               which fields each reads)
Shapes derived from the data (input shape, classes, D) are computed, never stored here.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from pdiff_jax.config.choices import NORMS
from pdiff_jax.evaluation.frontier import FrontierSettings
from pdiff_jax.zoo.settings import ZooSettings


def zoo_defaults() -> ml_collections.ConfigDict:
    """The ``zoo`` section: every field of ``zoo.settings.ZooSettings`` at its default
    (each field is documented there)."""
    return ml_collections.ConfigDict(dataclasses.asdict(ZooSettings()))


def evaluate_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        num_generated=100,
        train_examples=10000,    # training examples used to pick the best model (0 = all)
        batch_size=1000,
        models_per_call=100,     # parameter sets evaluated per compiled call
        vectorize="vmap",        # vmap | map: how a call runs its parameter sets (by measurement)
        num_baseline=100,        # draws per memorization baseline
        noise_amplitudes=(0.01, 0.05, 0.1),
        average_k=16,
        finetune_pairs=10,       # generated models whose nearest original is fine-tuned (0 = off)
        finetune_steps=50,
        # > 0: every evaluated network's BatchNorm running statistics are recomputed from
        # this many training images first (entire BatchNorm networks only; 0 = as stored,
        # as the paper evaluates them). evaluation/batch_stats.py says why.
        recompute_batch_stats=0,
        tsne=True,
        trajectories=4,
        # The accuracy-novelty frontier of every trivial generator and of p-diff
        # (evaluation/frontier.py documents each family and knob).
        frontier=dataclasses.asdict(FrontierSettings()),
    ))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The default config; ``arg='smoke'`` shrinks it to seconds (for tests)."""
    from pdiff_jax.generator import default_generator_config

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict(dict(
        name="mnist", data_dir="", image_size=0, channels=0,
        val_examples=0, max_train=0, max_test=0,
    ))
    config.model = ml_collections.ConfigDict(dict(name="cnn_bn", kwargs={}))
    config.zoo = zoo_defaults()
    config.generator = default_generator_config()
    config.evaluate = evaluate_defaults()
    if arg == "smoke":
        shrink_for_smoke(config)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use 'smoke' or nothing")
    return config


def config_module(path):
    """The module of a config file (config files are not a package, so a config that
    builds on a sibling in configs/, or a launcher that reads its ``get_sweep``, loads it
    by path)."""
    import importlib.util
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location(f"_pdiff_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_file(path, arg: str | None = None) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of a config file, e.g. a sibling in configs/ that a config
    builds on."""
    return config_module(path).get_config(arg)


def shrink_for_smoke(config: ml_collections.ConfigDict) -> None:
    """Tiny sizes so a whole run takes seconds: for tests, never for results."""
    config.data.max_train = 2000
    config.data.max_test = 500
    config.zoo.epochs = 1
    config.zoo.num_models = 16
    config.evaluate.num_generated = 8
    config.evaluate.num_baseline = 8
    config.evaluate.train_examples = 1000
    if config.evaluate.get("recompute_batch_stats", 0):   # statistics from fewer images
        config.evaluate.recompute_batch_stats = 250
    config.evaluate.finetune_pairs = 2
    config.evaluate.finetune_steps = 5
    config.generator.sampling.sampler = "ddim"
    config.generator.sampling.steps = 10
    config.evaluate.trajectories = 2
    # Two points a family (fine-tuning and mixes left out): the frontier's plumbing, fast.
    config.evaluate.frontier.update(noise=(0.03, 0.3), interpolation=(0.15, 0.5), dirichlet=(),
                                    pca_gaussian=(0.2, 1.0), finetune=(), pdiff=(0.8, 1.0))
    gen = config.generator
    gen.autoencoder.train.steps = 30
    gen.diffusion.train.steps = 30
    gen.autoencoder.train.batch_size = 16
    gen.diffusion.train.batch_size = 16


def use_entire_network_generator(config: ml_collections.ConfigDict) -> None:
    """Generator settings for seed-mode zoos (K independently trained whole networks).

    Measured on the aligned MLP-3 zoo (K = 200, D = 40,785;
    benchmarks/ENTIRE_NETWORKS.md):
    * the AE sees the zoo's principal coordinates (``normalization.components``: all
      K - 1 of them, exact for every member) instead of D numbers: its per-coordinate
      D x 256 head was the whole cost of an AE step (457 s for 1,000 steps), and a
      head in the zoo's own span is what it learned anyway;
    * latent 4 x 16 (64 numbers) and 12,000 autoencoder steps: the copies of the zoo
      keep its accuracy (reconstruction median 95.2 against 94.9 with 4 x 4 and 3,000
      steps), and on two seeds every frontier margin rose (interpolation -0.03 / -0.25
      -> +0.09 / +0.05, noise +0.5 -> +0.7, results/frontier-mnist.md); the conditional
      zoo's levels, a point apart, need the same fidelity (results/conditional-mnist.md);
      latent noise 0.05 (0.2 and 0.1 left the decoder blurring members together);
    * 12,000 diffusion steps: the p-diff median grows as samples land closer to the
      zoo's latents (accuracy and latent distance correlate at -0.86);
    * ``latent_mix`` 0.5: the decoder is trained linear between members, so latents
      between members decode to blends of aligned networks, which work (without it the
      latent midpoint of two members decoded to ~75 %; p-diff avg 91.9 -> 94.6 %).
    """
    gen = config.generator
    gen.normalization.update(mode="tensor", components=256)
    gen.autoencoder.model.update(kind="fc", hidden=(256,), latent_len=4, latent_channels=16,
                                 latent_noise=0.05, latent_mix=0.5)
    gen.autoencoder.train.update(steps=12000, learning_rate=1e-2)
    gen.diffusion.train.update(steps=12000, learning_rate=3e-3)


def use_label_term_for_batch_norm_convnets(config: ml_collections.ConfigDict) -> None:
    """The decoder also learns the task, in the form measured safe for whole BatchNorm
    convnets (results/frontier-mnist.md, session 5): the label term of configs/mlp3.py
    on 16 decoded networks x 64 of 8,192 training images a step, switched on after a
    warm-up of half the steps on reconstruction alone and raised over a tenth of them, at
    an autoencoder rate of 1e-3 from then on; decoded networks run one after another
    (a vmap over convolution weights is slow on XLA CPU). Margins over noise /
    interpolation: cnn_bn +0.41 / +0.44 on zoo seed 0 (the zoo alone: +0.29 / +0.33),
    +0.27 / +0.33 on seed 1 (+0.09 / +0.16); ConvNet-3 +0.12 / +0.16 (-0.03 / 0.00),
    and +0.07 / +0.05 (+0.02 / +0.01) with every network's statistics recomputed, as
    cnn_bn's are: short of the +0.3 goal (its decoded latent mixes of two members lie on
    the parameter-interpolation curve; weight 3 on 9,600 of the 12,000 steps: +0.14 /
    +0.11; results/frontier-mnist.md, session 8). It costs 25x the cnn_bn autoencoder's time on
    a CPU (76 s -> 1,924 s) and 16x ConvNet-3's (298 s -> 4,839 s beside another run).
    """
    config.generator.autoencoder.behaviour.update(
        weight=1.0, target="labels", mix=0.5, images=8192, members=16, images_per_step=64,
        vectorize="loop", warmup=0.5, ramp=0.1, learning_rate=1e-3)


def paper_ablations() -> dict[str, dict]:
    """The paper's ablations as runs: ``{run name: {dotted config key: value}}``.

    K in {1, 10, 50, 200, 500}; the autoencoder's input and latent noise on or
    off; its normalization layer. Configs return these from ``get_sweep`` and
    ``python launch/sweep.py CONFIG`` turns them into runs.
    """
    ae = "generator.autoencoder.model"
    runs = {f"k{k}": {"zoo.num_models": k} for k in (1, 10, 50, 200, 500)}
    for name, (inp, lat) in {"both": (1e-3, 0.1), "input_only": (1e-3, 0.0),
                             "latent_only": (0.0, 0.1), "none": (0.0, 0.0)}.items():
        runs[f"noise_{name}"] = {f"{ae}.input_noise": inp, f"{ae}.latent_noise": lat}
    for norm in NORMS:
        runs[f"norm_{norm}"] = {f"{ae}.norm": norm}
    return runs
