"""The data set and the model a config names, checked before any work (steps 2 and 3 of
``config_check``): the data is known and prepared, the model builds for its shapes, and the
selector matches its variables. The variables come from ``jax.eval_shape``: shapes only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pdiff_jax.config.fields import closest, example, fail, flag
from pdiff_jax.errors import ConfigError
from pdiff_jax.params.subset import SubsetError


class SelectorError(ConfigError, SubsetError):
    """``zoo.selector`` matches no variable of the model (a config value and a subset error)."""


# ----------------------------------------------------------------------------- 2. data


def check_data(name: str, *, data_dir: str = "", image_size: int = 0,
               channels: int = 0) -> tuple[tuple[int, int, int], int]:
    """``(input_shape (H, W, C), num_classes)`` the loader will produce for ``data.*``.

    Raises ``ConfigError`` for an unknown name, ``DataMissingError`` for a data set
    that is not prepared (with the command that prepares it) or an ``.npz`` that does
    not exist, ``DataFormatError`` for a malformed ``.npz``. Reads no images of a TFDS
    data set; an ``.npz`` is read whole (it is small, and its checks live there).
    """
    from pdiff_jax.data import catalog, loader

    if name in catalog.DATASETS:
        spec = catalog.DATASETS[name]
        if spec.image_shape is None and not image_size:
            fail("data.image_size", f"set for {name!r} (its images differ in size)", image_size,
                  "e.g. --config.data.image_size=224")
        if name not in ("mnist", "bundled_mnist"):  # MNIST falls back to the bundled copy
            from pdiff_jax.data import tfds_source

            tfds_source.require_builder(name, tfds_source.resolve_data_dir(data_dir or None))
        h, w, c = spec.image_shape or (image_size, image_size, 3)
        num_classes = spec.num_classes
    elif loader._is_npz(name):
        if not os.path.isfile(name):
            raise catalog.DataMissingError(
                f"data.name: no such .npz file: {name}; pass an existing .npz path or a known "
                f"data set, e.g. --config.data.name=mnist")
        train, _, num_classes = loader._read_npz(name)
        h, w, c = train.x.shape[1:]
    else:
        close = closest(name, catalog.DATASETS)
        fix = f"did you mean {flag('data.name', close)}?" if close else example("data.name")
        raise ConfigError(f"data.name: unknown data set {name!r}; known: {sorted(catalog.DATASETS)}"
                          f" or an .npz path; {fix}")
    return (image_size or h, image_size or w, channels or c), num_classes


# ----------------------------------------------------------------------------- 3. model


def check_model(name: str, kwargs: Mapping, *, input_shape, num_classes: int, mode: str,
                selector, align: str = "none", recompute_batch_stats: int = 0):
    """The model's abstract variables (``jax.ShapeDtypeStruct`` leaves) after checking
    that ``name``/``kwargs`` build, ``selector`` (``zoo.selector``) matches and, for a
    seed zoo with ``align`` (``zoo.align``) other than 'none', that the architecture
    has a permutation spec and the selector takes every variable it permutes; with
    ``recompute_batch_stats`` (``evaluate.recompute_batch_stats``), that the vectors
    hold BatchNorm statistics to recompute."""
    import jax

    from pdiff_jax.models import get_model, list_models
    from pdiff_jax.params.subset import ParamSpec

    known = list_models()
    if name not in known:
        close = closest(name, known)
        hint = f"Did you mean {close!r}? {flag('model.name', close)}" if close else (
            example("model.name"))
        raise ConfigError(f"model.name: unknown model {name!r}; known models: {known}. {hint}")
    try:
        model_def = get_model(name, num_classes=num_classes, input_shape=input_shape,
                              **dict(kwargs))
        variables = jax.eval_shape(lambda: model_def.init(jax.random.key(0)))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {name!r} cannot be built for inputs {tuple(input_shape)} and "
                          f"{num_classes} classes with model.kwargs={dict(kwargs)}: "
                          f"{str(e).splitlines()[0]}; fix model.kwargs or data.image_size") from e
    # As zoo.selector_of: '' is the architecture's default subset, or everything in seed mode.
    chosen = selector or (model_def if mode == "subset" else ".*")
    try:
        spec = ParamSpec.from_variables(variables, chosen)
    except SubsetError as e:
        raise SelectorError(f"zoo.selector: {e}; e.g. --config.zoo.selector='' for the "
                            "architecture's default subset") from e
    if mode == "seed" and align != "none":   # else collect finds out after training the zoo
        _check_alignable(model_def, spec, align, selector)
    if recompute_batch_stats:
        from pdiff_jax.evaluation.batch_stats import touches_batch_stats

        if not touches_batch_stats(spec):
            fail("evaluate.recompute_batch_stats", "0 when the generated vectors hold no "
                  f"BatchNorm statistics (model {name!r}, zoo.mode={mode!r}, "
                  f"zoo.selector={selector!r})", recompute_batch_stats,
                  f"use {flag('evaluate.recompute_batch_stats', 0)}, or an entire BatchNorm "
                  "network (zoo.mode='seed', e.g. configs/size_ladder.py:cnn_bn)")
    return variables


def _check_alignable(model_def, spec, align: str, selector) -> None:
    from pdiff_jax.zoo.alignment import permutation_spec_for

    try:
        pspec = permutation_spec_for(model_def)
    except ValueError as e:
        raise ConfigError(f"zoo.align={align!r}: {str(e).splitlines()[0]}") from e
    missing = sorted(set(pspec.axes) - set(spec.names))
    if missing:
        fail("zoo.selector", f"every variable of the network for zoo.align={align!r} "
              f"(it permutes {missing[0]!r}, which the selector leaves out)", selector,
              f"use {flag('zoo.selector', '')} (the whole network in seed mode) or "
              f"{flag('zoo.align', 'none')}")
