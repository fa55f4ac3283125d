"""Check a whole run config before any work, so a mistake costs seconds, not hours.

    from pdiff_jax.config.check import validate_config
    validate_config(config, workdir="runs/x")   # raises on the first problem found

Each problem is one line naming the field, the value and a fix, e.g.::

    zoo.num_models must be a positive integer, got 0; e.g. --config.zoo.num_models=200

What is checked, cheapest first:
  1. every value on its own: counts, fractions, learning rates, known choices
     (optimizer, schedule, sampler, norm, ...) and relations between values
     (ddpm runs all T steps, min_len <= max_len, ...): :class:`ConfigError`;
  2. the data: a known data set that is prepared (else the loader's
     ``DataMissingError`` with the command that prepares it) or an ``.npz``
     that exists and is well-formed (``DataFormatError``);
  3. the model name and kwargs, and that the selector matches variables of the
     model built for that data. The variables come from ``jax.eval_shape`` of
     the model's ``init``: shapes only, no compute (2 and 3: ``config_inputs``);
  3b. with ``zoo.source``, the zoo to import: its files, their fit to that model and
     data, and the rows ``zoo.source_filter`` leaves (``zoo_source``);
  4. with ``workdir``: that it can be created and written (:class:`WorkdirError`;
     ``workdir_config.check_workdir``).

Only the entry points (``main``, ``run_pipeline``) call this: library functions
take plain keyword arguments and check their own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from pdiff_jax.config.choices import (
    AUGMENTATIONS,
    AUTOENCODER_KINDS,
    BEHAVIOUR_TARGETS,
    CHANNELS,
    CONDITION_KINDS,
    CONDITION_ON,
    DIFFUSION_MODEL_KINDS,
    FRONTIER_PDIFF_KNOBS,
    LATENT_FIT_KINDS,
    NORMALIZATION_BASES,
    NORMALIZATION_MODES,
    NORMS,
    OPTIMIZERS,
    PAPER_AE_SIZES,
    PLACEMENTS,
    PRECISIONS,
    SAMPLERS,
    SCHEDULES,
    VECTORIZE,
    VECTORIZE_NETWORKS,
    ZOO_ALIGNS,
    ZOO_MODES,
    ZOO_STACKS,
)
from pdiff_jax.config.fields import (
    closest,
    defaults,
    example,
    fail,
    flag,
    get_field,
    is_int,
    is_number,
)
from pdiff_jax.config.inputs import SelectorError, check_data, check_model
from pdiff_jax.config.zoo_source import check_source_fields, check_zoo_source
from pdiff_jax.errors import ConfigError, WorkdirError

__all__ = ["ConfigError", "SelectorError", "WorkdirError",
           "validate_config"]


FOLD_MULTIPLE = 16  # the conv autoencoder halves the length 4 times (autoencoder.NUM_STAGES)

_AE, _DIFF = "generator.autoencoder", "generator.diffusion"
_COND = "generator.condition"
_TRAIN_SECTIONS = (f"{_AE}.train", f"{_DIFF}.train")

POSITIVE_INTS = (
    "zoo.batch_size", "zoo.num_models", "zoo.save_every", "zoo.subset_batch_size",
    "zoo.models_per_step", "zoo.checkpoint_every",
    f"{_AE}.model.fold", f"{_AE}.model.min_len", f"{_AE}.model.max_len",
    f"{_AE}.model.latent_channels", f"{_AE}.model.kernel_size", f"{_AE}.model.latent_len",
    *(f"{s}.{f}" for s in _TRAIN_SECTIONS
      for f in ("steps", "batch_size", "log_every", "checkpoint_every")),
    f"{_DIFF}.process.num_timesteps", f"{_DIFF}.model.time_dim", f"{_DIFF}.model.kernel_size",
    "evaluate.num_generated", "evaluate.batch_size", "evaluate.models_per_call",
    "evaluate.num_baseline", "evaluate.finetune_steps",
    f"{_AE}.behaviour.images", f"{_AE}.behaviour.members",
)
NONNEGATIVE_INTS = (
    "seed", "data.image_size", "data.val_examples", "data.max_train", "data.max_test",
    "zoo.epochs", "generator.sampling.steps", "evaluate.train_examples", "evaluate.average_k",
    "evaluate.finetune_pairs", "evaluate.trajectories", "zoo.steps_per_dispatch",
    "evaluate.recompute_batch_stats", f"{_AE}.behaviour.images_per_step",
    "generator.normalization.components",
    *(f"{s}.steps_per_dispatch" for s in _TRAIN_SECTIONS),
)
POSITIVE_NUMBERS = (
    "zoo.lr", "zoo.subset_lr", *(f"{s}.learning_rate" for s in _TRAIN_SECTIONS),
    f"{_AE}.model.latent_bound", "generator.sampling.temperature",
)
NONNEGATIVE_NUMBERS = (
    "zoo.weight_decay", "zoo.source_tolerance",
    *(f"{s}.weight_decay" for s in _TRAIN_SECTIONS),
    f"{_AE}.model.input_noise", f"{_AE}.model.latent_noise", f"{_AE}.model.latent_mix",
    f"{_AE}.model.kl_weight", f"{_DIFF}.model.bandwidth", f"{_AE}.behaviour.weight",
    f"{_AE}.behaviour.learning_rate",
    "generator.normalization.std_floor", "generator.normalization.abs_floor",
    "generator.sampling.eta", f"{_COND}.guidance_scale",
)
UNIT_INTERVAL = (  # [0, 1): momenta and decays
    "zoo.momentum", *(f"{s}.{f}" for s in _TRAIN_SECTIONS for f in ("b1", "b2", "ema_decay")),
    f"{_COND}.dropout", f"{_AE}.behaviour.mix", f"{_DIFF}.latent_mix",
    "generator.sampling.latent_mix", f"{_AE}.behaviour.warmup", f"{_AE}.behaviour.ramp",
)
POSITIVE_INT_TUPLES = (f"{_AE}.model.channels", f"{_AE}.model.hidden", f"{_DIFF}.model.channels")
CHOICES = {
    "zoo.mode": ZOO_MODES, "zoo.stack": ZOO_STACKS, "zoo.align": ZOO_ALIGNS,
    "zoo.data_placement": PLACEMENTS, "zoo.precision": PRECISIONS,
    "zoo.optimizer": OPTIMIZERS, "zoo.subset_optimizer": OPTIMIZERS,
    "zoo.schedule": SCHEDULES, "zoo.augment": AUGMENTATIONS, "data.channels": CHANNELS,
    "generator.normalization.mode": NORMALIZATION_MODES, f"{_AE}.model.kind": AUTOENCODER_KINDS,
    "generator.normalization.basis": NORMALIZATION_BASES,
    f"{_DIFF}.model.kind": DIFFUSION_MODEL_KINDS,
    f"{_AE}.model.norm": NORMS, f"{_AE}.model.size": PAPER_AE_SIZES,
    f"{_AE}.behaviour.target": BEHAVIOUR_TARGETS, f"{_AE}.behaviour.vectorize": VECTORIZE_NETWORKS,
    "generator.sampling.sampler": SAMPLERS,
    "evaluate.vectorize": VECTORIZE,
    f"{_COND}.kind": CONDITION_KINDS, f"{_COND}.on": CONDITION_ON,
}
BOOLS = ("evaluate.tsne", "generator.sampling.clip_denoised")


# ----------------------------------------------------------------------------- 1. values


def _check_values(config) -> None:
    for path in POSITIVE_INTS:
        v = get_field(config, path)
        if not (is_int(v) and v > 0):
            fail(path, "a positive integer", v)
    for path in NONNEGATIVE_INTS:
        v = get_field(config, path)
        if not (is_int(v) and v >= 0):
            fail(path, "an integer >= 0", v)
    for path in POSITIVE_NUMBERS:
        v = get_field(config, path)
        if not (is_number(v) and 0 < v < float("inf")):
            fail(path, "a positive number", v)
    for path in NONNEGATIVE_NUMBERS:
        v = get_field(config, path)
        if not (is_number(v) and 0 <= v < float("inf")):
            fail(path, "a number >= 0", v)
    for path in UNIT_INTERVAL:
        v = get_field(config, path)
        if not (is_number(v) and 0 <= v < 1):
            fail(path, "in [0, 1)", v)
    for path in POSITIVE_INT_TUPLES:
        v = get_field(config, path)
        if not (isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 0
                and all(is_int(c) and c > 0 for c in v)):
            fail(path, "a non-empty tuple of positive integers", v)
    for path, choices in CHOICES.items():
        v = get_field(config, path)
        if v not in choices or isinstance(v, bool):
            close = closest(v, choices)
            fix = f"did you mean {flag(path, close)}?" if close else example(path)
            fail(path, f"one of {', '.join(repr(c) for c in choices)}", v, fix)
    for path in BOOLS:
        v = get_field(config, path)
        if not isinstance(v, bool):
            fail(path, "True or False", v)
    _check_relations(config)


def _check_relations(config) -> None:
    """Values that are fine alone but not together, and the fields with their own shape."""
    milestones = get_field(config, "zoo.milestones")
    if not (isinstance(milestones, Sequence) and not isinstance(milestones, str)
            and all(is_number(m) and 0 < m < 1 for m in milestones)
            and list(milestones) == sorted(milestones)):
        fail("zoo.milestones", "increasing fractions of training in (0, 1)", milestones)

    selector = get_field(config, "zoo.selector")
    patterns = [selector] if isinstance(selector, str) else selector
    if not (isinstance(patterns, Sequence) and all(isinstance(p, str) for p in patterns)
            and (isinstance(selector, str) or len(patterns) > 0)):
        fail("zoo.selector", "a regex or a non-empty tuple of regexes ('' = the "
              "architecture's default subset)", selector, "e.g. --config.zoo.selector='.*bn.*'")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as e:
            fail("zoo.selector", f"valid regexes ({pattern!r}: {e})", selector,
                  "e.g. --config.zoo.selector='params/bn4/.*'")

    snapshots = get_field(config, "zoo.snapshot_epochs")
    if not (isinstance(snapshots, Sequence) and not isinstance(snapshots, str)
            and all(is_int(e) and e > 0 for e in snapshots)
            and list(snapshots) == sorted(set(snapshots))):
        fail("zoo.snapshot_epochs", "increasing positive epoch counts (or empty)", snapshots,
              "e.g. --config.zoo.snapshot_epochs='(1, 2, 4, 8)'")
    if snapshots and get_field(config, "zoo.mode") != "seed":
        fail("zoo.snapshot_epochs", "empty unless zoo.mode='seed'", snapshots,
              "use --config.zoo.mode=seed, or --config.zoo.snapshot_epochs='()'")
    align = get_field(config, "zoo.align")
    if align != "none" and get_field(config, "zoo.mode") != "seed":
        # A subset zoo's snapshots share one network's units: nothing to align.
        fail("zoo.align", "'none' unless zoo.mode='seed'", align,
             "use --config.zoo.mode=seed, or --config.zoo.align=none")

    init_from = get_field(config, "zoo.init_from")
    if not isinstance(init_from, str) or (init_from and not os.path.isfile(init_from)):
        fail("zoo.init_from", "'' or the path of an existing .safetensors/.pth file", init_from,
              "fix the path, or --config.zoo.init_from='' to start from a random init")

    ae = f"{_AE}.model"
    min_len, max_len = get_field(config, f"{ae}.min_len"), get_field(config, f"{ae}.max_len")
    for path, v in ((f"{ae}.min_len", min_len), (f"{ae}.max_len", max_len)):
        if v % FOLD_MULTIPLE:
            fail(path, f"a multiple of {FOLD_MULTIPLE}", v)
    if min_len > max_len:
        fail(f"{ae}.min_len", f"<= {ae}.max_len = {max_len}", min_len)

    warmup, ramp = (get_field(config, f"{_AE}.behaviour.{f}") for f in ("warmup", "ramp"))
    if warmup + ramp > 1:
        fail(f"{_AE}.behaviour.ramp", f"at most 1 - warmup = {1 - warmup:g} (the term must "
             "reach its weight within the autoencoder's steps)", ramp)

    start = get_field(config, f"{_DIFF}.process.beta_start")
    end = get_field(config, f"{_DIFF}.process.beta_end")
    for path, v in ((f"{_DIFF}.process.beta_start", start), (f"{_DIFF}.process.beta_end", end)):
        if not (is_number(v) and 0 < v < 1):
            fail(path, "in (0, 1)", v)
    if start > end:
        fail(f"{_DIFF}.process.beta_start", f"<= beta_end = {end}", start)

    amplitudes = get_field(config, "evaluate.noise_amplitudes")
    if not (isinstance(amplitudes, Sequence) and not isinstance(amplitudes, str)
            and all(is_number(a) and a > 0 for a in amplitudes)):
        fail("evaluate.noise_amplitudes", "a tuple of positive numbers (may be empty)",
              amplitudes)

    kwargs = get_field(config, "model.kwargs")
    if not (isinstance(kwargs, Mapping) or hasattr(kwargs, "to_dict")):  # dict or ConfigDict
        fail("model.kwargs", "a dict of keyword arguments for the model", kwargs,
              "e.g. --config.model.kwargs='{}'")
    for path in ("model.name", "data.name", "data.data_dir"):
        v = get_field(config, path)
        if not isinstance(v, str):
            fail(path, "a string", v)

    _check_sampler_steps(config)
    _check_condition(config)
    check_source_fields(config)
    _check_frontier(config)


def _check_frontier(config) -> None:
    """``evaluate.frontier``: every family's knobs in range; every group drawn equally."""
    generated, baseline = (get_field(config, f"evaluate.{k}")
                           for k in ("num_generated", "num_baseline"))
    if baseline != generated:   # like with like: "best of n" depends on n
        fail("evaluate.num_baseline", f"equal to evaluate.num_generated = {generated} (every "
             "group gets the same number of draws)", baseline,
             f"use --config.evaluate.num_baseline={generated}")
    guided = get_field(config, "evaluate.frontier.pdiff_knob") == "guidance"
    mixed = get_field(config, "evaluate.frontier.pdiff_knob") == "latent_mix"
    ranges = {"noise": ("positive numbers", lambda v: is_number(v) and v > 0),
              "interpolation": ("numbers in (0, 1]", lambda v: is_number(v) and 0 < v <= 1),
              "dirichlet": ("integers >= 2", lambda v: is_int(v) and v >= 2),
              "pca_gaussian": ("positive numbers", lambda v: is_number(v) and v > 0),
              "finetune": ("positive integers (steps)", lambda v: is_int(v) and v > 0),
              "pdiff": ("positive numbers (temperatures), numbers >= 0 (guidance scales) or "
                        "numbers in [0, 1) (latent mixes)",
                        lambda v: is_number(v) and (v > 0 or (v == 0 and (guided or mixed)))
                        and not (mixed and v >= 1))}
    for family, (what, ok) in ranges.items():
        path = f"evaluate.frontier.{family}"
        knobs = get_field(config, path)
        if not (isinstance(knobs, Sequence) and not isinstance(knobs, str)
                and all(ok(v) for v in knobs)):
            fail(path, f"a tuple of {what} (empty: leave the family out)", knobs)
    knob = get_field(config, "evaluate.frontier.pdiff_knob")
    if knob not in FRONTIER_PDIFF_KNOBS:
        fail("evaluate.frontier.pdiff_knob", f"one of {FRONTIER_PDIFF_KNOBS}", knob)
    if knob == "latent_mix" and get_field(config, f"{_COND}.kind") != "none":
        fail("evaluate.frontier.pdiff_knob", "'guidance' or 'temperature' for a conditional "
             "generator (a mix of two samples has no condition)", knob)
    if knob == "guidance" and get_field(config, f"{_COND}.kind") == "none":
        fail("evaluate.frontier.pdiff_knob", "'temperature' for an unconditional generator",
             knob, "set generator.condition (e.g. --config.generator.condition.kind=value "
             "--config.generator.condition.levels='(0, 100)') or use pdiff_knob=temperature")
    members = get_field(config, "evaluate.frontier.finetune_members")
    if not (is_int(members) and members >= 0):
        fail("evaluate.frontier.finetune_members", "an integer >= 0 (0: num_generated)", members)
    if not isinstance(get_field(config, "evaluate.frontier.enabled"), bool):
        fail("evaluate.frontier.enabled", "True or False", get_field(config,
                                                                     "evaluate.frontier.enabled"))


def _check_condition(config) -> None:
    """``generator.condition``: its keys, its range edges, a denoiser that takes it."""
    section = get_field(config, _COND)
    fields = set(section.to_dict() if hasattr(section, "to_dict") else section)
    expected = set(get_field(defaults(), _COND).to_dict())
    for key in sorted(fields - expected):
        close = closest(key, expected)
        raise ConfigError(f"{_COND} has no field {key!r}"
                          + (f"; did you mean {_COND}.{close}?" if close else "")
                          + f" (fields: {', '.join(sorted(expected))})")
    for key in sorted(expected - fields):
        raise ConfigError(f"{_COND} lacks the field {key!r}; start from "
                          "pdiff_jax.config.defaults.get_config() and override fields")
    kind, levels = section.kind, section.levels
    path = f"{_COND}.levels"
    if not (isinstance(levels, Sequence) and not isinstance(levels, str)
            and all(is_number(e) and 0 <= e <= 100 for e in levels)
            and list(levels) == sorted(set(levels))):
        fail(path, "increasing accuracy range edges in percent", levels,
              f"e.g. {flag(path, (75, 85, 90, 92, 95))} for 4 levels")
    if kind != "none" and len(levels) < 2:
        fail(path, f"at least 2 range edges for {_COND}.kind={kind!r}", levels,
              f"e.g. {flag(path, (75, 85, 90, 92, 95))} for 4 levels")
    if kind != "none" and get_field(config, f"{_DIFF}.model.kind") != "unet":
        fail(f"{_DIFF}.model.kind", f"'unet' for {_COND}.kind={kind!r} (the paper denoiser "
              "and the latent fits are unconditional)", get_field(config, f"{_DIFF}.model.kind"),
              f"use {flag(f'{_DIFF}.model.kind', 'unet')} or {flag(f'{_COND}.kind', 'none')}")
    # A mix of two members (or of two samples) has no accuracy level to condition on.
    for path, what in ((f"{_DIFF}.latent_mix", "members"),
                       ("generator.sampling.latent_mix", "samples")):
        mix = get_field(config, path)
        if mix > 0 and kind != "none":
            fail(path, f"0 for {_COND}.kind={kind!r} (a mix of two {what} has no accuracy "
                  "level to condition on)", mix,
                  f"use {flag(path, 0.0)} or {flag(f'{_COND}.kind', 'none')}")
    path = f"{_DIFF}.latent_mix"
    mix = get_field(config, path)
    if mix > 0 and get_field(config, f"{_DIFF}.model.kind") in LATENT_FIT_KINDS:
        fail(path, "0 for a latent fit (it fits the members' latents in closed form, no "
              "training batches to mix)", mix, f"use {flag(path, 0.0)}")


def _check_sampler_steps(config) -> None:
    T = get_field(config, f"{_DIFF}.process.num_timesteps")
    path, sampler = "generator.sampling.steps", get_field(config, "generator.sampling.sampler")
    steps = get_field(config, path)
    if steps == 0:  # the sampler's default
        return
    if sampler == "ddpm" and steps != T:
        fail(path, f"0 for sampler 'ddpm' (it runs all T = {T} steps)", steps,
              f"use {flag(path, 0)}, or {flag('generator.sampling.sampler', 'ddim')} for "
              f"{steps} steps")
    if sampler == "ddim" and steps > T:
        fail(path, f"at most T = {T} ({_DIFF}.process.num_timesteps) for sampler 'ddim'",
              steps, f"e.g. {flag(path, min(50, T))}")


# ----------------------------------------------------------------------------- all


def validate_config(config, *, workdir: str | os.PathLike | None = None) -> None:
    """Check ``config`` (a run config as in ``pdiff_jax.config.defaults``) before any work.

    Raises ``ConfigError`` (a usage error: the field, the value and a fix),
    ``DataMissingError`` / ``DataFormatError`` (data), ``SelectorError`` (selector
    matches nothing) or ``WorkdirError``; returns None when the run can start.
    """
    _check_values(config)
    d = config.data
    input_shape, num_classes = check_data(d.name, data_dir=d.data_dir, image_size=d.image_size,
                                          channels=d.channels)
    check_model(config.model.name, config.model.kwargs, input_shape=input_shape,
                num_classes=num_classes, mode=config.zoo.mode, selector=config.zoo.selector,
                align=config.zoo.align,
                recompute_batch_stats=config.evaluate.get("recompute_batch_stats", 0))
    # An imported zoo (zoo.source): its files, their fit to the model, the filter's rows.
    check_zoo_source(config, input_shape=input_shape, num_classes=num_classes)
    if workdir is not None:
        from pdiff_jax.config.workdir import check_workdir

        check_workdir(workdir)
