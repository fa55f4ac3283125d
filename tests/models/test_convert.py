"""Tests for pdiff_jax.models.convert: timm / torchvision state dicts -> Flax variables.

The mapping tests without torch use state dicts synthesised from the Flax shapes.
The end-to-end tests build randomly initialised timm models (torch and timm are
test extras: they skip when those are not installed), save their weights, convert
them and compare logits. timm imports torchvision for its data utilities only; the
test-only stand-in in tests/stubs/torchvision satisfies those imports.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pdiff_jax.models.convert import (
    WeightConversionError,
    convnext_torch_name,
    infer_model_def,
    load_torch_weights,
    read_state_dict,
    resnet_torch_name,
    vit_torch_name,
)
from pdiff_jax.models.registry import get_model, variable_paths

_STUBS = str(Path(__file__).resolve().parents[1] / "stubs")


def _import_timm():
    """(torch, timm), or skip when they are not installed."""
    torch = pytest.importorskip("torch", reason="torch (test extra) is not installed")
    if "torchvision" not in sys.modules and _STUBS not in sys.path:
        sys.path.insert(0, _STUBS)  # the stand-in, not the real torchvision
    timm = pytest.importorskip("timm", reason="timm (test extra) is not installed")
    return torch, timm


# ---------------------------------------------------------------------------
# Name mapping and errors, on state dicts synthesised from the Flax shapes.


def _to_torch_layout(path: str, array: np.ndarray) -> np.ndarray:
    if path.endswith("/kernel") and array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    if path.endswith("/kernel") and array.ndim == 2:
        return array.T
    return array


@functools.cache
def _synthetic(arch: str, name_fn, **kwargs):
    """(model, flax variables as numpy, torch-style state dict) with random values."""
    model = get_model(arch, **kwargs)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    rng = np.random.default_rng(0)
    flat = {p: rng.standard_normal(s.shape).astype(np.float32)
            for p, s in zip(variable_paths(shapes), jax.tree.leaves(shapes), strict=True)}
    state = {name_fn(p): _to_torch_layout(p, a) for p, a in flat.items()}
    return model, flat, state


def _resnet18_cifar():
    return _synthetic("resnet18", resnet_torch_name, num_classes=10, input_shape=(32, 32, 3))


@pytest.mark.parametrize("arch,name_fn,kwargs", [
    ("resnet18", resnet_torch_name, dict(num_classes=10, input_shape=(32, 32, 3))),
    ("resnet50", resnet_torch_name, dict(num_classes=10, input_shape=(224, 224, 3))),
    ("vit_tiny", vit_torch_name, dict(num_classes=10, input_shape=(32, 32, 3))),
    ("convnext_atto", convnext_torch_name, dict(num_classes=10, input_shape=(32, 32, 3))),
])
def test_round_trip_of_synthetic_state_dict(arch, name_fn, kwargs):
    model, flat, state = _synthetic(arch, name_fn, **kwargs)
    variables = load_torch_weights(state, arch)  # architecture inferred from shapes
    got = dict(zip(variable_paths(variables), jax.tree.leaves(variables), strict=True))
    assert got.keys() == flat.keys()
    for path, value in flat.items():
        np.testing.assert_array_equal(got[path], value, err_msg=path)
    assert jax.tree.structure(variables) == jax.tree.structure(
        jax.eval_shape(model.init, jax.random.key(0)))


def test_torch_names():
    assert resnet_torch_name("params/layer1_0/downsample_conv/kernel") == (
        "layer1.0.downsample.0.weight")
    assert resnet_torch_name("batch_stats/layer4_1/downsample_bn/var") == (
        "layer4.1.downsample.1.running_var")
    assert resnet_torch_name("params/bn1/scale") == "bn1.weight"
    assert vit_torch_name("params/patch_embed/kernel") == "patch_embed.proj.weight"
    assert vit_torch_name("params/blocks_11/attn/qkv/bias") == "blocks.11.attn.qkv.bias"
    assert vit_torch_name("params/pos_embed") == "pos_embed"
    assert convnext_torch_name("params/stem/norm/scale") == "stem.1.weight"
    assert convnext_torch_name("params/stages_2/downsample/conv/kernel") == (
        "stages.2.downsample.1.weight")
    assert convnext_torch_name("params/stages_3/blocks_2/gamma") == "stages.3.blocks.2.gamma"
    assert convnext_torch_name("params/head/fc/kernel") == "head.fc.weight"


def test_missing_keys_are_named():
    model, _, state = _resnet18_cifar()
    state = {k: v for k, v in state.items() if k not in ("fc.bias", "layer2.0.bn1.running_mean")}
    with pytest.raises(WeightConversionError) as info:
        load_torch_weights(state, "resnet18", model)
    message = str(info.value)
    assert "2 missing keys" in message
    assert "fc.bias (for params/fc/bias" in message
    assert "layer2.0.bn1.running_mean (for batch_stats/layer2_0/bn1/mean" in message


def test_unexpected_keys_are_named_and_counters_ignored():
    model, _, state = _resnet18_cifar()
    state = {**state, "extra.weight": np.zeros(3, np.float32),
             "bn1.num_batches_tracked": np.array(7)}
    with pytest.raises(WeightConversionError, match=r"1 unexpected keys:\n  extra\.weight$"):
        load_torch_weights(state, "resnet18", model)


def test_shape_mismatches_are_named():
    _, _, state = _resnet18_cifar()  # 10 classes
    model = get_model("resnet18", num_classes=100, input_shape=(32, 32, 3))
    with pytest.raises(WeightConversionError) as info:
        load_torch_weights(state, "resnet18", model)
    message = str(info.value)
    assert "2 shape mismatches" in message
    assert "fc.weight: torch shape (10, 512) -> (512, 10), but params/fc/kernel has shape " \
           "(512, 100)" in message
    assert "fc.bias" in message
    assert "missing" not in message


def test_wrong_architecture_is_reported():
    _, _, state = _resnet18_cifar()
    with pytest.raises(WeightConversionError, match=r"lacks 'patch_embed\.proj\.weight'"):
        load_torch_weights(state, "vit_tiny")
    model = get_model("resnet50", num_classes=10, input_shape=(32, 32, 3))
    with pytest.raises(WeightConversionError, match="missing keys") as info:
        load_torch_weights(state, "resnet50", model)
    assert "layer1.0.bn3.running_mean (for batch_stats/layer1_0/bn3/mean" in str(info.value)
    assert "shape mismatches" in str(info.value)  # every ResNet-18 key exists in a ResNet-50
    with pytest.raises(ValueError, match="no weight converter for 'mlp3'"):
        load_torch_weights(state, "mlp3", model)


def test_wrapped_checkpoints_are_unwrapped(tmp_path):
    _, _, state = _resnet18_cifar()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    got = read_state_dict(wrapped)
    assert got.keys() == state.keys()
    with pytest.raises(FileNotFoundError, match="no weight file"):
        read_state_dict(tmp_path / "absent.safetensors")


def test_safetensors_file_without_torch(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model, flat, state = _synthetic("vit_tiny", vit_torch_name, num_classes=10,
                                    input_shape=(32, 32, 3))
    path = tmp_path / "vit.safetensors"
    safetensors_numpy.save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, path)
    variables = load_torch_weights(path, "vit_tiny", model)
    np.testing.assert_array_equal(variables["params"]["pos_embed"], flat["params/pos_embed"])


# ---------------------------------------------------------------------------
# End to end against timm: same random weights, same input, same logits.


def _randomise(torch, model) -> None:
    """Non-trivial values for everything: BN statistics, norm scales, layer scales, biases,
    and weights of unit gain (timm's std-0.02 init would leave the MLPs and the attention
    of a ViT too small for a wrong GELU or softmax to show in the logits)."""
    gen = torch.Generator().manual_seed(0)

    def rand(t, scale=1.0, shift=0.0):
        return shift + scale * torch.randn(t.shape, generator=gen)

    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_mean"):
                t.copy_(rand(t, 0.1))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("bias"):
                t.copy_(rand(t, 0.05))
            elif t.ndim == 1 or name.endswith("gamma"):  # norm scales, layer scales
                t.copy_(rand(t, 0.2, 1.0))
            elif name.endswith(("cls_token", "pos_embed")):
                t.copy_(rand(t, 0.5))
            else:  # conv / linear weights [out, in, ...]: unit gain
                t.copy_(rand(t, float(np.prod(t.shape[1:])) ** -0.5))


# (registry arch, timm name, timm kwargs, image size, file suffix, batch)
TIMM_CASES = [
    ("resnet18", "resnet18", {}, 224, ".safetensors", 2),
    ("resnet50", "resnet50", {}, 224, ".pth", 1),
    ("resnet18", "resnet18", {"num_classes": 10, "cifar_stem": True}, 32, ".pth", 2),
    ("vit_tiny", "vit_tiny_patch16_224", {}, 224, ".safetensors", 2),
    ("vit_base", "vit_base_patch16_224", {}, 224, ".safetensors", 1),
    ("vit_tiny", "vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4, "num_classes": 10},
     32, ".safetensors", 2),
    ("convnext_tiny", "convnext_tiny", {}, 224, ".safetensors", 1),
    ("convnext_base", "convnext_base", {}, 224, ".safetensors", 1),
    ("convnext_atto", "convnext_atto", {"patch_size": 2, "num_classes": 10}, 32, ".pth", 2),
]


@pytest.mark.parametrize("arch,timm_name,kwargs,size,suffix,batch", TIMM_CASES,
                         ids=[f"{c[1]}-{c[3]}{c[4]}" for c in TIMM_CASES])
def test_logits_match_timm(tmp_path, arch, timm_name, kwargs, size, suffix, batch):
    torch, timm = _import_timm()
    kwargs = dict(kwargs)
    cifar_stem = kwargs.pop("cifar_stem", False)
    torch.manual_seed(0)
    net = timm.create_model(timm_name, pretrained=False, **kwargs)
    if cifar_stem:  # torchvision-style ResNet with a 3x3 stride-1 stem and no max-pool
        net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
    net = net.float().eval()
    _randomise(torch, net)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    else:
        torch.save(net.state_dict(), path)

    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(images).numpy()
    del net

    variables = load_torch_weights(path, arch)
    model = infer_model_def(read_state_dict(path), arch)
    assert model.input_shape == (size, size, 3)
    logits = np.asarray(jax.jit(model.apply)(variables, images.numpy().transpose(0, 2, 3, 1)))
    assert logits.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(expected).std()) > 1e-2  # the comparison means something
    # float32 on the CPU differs by ~1e-6 of the logit scale; an exact/tanh GELU swap
    # shows as ~1e-4 (ConvNeXt) to ~1e-3 (ViT).
    np.testing.assert_allclose(logits, expected, rtol=0, atol=2e-5 * scale)


def test_explicit_model_def_and_alias():
    _, timm = _import_timm()
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                            num_classes=5).eval()
    model = get_model("vit_tiny", num_classes=5, input_shape=(32, 32, 3), patch_size=8)
    variables = load_torch_weights(net.state_dict(), "vit_tiny_patch16_224", model)
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"],
                                  net.head.weight.detach().numpy().T)
    wrong = get_model("vit_tiny", num_classes=5, input_shape=(32, 32, 3))  # patch 4
    with pytest.raises(WeightConversionError, match=r"pos_embed: torch shape \(1, 17, 192\)"):
        load_torch_weights(net.state_dict(), "vit_tiny", wrong)
