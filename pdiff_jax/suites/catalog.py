"""The paper's experiments as named suites of runs.

A suite is ``{run name: {dotted config key: value}}``: each run is its base
config with those overrides (the shape ``launch/sweep.py`` has always taken).
``python launch/sweep.py CONFIG --suite NAME --run`` runs every run of a suite
and aggregates their ``results.json`` (``pdiff_jax.suites.aggregate``). A config may
declare its own suites with ``get_suites(arg) -> {suite name: runs}``; names it
does not declare come from ``SUITES`` below.

Every ablation run changes ONE factor of the base config and the ``default``
run (no overrides) is the shared reference row of every factor: the base
config's K, noise, normalization, layers, autoencoder and T (paper defaults:
K = 200, input noise 1e-3 / latent noise 0.1, instance norm, last two BN
layers, 1D-CNN autoencoder, T = 1000, DDPM sampling). A factor is the set of
keys a run overrides (``factors``), so adding a row is adding one line. The
runner starts runs in suite order, so the longest rows come first.

``ablations`` holds the rows of paper Tab. 2 / Tab. 3 (K, noise, layer depth,
normalization), Tab. 5(k) (T), Tab. 14 (FC vs 1D CNN) and App. C that this code
can express, including the generator's parts: VAE + latent DDPM
(``generator/vae.py``), AE + a Gaussian or KDE in latent space instead of
diffusion (``generator/latent_fit.py``), DDPM directly on the parameters
(``generator/identity_ae.py``). ``paper_vs_ours`` runs the authors' generator
beside ours on the same zoo.

Runs whose zoo sections are equal share one zoo: the runner links a finished
zoo into the others' workdirs (``suite_zoos.link_zoo``), so the suite
collects each distinct zoo once (across suites under the same root too).

Not expressible yet:
  * equal-size layer-depth subsets: ``cnn_bn``'s BN layers differ in width
    (16, 32, 64, 64 channels), so early / middle / late subsets differ in D.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pdiff_jax.suites.paper_recipe import paper_generator_overrides

AE = "generator.autoencoder.model"
DENOISER = "generator.diffusion.model"

# Which BN layers form the subset, by depth (regexes over variable paths, fullmatched;
# see pdiff_jax.params.subset). 'late' is each architecture's default subset.
LAYER_DEPTH: dict[str, dict[str, str]] = {
    "cnn_bn": {  # bn1..bn4 have 16, 32, 64, 64 channels: D = 96, 192, 256
        "early": r"^params/(bn1|bn2)/(scale|bias)$",
        "middle": r"^params/(bn2|bn3)/(scale|bias)$",
        "late": r"^params/(bn3|bn4)/(scale|bias)$",
    },
    "resnet18": {  # bn1 + bn2 of the last block of stages 2, 3, 4: D = 512, 1024, 2048
        "early": r"^params/layer2_1/bn(1|2)/(scale|bias)$",
        "middle": r"^params/layer3_1/bn(1|2)/(scale|bias)$",
        "late": r"^params/layer4_1/bn(1|2)/(scale|bias)$",
    },
}


def ablations(*, arch: str = "cnn_bn", mode: str = "subset") -> dict[str, dict]:
    """The paper's ablations for one base config (one factor changed per run).

    Args:
      arch: the base config's model name (picks the layer-depth selectors).
      mode: the zoo mode; layer-depth rows exist only for 'subset' zoos of an
        architecture in ``LAYER_DEPTH``.
    """
    depths = LAYER_DEPTH.get(arch, {}) if mode == "subset" else {}
    runs: dict[str, dict] = {
        "default": {},                                                  # reference row
        # Layer depth (Tab. 3d): first, as they take longest (their evaluation runs the
        # convolutions after the subset for every model). 'late' is the default subset.
        **{f"layers_{d}": {"zoo.selector": depths[d]} for d in ("early", "middle")
           if d in depths},
        # Number of models K (paper Tab. 2a); the default is 200.
        "k1": {"zoo.num_models": 1},
        "k10": {"zoo.num_models": 10},
        "k50": {"zoo.num_models": 50},
        "k500": {"zoo.num_models": 500},
        # Noise augmentation of the autoencoder (Tab. 2b); the default has both.
        "noise_input_only": {f"{AE}.input_noise": 1e-3, f"{AE}.latent_noise": 0.0},
        "noise_latent_only": {f"{AE}.input_noise": 0.0, f"{AE}.latent_noise": 0.1},
        "noise_none": {f"{AE}.input_noise": 0.0, f"{AE}.latent_noise": 0.0},
        # The autoencoder's normalization layer (App. C); the default is instance.
        "norm_group": {f"{AE}.norm": "group"},
        "norm_batch": {f"{AE}.norm": "batch"},
        "norm_none": {f"{AE}.norm": "none"},
        # The generator's parts (Tab. 14, App. C): FC vs 1D-CNN autoencoder (the default
        # is the 1D CNN), a VAE, no AE (DDPM on the normalized parameters), and no
        # diffusion (a Gaussian or a KDE fitted to the AE's latents).
        "ae_fc": {f"{AE}.kind": "fc"},
        "ae_vae": {f"{AE}.kind": "vae"},
        "no_ae": {f"{AE}.kind": "identity"},
        "latent_gaussian": {f"{DENOISER}.kind": "gaussian"},
        "latent_kde": {f"{DENOISER}.kind": "kde"},
        # Diffusion steps T (Tab. 5k: 10, 100, 1000, 2000; 500 added); the default is 1000.
        "t10": {"generator.diffusion.process.num_timesteps": 10},
        "t100": {"generator.diffusion.process.num_timesteps": 100},
        "t500": {"generator.diffusion.process.num_timesteps": 500},
        "t2000": {"generator.diffusion.process.num_timesteps": 2000},
        # DDIM sampling with fewer steps than T (the default samples DDPM with T steps).
        "ddim10": {"generator.sampling.sampler": "ddim", "generator.sampling.steps": 10},
        "ddim50": {"generator.sampling.sampler": "ddim", "generator.sampling.steps": 50},
        "ddim100": {"generator.sampling.sampler": "ddim", "generator.sampling.steps": 100},
    }
    return runs


def autoencoder_kind(*, arch: str = "cnn_bn", mode: str = "subset") -> dict[str, dict]:
    """FC vs 1D-CNN autoencoder alone (paper Tab. 14), both kinds named explicitly."""
    del arch, mode  # the same two runs for every base config
    return {"ae_conv": {f"{AE}.kind": "conv"}, "ae_fc": {f"{AE}.kind": "fc"}}


def paper_vs_ours(*, arch: str = "cnn_bn", mode: str = "subset") -> dict[str, dict]:
    """The authors' generator (their networks and settings, ``paper_recipe.py``,
    as in configs/paper.py) against the base config's, on the same zoo (issue 12).

    Both runs keep the base config's step counts, so their schedules are equal (shorten
    both with ``launch/sweep.py --set``); the paper's 30k + 30k steps are
    ``configs/paper.py``. Their AE size: ``small`` for subsets (D = 256 is below the
    1,250 that ``medium`` needs), ``medium`` for entire networks.
    """
    del arch
    size = "small" if mode == "subset" else "medium"
    return {"ours": {}, "paper": paper_generator_overrides(size=size, steps=None)}


# Suites any config can run: name -> function(arch=, mode=) -> runs.
SUITES: dict[str, Callable[..., dict[str, dict]]] = {
    "ablations": ablations,
    "autoencoder_kind": autoencoder_kind,
    "paper_vs_ours": paper_vs_ours,
}


def factors(runs: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """Group runs by the keys they override: ``{factor label: [run names]}``.

    Runs that override the same set of keys sweep one factor; a run with no
    overrides (the reference) belongs to every factor. Labels are the keys'
    last components joined by '+' (e.g. 'num_models', 'input_noise+latent_noise').
    Order: first appearance in ``runs``.
    """
    reference = [name for name, o in runs.items() if not o]
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, overrides in runs.items():
        if overrides:
            groups.setdefault(tuple(sorted(overrides)), []).append(name)
    out = {}
    for keys, names in groups.items():
        label = "+".join(k.rsplit(".", 1)[-1] for k in keys)
        if label in out:  # same last components under different sections
            label = "+".join(keys)
        out[label] = reference + names
    return out


def factor_keys(runs: Mapping[str, Mapping]) -> dict[str, tuple[str, ...]]:
    """``{factor label: the dotted keys it sweeps}``, labels as in ``factors``."""
    keys_by_run = {name: tuple(sorted(o)) for name, o in runs.items() if o}
    out = {}
    for label, names in factors(runs).items():
        swept = [keys_by_run[n] for n in names if n in keys_by_run]
        out[label] = swept[0]
    return out
