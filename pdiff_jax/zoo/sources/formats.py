"""Which format ``zoo.source`` is in, and the two calls every format answers: the check
(before any work) and the import (the collect stage, in place of training).

    plan = check_source(settings, model_def, data_name="mnist", seed=0)   # raises early
    zoo = import_zoo(settings, model_def, dataset, seed=0)               # ImportedZoo

The format follows from what the path holds: a folder with ``weights.npy`` /
``layout.csv`` / ``metrics.csv.gz`` is a Small CNN Zoo, a folder of ``.pt`` / ``.pth`` /
``.bin`` / ``.safetensors`` files holds PyTorch state dicts, a ``.npz`` file holds
stacked vectors. An imported member is a whole network: the spec is every variable of
the model, and ``zoo.align`` permutes the members as it does a seed zoo's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
from absl import logging

from pdiff_jax.config.choices import ZOO_SOURCE_FORMATS
from pdiff_jax.errors import ConfigError
from pdiff_jax.params.subset import ParamSpec, merge, unflatten_subset
from pdiff_jax.zoo.sources import small_cnn_zoo, stacked_npz, torch_state_dicts
from pdiff_jax.zoo.sources.imported import ImportedZoo, ZooSourceError

_WHAT = ("a Small CNN Zoo folder (weights.npy, layout.csv, metrics.csv.gz), a folder of "
         "PyTorch state dicts (.pt/.pth/.safetensors) or an .npz of stacked vectors")


def detect_format(source: str | Path) -> str:
    """One of ``ZOO_SOURCE_FORMATS``, from what ``source`` holds."""
    path = Path(source)
    if not path.exists():
        raise ZooSourceError(f"zoo.source: no such file or folder: {path}; pass {_WHAT}")
    if path.is_file() and path.suffix == ".npz":
        return "npz"
    if small_cnn_zoo.holds_small_cnn_zoo(path):
        return "small_cnn_zoo"
    if torch_state_dicts.holds_state_dicts(path):
        return "torch_state_dicts"
    held = (sorted(p.name for p in path.iterdir())[:8] if path.is_dir() else "a file")
    raise ZooSourceError(f"zoo.source: {path} is none of the importable formats (it holds "
                         f"{held}); pass {_WHAT}")


def whole_network_spec(model_def, selector) -> ParamSpec:
    """The run's spec for an imported zoo: ``selector`` ('' = '.*') over the model's
    variables; it must take every variable (members share no base network)."""
    variables = jax.eval_shape(model_def.init, jax.random.key(0))
    everything = ParamSpec.from_variables(variables, ".*")
    spec = ParamSpec.from_variables(variables, selector or ".*")
    if spec.names != everything.names:
        left = sorted(set(everything.names) - set(spec.names))
        raise ConfigError(f"zoo.selector must take every variable for an imported zoo (its "
                             f"networks share no base network), but leaves out {left[:3]}"
                             f"{' ...' if len(left) > 3 else ''}; use "
                             "--config.zoo.selector='.*'")
    return spec


@dataclasses.dataclass(frozen=True)
class SourcePlan:
    """What the check found: the format, the run's spec and the format's own plan."""

    format: str
    path: Path
    spec: ParamSpec
    detail: object


def check_source(settings, model_def, *, data_name: str, seed: int) -> SourcePlan:
    """Check ``settings.source`` (a ``ZooSettings``) against the model and data: every
    problem is a one-line ``ZooSourceError`` naming the file and the fix."""
    fmt = detect_format(settings.source)
    assert fmt in ZOO_SOURCE_FORMATS, fmt
    path = Path(settings.source)
    spec = whole_network_spec(model_def, settings.selector)
    if fmt == "small_cnn_zoo":
        if model_def.name != "small_cnn_zoo":
            raise ZooSourceError(f"zoo.source: {path} is a Small CNN Zoo; its networks are "
                                 f"small_cnn_zoo, not model.name={model_def.name!r}: use "
                                 "--config.model.name=small_cnn_zoo (configs/small_cnn_zoo.py)")
        detail = small_cnn_zoo.check(path, model_def=model_def, spec=spec, settings=settings,
                                     data_name=data_name, seed=seed)
    elif fmt == "torch_state_dicts":
        detail = torch_state_dicts.check(path, model_def=model_def, spec=spec,
                                         settings=settings, seed=seed)
    else:
        detail = stacked_npz.check(path, spec=spec, settings=settings, seed=seed)
    return SourcePlan(fmt, path, spec, detail)


def import_zoo(settings, model_def, dataset, *, seed: int) -> ImportedZoo:
    """The zoo ``settings.source`` holds, as the collect stage stores it: vectors
    ``f32[K, D]`` of whole networks, aligned when ``settings.align`` says, and the base
    variables (member 0's)."""
    plan = check_source(settings, model_def, data_name=dataset.name, seed=seed)
    if plan.format == "small_cnn_zoo":
        zoo = small_cnn_zoo.load(plan.path, plan.detail, spec=plan.spec, dataset=dataset,
                                 settings=settings)
    elif plan.format == "torch_state_dicts":
        zoo = torch_state_dicts.load(plan.detail, model_def=model_def, spec=plan.spec)
    else:
        zoo = stacked_npz.load(plan.path, *plan.detail, spec=plan.spec)
    logging.info("zoo.source: %d networks (%s) from %s", len(zoo.vectors), plan.format,
                 plan.path)
    if zoo.stored_test_acc is not None:   # kept beside the measured ones (JSON: NaN -> None)
        zoo.meta["stored_test_acc"] = [round(float(a), 4) if np.isfinite(a) else None
                                       for a in zoo.stored_test_acc]
    if settings.align != "none":   # as for a seed zoo: same functions, one mode
        from pdiff_jax.zoo.alignment import align_zoo

        zoo.vectors = align_zoo(zoo.vectors, plan.spec, model_def, method=settings.align)
    # Member 0 is every variable: its tree of the model's structure needs no init (compile).
    shapes = jax.eval_shape(model_def.init, jax.random.key(seed))
    zoo.base = jax.device_get(merge(shapes, unflatten_subset(np.asarray(zoo.vectors[0]),
                                                             plan.spec)))
    return zoo
