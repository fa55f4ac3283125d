"""Model registry: names -> factories that build a `ModelDef`.

Registering a classifier is one line, in the module that defines it:

    from pdiff_jax.models.registry import ModelDef, register

    def vit_tiny(*, num_classes, input_shape, **kwargs) -> ModelDef: ...
    register("vit_tiny", vit_tiny)        # or decorate: @register("vit_tiny")

A factory takes keyword arguments `num_classes`, `input_shape` (H, W, C) and any
model-specific options, and returns a `ModelDef`. The modules `mlp`, `convnet`,
`resnet`, `vit`, `convnext` and `small_cnn_zoo` of this package (those that exist) are
imported on the first `get_model` / `list_models` call, so their `register` calls run
then.

Split points. A module built on `layers.Staged` can be cut at named points:
`apply(v, x, stop=p)` returns the activation (a pytree) entering point p and
`apply(v, h, start=p)` continues from it to the logits. `split_point_for(paths)`
picks the latest point after which every given variable is used, so a zoo that
trains only those variables computes the frozen head once. Modules that are not
`Staged` have no split points (`split_points == ()`) and are run whole.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pdiff_jax.models.layers import record_splits
from pdiff_jax.params.subset import variable_paths

Factory = Callable[..., "ModelDef"]

_FACTORIES: dict[str, Factory] = {}
# Modules of this package whose import registers models (missing ones are skipped).
_BUILTIN_MODULES = ("mlp", "convnet", "resnet", "vit", "convnext", "small_cnn_zoo")
_builtins_loaded = False


@dataclasses.dataclass(frozen=True)
class _Trace:
    split_points: tuple[str, ...]
    paths: tuple[str, ...]                # every variable path of the model
    first_stage: dict[str, int]           # module path -> index of the stage first calling it


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """A classifier: Linen module plus what the pipeline needs to know about it.

    Attributes:
      name: registry name.
      module: Linen module, called as `module(x, train=..., start=..., stop=...)`.
      input_shape: (H, W, C) of one image; inputs are f32[B, H, W, C].
      num_classes: width of the logits f32[B, num_classes].
      default_subset: regexes over '/'-joined variable paths (collection first,
        e.g. r'^params/layer4_1/bn2/(scale|bias)$') selecting the part of the
        network the generator learns by default.
    """

    name: str
    module: nn.Module
    input_shape: tuple[int, int, int]
    num_classes: int
    default_subset: tuple[str, ...] = ()
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def init(self, key: jax.Array) -> dict:
        """Fresh variables {'params': ..., 'batch_stats': ...} (no 'batch_stats' without BN)."""
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        return dict(self.module.init(key, x, train=False))

    def apply(self, variables: dict, x: Any, *, train: bool = False,
              start: str | None = None, stop: str | None = None) -> Any:
        """Runs the network (or the part between split points `start` and `stop`).

        Args:
          variables: {'params': ..., 'batch_stats': ...}.
          x: f32[B, H, W, C] images, or the carry returned by `apply(..., stop=start)`.
          train: BatchNorm uses batch statistics and updates its running averages.
          start: split point to start from (x is then the carry entering it).
          stop: split point to stop at; returns the carry entering it.

        Returns:
          eval: logits f32[B, num_classes] (or the carry at `stop`).
          train: (logits, updates), where updates is the Linen mutable output
          {'batch_stats': ...} ({} without BatchNorm); merge it with
          `{**variables, **updates}`.
        """
        for point in (start, stop):
            if point is not None and point not in self.split_points:
                raise ValueError(f"{self.name}: unknown split point {point!r}; "
                                 f"split points: {list(self.split_points)}")
        kwargs = {}
        if start is not None:
            kwargs["start"] = start
        if stop is not None:
            kwargs["stop"] = stop
        if train:
            return self.module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
        return self.module.apply(variables, x, train=False, **kwargs)

    @property
    def split_points(self) -> tuple[str, ...]:
        """Ordered names of the points where the network can be cut (first = the input)."""
        return self._trace().split_points

    def split_point_for(self, paths: Sequence[str]) -> str | None:
        """The latest split point such that every variable in `paths` is used after it.

        `paths` are '/'-joined variable paths ('params/layer4_1/bn1/scale'). Returns
        None when no point past the network input qualifies (or `paths` is empty):
        then the whole network has to run.
        """
        trace = self._trace()
        paths = list(paths)
        unknown = sorted(set(paths) - set(trace.paths))
        if unknown:
            raise ValueError(f"{self.name}: unknown variable paths {unknown[:5]}")
        if not paths or not trace.split_points:
            return None
        first = min(self._first_stage(trace, p) for p in paths)
        return trace.split_points[first] if first > 0 else None

    @staticmethod
    def _first_stage(trace: _Trace, path: str) -> int:
        # Variable 'coll/a/b/leaf' belongs to module 'a/b'; fall back to the longest
        # calling ancestor for variables a module creates without being called.
        parts = path.split("/")[1:-1]
        for n in range(len(parts), -1, -1):
            module_path = "/".join(parts[:n])
            if module_path in trace.first_stage:
                return trace.first_stage[module_path]
        return -1

    def _trace(self) -> _Trace:
        """Traces `init` once (abstractly) to list split points and module first uses."""
        if "trace" not in self._cache:
            events: list[tuple[str, str]] = []

            def interceptor(next_fun, args, kwargs, context):
                events.append(("call", "/".join(context.module.path)))
                return next_fun(*args, **kwargs)

            x = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
            # A fresh lambda each time: a cached trace would skip the Python calls.
            with record_splits(events), nn.intercept_methods(interceptor):
                shapes = jax.eval_shape(
                    lambda x: self.module.init(jax.random.key(0), x, train=False), x)
            points: list[str] = []
            first_stage: dict[str, int] = {}
            for kind, name in events:
                if kind == "split":
                    points.append(name)
                else:
                    first_stage.setdefault(name, len(points) - 1)
            self._cache["trace"] = _Trace(tuple(points), tuple(variable_paths(shapes)),
                                          first_stage)
        return self._cache["trace"]


def register(name: str, factory: Factory | None = None):
    """Registers `factory` under `name`; without `factory`, returns a decorator.

    `factory(num_classes=..., input_shape=..., **kwargs) -> ModelDef`. Registering
    a different factory under a taken name raises ValueError (re-running the same
    definition, e.g. on module reload, is allowed).
    """
    if factory is None:
        def decorator(f: Factory) -> Factory:
            register(name, f)
            return f
        return decorator
    old = _FACTORIES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (
            factory.__module__, factory.__qualname__):
        raise ValueError(f"model {name!r} is already registered by {old.__module__}")
    _FACTORIES[name] = factory
    return factory


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    for mod in _BUILTIN_MODULES:
        full = f"{__package__}.{mod}"
        if importlib.util.find_spec(full) is not None:
            importlib.import_module(full)
    _builtins_loaded = True


def list_models() -> list[str]:
    """Sorted names of the registered models."""
    _load_builtins()
    return sorted(_FACTORIES)


def get_model(name: str, *, num_classes: int, input_shape: tuple[int, int, int],
              **kwargs) -> ModelDef:
    """Builds the registered model `name` for `num_classes` classes and (H, W, C) images."""
    known = list_models()
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}; known models: {known}.{hint}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C), got {input_shape}")
    model = _FACTORIES[name](num_classes=num_classes, input_shape=input_shape, **kwargs)
    if not isinstance(model, ModelDef):
        raise TypeError(f"factory for {name!r} returned {type(model).__name__}, not ModelDef")
    return model if model.name == name else dataclasses.replace(model, name=name)
