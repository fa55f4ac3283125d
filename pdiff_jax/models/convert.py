"""PyTorch (timm / torchvision) state dicts -> Flax variables of the model zoo.

    variables = load_torch_weights("resnet18.safetensors", "resnet18")
    logits = get_model("resnet18", num_classes=1000,
                       input_shape=(224, 224, 3)).apply(variables, images)

The Flax modules (`models/resnet.py`, `vit.py`, `convnext.py`) use the PyTorch
names with '.' -> '/' and list indices joined by '_', so each architecture
family needs only a small name function (`resnet_torch_name`, `vit_torch_name`,
`convnext_torch_name`: Flax variable path -> state-dict key) plus the layout rules:

    conv kernel  [kh, kw, in/groups, out]  <- torch weight [out, in/groups, kh, kw]
    dense kernel [in, out]                 <- torch weight [out, in]
    LayerNorm / BatchNorm scale            <- weight
    batch_stats mean, var                  <- running_mean, running_var

The converter walks the *Flax* variables (from `jax.eval_shape` of `init`), looks
each key up, checks shapes, and reports all missing keys, unexpected keys and
shape mismatches at once (`WeightConversionError`, naming them). BatchNorm's
`num_batches_tracked` counters carry no weights and are ignored.

torch and safetensors are imported lazily: they are test extras, not core
dependencies (a `.safetensors` file needs only the safetensors package).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from pdiff_jax.models.registry import ModelDef, get_model, variable_paths

StateDict = Mapping[str, np.ndarray]

# State-dict entries that hold no weights.
_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")
# Leaf names: Flax -> torch.
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias",
               "mean": "running_mean", "var": "running_var"}
# timm model names accepted as aliases of the registry names.
ALIASES = {
    "vit_tiny_patch16_224": "vit_tiny",
    "vit_small_patch16_224": "vit_small",
    "vit_base_patch16_224": "vit_base",
}


class WeightConversionError(ValueError):
    """The state dict does not fit the Flax model; the message names the keys."""


# ---------------------------------------------------------------------------
# Reading state dicts.


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Reads a state dict as {torch key: numpy array}.

    Args:
      source: a `.safetensors` file, a `.pth` / `.pt` / `.bin` file (read with
        `torch.load(weights_only=True)`), or an in-memory mapping of tensors or
        arrays. A checkpoint holding the weights under 'state_dict' or 'model' and
        keys prefixed 'module.' (DataParallel) are unwrapped.
    """
    if isinstance(source, Mapping):
        state = source
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no weight file at {path!r}")
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file  # lazy: a test extra

            state = load_file(path)
        else:
            import torch  # lazy: a test extra

            state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        out[key] = _to_numpy(value)
    return out


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


# ---------------------------------------------------------------------------
# Flax variable path -> torch key, per architecture family.


def _generic_torch_name(path: str, renames: tuple[tuple[str, str], ...]) -> str:
    """'params/layer1_0/conv1/kernel' -> 'layer1.0.conv1.weight' (after `renames`)."""
    _, *modules, leaf = path.split("/")
    name = "/".join(modules)
    for pattern, replacement in renames:
        name = re.sub(pattern, replacement, name)
    # 'blocks_11' -> 'blocks.11', 'layer4_1' -> 'layer4.1' (index suffix of a segment).
    name = re.sub(r"_(\d+)(?=/|$)", r".\1", name).replace("/", ".")
    leaf = _LEAF_NAMES.get(leaf, leaf)
    return f"{name}.{leaf}" if name else leaf


def resnet_torch_name(path: str) -> str:
    """ResNet-18/50, torchvision and timm names (the same): 'layer1.0.downsample.0.weight'."""
    return _generic_torch_name(path, ((r"\bdownsample_conv\b", "downsample/0"),
                                      (r"\bdownsample_bn\b", "downsample/1")))


def vit_torch_name(path: str) -> str:
    """timm VisionTransformer names: 'patch_embed.proj.weight', 'blocks.0.attn.qkv.bias'."""
    return _generic_torch_name(path, ((r"^patch_embed$", "patch_embed/proj"),))


def convnext_torch_name(path: str) -> str:
    """timm ConvNeXt names: 'stem.0.weight', 'stages.1.downsample.1.weight', 'head.fc.bias'."""
    return _generic_torch_name(path, ((r"^stem/conv$", "stem/0"), (r"^stem/norm$", "stem/1"),
                                      (r"/downsample/norm$", "/downsample/0"),
                                      (r"/downsample/conv$", "/downsample/1")))


def _family(arch: str) -> str:
    for family in ("resnet", "vit", "convnext"):
        if arch.startswith(family):
            return family
    raise ValueError(f"no weight converter for {arch!r}; supported: resnet*, vit_*, convnext_*")


TORCH_NAMES: dict[str, Callable[[str], str]] = {
    "resnet": resnet_torch_name, "vit": vit_torch_name, "convnext": convnext_torch_name}


def to_flax_layout(path: str, array: np.ndarray, ndim: int | None = None) -> np.ndarray:
    """Torch layout -> Flax layout for the variable at `path` (kernels are transposed).

    `ndim` is the Flax variable's rank when known: a 1x1 conv weight
    [out, in, 1, 1] then also fills a dense kernel [in, out] (timm's `conv_mlp`).
    """
    if path.endswith("/kernel"):
        if array.ndim == 4 and ndim == 2 and array.shape[2:] == (1, 1):
            array = array[:, :, 0, 0]
        if array.ndim == 4:  # conv [out, in/groups, kh, kw] -> [kh, kw, in/groups, out]
            return array.transpose(2, 3, 1, 0)
        if array.ndim == 2:  # dense [out, in] -> [in, out]
            return array.T
    return array


# ---------------------------------------------------------------------------
# Architecture hyper-parameters read from a state dict (when no ModelDef is given).


def infer_model_def(state: StateDict, arch: str) -> ModelDef:
    """The `ModelDef` whose shapes match `state` (classes, image size, stem).

    ViT's image size follows from its position embedding; ResNet and ConvNeXt work
    at any size, so their `input_shape` is nominal: 224 with an ImageNet stem
    (ResNet 7x7, ConvNeXt patch >= 4), else 32.
    """
    arch = ALIASES.get(arch, arch)
    family = _family(arch)
    try:
        if family == "resnet":
            out, in_ch, k, _ = state["conv1.weight"].shape
            return get_model(arch, num_classes=state["fc.weight"].shape[0],
                             input_shape=(224, 224, in_ch) if k == 7 else (32, 32, in_ch),
                             stem="imagenet" if k == 7 else "cifar", width=out)
        if family == "vit":
            _, in_ch, patch, _ = state["patch_embed.proj.weight"].shape
            grid = math.isqrt(state["pos_embed"].shape[1] - 1)
            return get_model(arch, num_classes=state["head.weight"].shape[0],
                             input_shape=(grid * patch, grid * patch, in_ch), patch_size=patch)
        _, in_ch, patch, _ = state["stem.0.weight"].shape
        size = 224 if patch >= 4 else 32
        return get_model(arch, num_classes=state["head.fc.weight"].shape[0],
                         input_shape=(size, size, in_ch), stem_patch=patch,
                         downsample_stage0="stages.0.downsample.1.weight" in state)
    except KeyError as e:
        raise WeightConversionError(
            f"{arch}: state dict lacks {e.args[0]!r}, needed to infer the architecture; "
            f"its first keys: {sorted(state)[:8]}") from None


# ---------------------------------------------------------------------------
# The converter.


def convert_state_dict(state: StateDict, arch: str, model_def: ModelDef) -> dict:
    """Maps a {torch key: array} state dict onto `model_def`'s Flax variables.

    Returns:
      {'params': ..., 'batch_stats': ...} with the tree structure of
      `model_def.init`, float32 numpy leaves converted to jax arrays.

    Raises:
      WeightConversionError: naming every missing key, unexpected key and shape
        mismatch.
    """
    torch_name = TORCH_NAMES[_family(ALIASES.get(arch, arch))]
    target = jax.eval_shape(model_def.init, jax.random.key(0))
    leaves, treedef = jax.tree_util.tree_flatten(target)
    paths = variable_paths(target)
    values, missing, mismatched, used = [], [], [], set()
    for path, leaf in zip(paths, leaves, strict=True):
        key = torch_name(path)
        if key not in state:
            missing.append(f"{key} (for {path}, shape {tuple(leaf.shape)})")
            values.append(None)
            continue
        used.add(key)
        array = to_flax_layout(path, np.asarray(state[key]), len(leaf.shape))
        if array.shape != tuple(leaf.shape):
            mismatched.append(f"{key}: torch shape {tuple(state[key].shape)} -> "
                              f"{array.shape}, but {path} has shape {tuple(leaf.shape)}")
        values.append(array.astype(leaf.dtype))
    unexpected = sorted(k for k in state if k not in used and not _IGNORED.search(k))
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mismatched)):
        if items:
            shown = "\n  ".join(items[:20])
            more = f"\n  ... and {len(items) - 20} more" if len(items) > 20 else ""
            problems.append(f"{len(items)} {title}:\n  {shown}{more}")
    if problems:
        raise WeightConversionError(
            f"state dict does not fit {model_def.name} (converting as {arch}):\n"
            + "\n".join(problems))
    return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(v) for v in values])


def load_torch_weights(source: str | os.PathLike | Mapping[str, Any], arch: str,
                       model_def: ModelDef | None = None) -> dict:
    """Reads a timm / torchvision state dict and returns the Flax variables for `arch`.

    Args:
      source: `.safetensors` or `.pth`/`.pt` file, or an in-memory state dict.
      arch: registry name ('resnet18', 'resnet50', 'vit_tiny', 'vit_base',
        'convnext_tiny', 'convnext_base', ...) or a timm alias such as
        'vit_base_patch16_224'.
      model_def: the target model; by default inferred from the state dict
        (number of classes, ViT patch and image size, ResNet stem, ConvNeXt stem
        and stage-0 downsampling).

    Returns:
      {'params': ..., ['batch_stats': ...]} ready for `model_def.apply`.
    """
    state = read_state_dict(source)
    if model_def is None:
        model_def = infer_model_def(state, arch)
    return convert_state_dict(state, arch, model_def)


__all__ = [
    "ALIASES", "TORCH_NAMES", "WeightConversionError", "convert_state_dict",
    "convnext_torch_name", "infer_model_def", "load_torch_weights", "read_state_dict",
    "resnet_torch_name", "to_flax_layout", "vit_torch_name",
]
