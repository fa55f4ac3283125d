"""Many small networks trained at once: the seed zoo's stacked trainer.

A seed zoo of K ConvNet-3s trained one at a time runs ~5 steps/s here: each
step is small, and XLA CPU runs a 2-D convolution on one core. Two ways of
putting G networks into one compiled step live here:

* ``unrolled`` (the one to use, any architecture): one jitted step holding G
  independent copies of the per-network training step (stacked variables
  f32[G, ...], no vmap), its network axis split over the devices of a mesh
  with ``shard_map``. With ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
  each CPU core can train half of the networks (XLA keeps a 2-D convolution on
  one core). Measured on a shared machine: 1.10x the loop on one device, 1.15x
  on two (benchmarks/ALIGNMENT_AND_SEED_ZOO.md); ``vmap`` was 0.2-0.3x.
* ``grouped`` (ConvNet-3 only, kept as a measured dead end): the G networks
  side by side along the channel axis, every convolution ONE
  ``feature_group_count=G`` convolution, BatchNorm per channel (so per network),
  the classifier one batched matmul. Exact, but XLA CPU runs the grouped
  convolution's backward pass far slower than G plain ones
  (benchmarks/bench_seed_zoo_grouped.py: 0.08x the loop at G = 8).

Either way the loss is the sum of the G networks' mean losses, so each
network's gradient is its own, and SGD/Adam act elementwise: training the group
is training G independent networks, each from its own seed
(``model_def.init(jax.random.key(seed))``) and on its own data order (the
batches ``data.iterate_batches(..., seed=seed, epoch=e)`` gives it), exactly as
``training.train_classifier`` trains one.

Grouped layout (G networks, width C): conv*/kernel f32[3, 3, C_in, G*C],
conv*/bias, bn*/* f32[G*C] with network g in block g of the last axis;
fc/kernel f32[G, F, classes], fc/bias f32[G, classes].
:func:`group_variables` / :func:`ungroup_variables` convert from / to ConvNet-3's.
"""


from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from pdiff_jax.data.batches import epoch_batches
from pdiff_jax.models.layers import BN_EPSILON, BN_MOMENTUM, max_pool2
from pdiff_jax.runtime import sharding
from pdiff_jax.runtime.optimizer import make_optimizer
from pdiff_jax.runtime.train_loop import resumable_loop
from pdiff_jax.zoo import training

__all__ = [
    "GroupedConvNet3",
    "group_variables",
    "grouped_model",
    "train_networks_stacked",
    "ungroup_variables",
]

_NUM_CONVS = 3


class _GroupedDense(nn.Module):
    """f32[G, B, F] -> f32[G, B, features], one weight matrix per network."""

    num_networks: int
    features: int

    @nn.compact
    def __call__(self, h):
        kernel = self.param("kernel", nn.initializers.lecun_normal(batch_axis=(0,)),
                            (self.num_networks, h.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.num_networks, self.features))
        return jnp.einsum("gbf,gfo->gbo", h, kernel) + bias[:, None, :]


class GroupedConvNet3(nn.Module):
    """G ConvNet-3s: f32[B, H, W, G*C_in] (network g in channel block g) -> f32[G, B, classes]."""

    num_networks: int
    num_classes: int
    width: int = 32

    @nn.compact
    def __call__(self, x, train: bool = False):
        g, c = self.num_networks, self.width
        for i in range(1, _NUM_CONVS + 1):
            x = nn.Conv(g * c, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=g,
                        name=f"conv{i}")(x)
            x = nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"bn{i}")(
                x, use_running_average=not train)
            x = max_pool2(nn.relu(x))
        b, h, w, _ = x.shape
        # Each network's activations flattened in its own NHWC order, as ConvNet-3 does.
        x = x.reshape(b, h, w, g, c).transpose(3, 0, 1, 2, 4).reshape(g, b, h * w * c)
        return _GroupedDense(g, self.num_classes, name="fc")(x)


def grouped_model(model_def, num_networks: int) -> GroupedConvNet3:
    """The grouped twin of a ConvNet-3 ``ModelDef``."""
    if model_def.name != "convnet3":
        raise ValueError(f"the grouped trainer implements ConvNet-3 only, not "
                         f"{model_def.name!r}; use the 'unrolled' formulation")
    return GroupedConvNet3(num_networks=num_networks, num_classes=model_def.num_classes,
                           width=model_def.module.width)


def stack_images(x: jax.Array) -> jax.Array:
    """f32[G, B, H, W, C] (one batch per network) -> f32[B, H, W, G*C]."""
    g, b, h, w, c = x.shape
    return x.transpose(1, 2, 3, 0, 4).reshape(b, h, w, g * c)


def _is_per_network_leading(path: str) -> bool:
    return path.split("/")[1] == "fc"


def _leaf_paths(tree) -> list[str]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(str(k.key) for k in path) for path, _ in flat]


def group_variables(members: Sequence[dict]) -> dict:
    """G per-network ConvNet-3 variables -> the grouped variables (layout above)."""
    paths = _leaf_paths(members[0])
    leaves = [jax.tree.leaves(m) for m in members]
    grouped = [jnp.stack(col) if _is_per_network_leading(p) else jnp.concatenate(col, axis=-1)
               for p, *col in zip(paths, *leaves, strict=True)]
    return jax.tree.unflatten(jax.tree.structure(members[0]), grouped)


def ungroup_variables(grouped: dict, num_networks: int) -> list[dict]:
    """The grouped variables -> G per-network ConvNet-3 variables (host arrays)."""
    grouped = sharding.to_host(grouped)
    paths = _leaf_paths(grouped)
    leaves = jax.tree.leaves(grouped)
    treedef = jax.tree.structure(grouped)
    out = []
    for g in range(num_networks):
        mine = []
        for path, leaf in zip(paths, leaves, strict=True):
            if _is_per_network_leading(path):
                mine.append(np.asarray(leaf[g]))
            else:
                n = leaf.shape[-1] // num_networks
                mine.append(np.asarray(leaf[..., g * n:(g + 1) * n]))
        out.append(jax.tree.unflatten(treedef, mine))
    return out


def grouped_train_step(state: training.TrainState, x: jax.Array, y: jax.Array, *,
                       module: GroupedConvNet3, tx: optax.GradientTransformation):
    """One step of every network: x f32[G, B, H, W, C], y i32[G, B] -> (state, loss f32[G])."""

    def loss_fn(params):
        logits, updates = module.apply({"params": params, "batch_stats": state.batch_stats},
                                       stack_images(x), train=True, mutable=["batch_stats"])
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(axis=1)
        # Summed: each network's gradient is the gradient of its own mean loss.
        return losses.sum(), (losses, updates["batch_stats"])

    (_, (losses, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return training.TrainState(params, stats, opt_state, state.step + 1), losses


@functools.cache
def compiled_grouped_step(module, tx):
    return jax.jit(functools.partial(grouped_train_step, module=module, tx=tx),
                   donate_argnums=0)


def unrolled_train_step(states: training.TrainState, x: jax.Array, y: jax.Array, *, model_def,
                        tx: optax.GradientTransformation):
    """G per-network steps in one graph: states stacked f32[G, ...], x f32[G, B, ...], y i32[G, B].

    Returns (states, loss f32[G]). A Python loop, not vmap: each network keeps
    plain (fast) convolutions.
    """
    outs = []
    for g in range(x.shape[0]):
        state_g = jax.tree.map(lambda a, g=g: a[g], states)
        outs.append(training.train_step(state_g, x[g], y[g], model_def=model_def, tx=tx))
    new_states = jax.tree.map(lambda *a: jnp.stack(a), *[s for s, _ in outs])
    return new_states, jnp.stack([m["loss"] for _, m in outs])


@functools.cache
def compiled_unrolled_step(model_def, tx, mesh):
    """``unrolled_train_step`` jitted, the network axis split over ``mesh``'s devices."""
    step = functools.partial(unrolled_train_step, model_def=model_def, tx=tx)
    if mesh.devices.size > 1:
        spec = P(sharding.DATA_AXIS)
        step = jax.shard_map(step, mesh=mesh, in_specs=(spec, spec, spec),
                             out_specs=(spec, spec))
    return jax.jit(step, donate_argnums=0)


def train_networks_stacked(model_def, seeds: Sequence[int], x: np.ndarray, y: np.ndarray, *,
                           epochs: int, batch_size: int, optimizer: str, lr: float,
                           momentum: float = 0.9, weight_decay: float = 0.0,
                           schedule: str = "constant", milestones=(0.5, 0.75),
                           augment: str = "", formulation: str = "unrolled",
                           mesh=None) -> list[dict]:
    """Train one network per seed, all in each compiled step; returns their variables.

    The variables have the layout of ``model_def.init`` (host arrays), and the
    networks are those ``training.train_classifier`` would train one at a time
    from the same seeds (up to float rounding).

    Args:
      x: f32[N, H, W, C] images; y: int[N] labels.
      formulation: 'unrolled' (any model; the G networks are split over the
        devices of ``mesh`` when G is a multiple of their number) or 'grouped'
        (ConvNet-3 only; slow on XLA CPU, see the module docstring).
      mesh: default: all devices.
    """
    if augment:
        raise ValueError(f"the stacked trainer has no augmentation ({augment!r}); set "
                         "zoo.augment='' or train one network at a time")
    if formulation not in ("unrolled", "grouped"):
        raise ValueError(f"formulation must be 'unrolled' or 'grouped', not {formulation!r}")
    g = len(seeds)
    steps_per_epoch = len(x) // batch_size
    tx = make_optimizer(optimizer=optimizer, lr=lr, total_steps=epochs * steps_per_epoch,
                                 momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                                 milestones=tuple(milestones))
    members = [model_def.init(jax.random.key(s)) for s in seeds]
    mesh = mesh or sharding.make_mesh()
    if formulation == "grouped":
        state = training.init_train_state(group_variables(members), tx)
        step_fn = compiled_grouped_step(grouped_model(model_def, g), tx)
        place = jax.device_put
    else:
        state = jax.tree.map(lambda *a: jnp.stack(a),
                             *[training.init_train_state(m, tx) for m in members])
        if g % mesh.devices.size:
            # G does not split evenly: one device of this process (with several processes
            # each trains all G, the same networks, rather than wait for another's device).
            mesh = sharding.make_mesh(jax.local_devices()[:1])
        step_fn = compiled_unrolled_step(model_def, tx, mesh)
        place = functools.partial(sharding.shard_batch, mesh=mesh)

    def epoch(state, e):
        orders = [epoch_batches(len(x), batch_size, seed=s, epoch=e, shuffle=True,
                                drop_remainder=True) for s in seeds]
        losses = jnp.zeros(g)
        for step in range(steps_per_epoch):
            idx = np.stack([order[step] for order in orders])       # [G, B]
            state, losses = step_fn(state, place(x[idx]), place(y[idx]))
        return state, losses     # f32[G]: every network's last loss

    state = resumable_loop(epoch, place(state), total=epochs, desc=f"{g} networks",
                           unit="epoch", hint=training.LR_HINT)
    variables = sharding.to_host(training.variables_of(state))
    if formulation == "grouped":
        return ungroup_variables(variables, g)
    return [jax.tree.map(lambda a, i=i: np.asarray(a[i]), variables) for i in range(g)]
