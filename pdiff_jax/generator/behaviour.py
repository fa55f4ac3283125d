"""A behavioural term for the autoencoder: decoded networks must act like their members.

Reconstruction error in parameter space weighs every number alike, yet a network's
accuracy hangs on a few directions of it; the zoo's copies through a plain autoencoder
already lose accuracy ("Structure Is Not Enough", 2025, makes the same point for weight
generators). With ``generator.autoencoder.behaviour.weight > 0`` each training step also
decodes ``members`` rows of its batch from their latents plus the autoencoder's latent
noise (the neighbourhood the diffusion model samples from), runs the decoded networks
on a fixed batch of ``images`` training images, and adds

    weight * mean_{members, images} KL(softmax(member's logits) || softmax(decoded's logits))

to the loss. The members' logits are computed once. For a subset zoo the images enter at
the zoo's split point (the frozen head's activations, computed once too). With
``images_per_step > 0`` each step runs the decoded networks on that many of the ``images``
(drawn anew each step): a large pool of images at the cost of a small batch.

With ``mix > 0`` the decoded latent is a mix ``(1 - a) z_i + a z_j`` of two members'
(``a ~ U(0, mix)``), and its target is the same mix of their predicted probabilities: the
two-member ensemble, which is more accurate than either member, where the plain blend of
their parameters is less accurate (the interpolation baseline of the frontier). The
decoder then learns a path between members along which networks act like ensembles
rather than like parameter averages (a learned, curved path, as in "Learning Neural
Network Subspaces", Wortsman et al. 2021, but distilled from the zoo's own outputs).

With ``target = 'labels'`` the target is the images' own labels (lightly smoothed, so the
KL is a cross-entropy) instead of the members' predictions: decoded networks, and their
mixes, are trained on the task itself rather than to repeat the members' mistakes. This
spends the training data as fine-tuning does (the frontier's ``finetune`` reference).
Measured on MLP-3 (its recipe uses it). On ConvNet-3, a BatchNorm convnet, the same
settings from step 0 let a cross-entropy in the millions drown the reconstruction and
every decoded member fell to 30 % (session 4); with a warm-up, a fine-tuning rate and
batch statistics (below) its decoded members keep 97.2 % (zoo 97.4) and the term moves
the ConvNet-3 curve up by 0.3 to 0.45 at equal novelty, not yet 0.3 above the trivial
generators (results/frontier-mnist.md, session 5). Watch the autoencoder's "zoo through
the AE" line before trusting it on a new architecture.

With ``warmup > 0`` the first ``warmup`` of the autoencoder's steps train on the
reconstruction alone (a step function without the term: they cost what a plain
autoencoder's do), and the term's weight then rises linearly over the next ``ramp`` of
them. The term then starts from decoded networks that are already near their members,
instead of from an untrained decoder's networks, whose cross-entropy (a BatchNorm
convnet's in the millions: near-zero decoded variances) drowns the reconstruction before
it is learned.

An entire BatchNorm network (ConvNet-3, cnn_bn) runs in the term with its batch
statistics, as it trained and as fine-tuning (the frontier's ``finetune``) trains it. With
its decoded running statistics instead, the term was sharp where the reconstruction is
not: from a trained ConvNet-3 autoencoder, one sign step of 1e-2 along its gradient took
it from 0.17 to 4,400-5,100, and 300 AdamW steps at 1e-3, or even 1e-4, took it to 0.8
and 31 while the reconstruction error grew 6 to 8 times (a network's output is steep in
a running variance it never learns by gradient); with batch statistics the same 300 steps
held it at 0.11 to 0.14 (benchmarks/behaviour_stability.py). ``learning_rate > 0`` sets
the autoencoder's rate from the warm-up's end on: a fine-tuning rate for the phase with
the term (a precaution with batch statistics, where the 1e-2 step was harmless).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pdiff_jax.params.subset import ParamSpec, merge, unflatten_subset

from .mixing import mix_rows, pair_mix
from .normalize import denormalize


@dataclasses.dataclass(frozen=True)
class BehaviourSettings:
    """The ``generator.autoencoder.behaviour`` config section (weight 0: off)."""

    weight: float = 0.0     # the KL term's weight against the reconstruction MSE
    images: int = 128       # training images the decoded networks are run on
    members: int = 32       # batch rows that get the term each step (its cost)
    mix: float = 0.0        # > 0: decoded latent mixes match the members' ensemble
    target: str = "members"  # 'members': their predictions; 'labels': the images' labels
    images_per_step: int = 0  # > 0: each step's images, drawn from the `images` (0: all)
    vectorize: str = "vmap"  # how decoded networks run in a step: 'vmap' or 'loop'
    warmup: float = 0.0     # fraction of the autoencoder's steps on reconstruction alone
    ramp: float = 0.0       # fraction of its steps over which the weight then rises to full
    learning_rate: float = 0.0  # > 0: the autoencoder's rate from the warm-up's end on


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """What the training step needs to run decoded networks (static, hashable): the
    network, the config section's settings and the autoencoder's step count (for the
    warm-up)."""

    model_def: object
    spec: ParamSpec
    start: str | None       # the split point the inputs enter at (None: the images)
    settings: BehaviourSettings
    steps: int = 0          # the autoencoder's training steps
    off: bool = False       # a warm-up step: the reconstruction alone
    # Decoded networks normalize with their batch statistics, as an entire BatchNorm
    # network trains (zoo.training.batch_norm_mode 'train'); else their running ones.
    batch_statistics: bool = False

    @property
    def constant(self) -> bool:
        """Whether the term has its full weight from the first step (no warm-up, no ramp)."""
        return self.settings.warmup <= 0 and self.settings.ramp <= 0

    @property
    def first_step(self) -> int:
        """The first step with the term on."""
        return int(np.ceil(self.settings.warmup * self.steps))

    def scale_at(self, step) -> jax.Array:
        """The fraction of ``settings.weight`` the term has at ``step``: 0 through the
        warm-up, then linear to 1 over the ramp."""
        begin = self.first_step
        ramp = self.settings.ramp * self.steps
        step = jnp.asarray(step, jnp.float32)
        if ramp <= 0:
            return (step >= begin).astype(jnp.float32)
        return jnp.clip((step - begin + 1) / ramp, 0.0, 1.0)


def logits_of(model_def, spec: ParamSpec, start, base, vectors, inputs, vectorize="vmap",
              batch_statistics=False):
    """f32[n, b, C]: the logits of parameter sets ``f32[n, D]`` on ``inputs`` (b rows).

    ``vectorize='loop'`` runs them one after another (unrolled): XLA CPU turns a vmap over
    convolution weights into a slow batched convolution (ConvNet-3, gradient through 32
    networks on 128 images: 108 s with vmap, 3.1 s unrolled; BENCHMARKS.md section 11).
    ``batch_statistics``: BatchNorm layers normalize with the statistics of ``inputs``
    (training mode) instead of the networks' running ones.
    """

    def one(vector):
        variables = _nonnegative_variances(merge(base, unflatten_subset(vector, spec)))
        if batch_statistics:
            return model_def.apply(variables, inputs, train=True, start=start)[0]
        return model_def.apply(variables, inputs, train=False, start=start)

    if vectorize == "loop":
        return jnp.stack([one(vectors[i]) for i in range(vectors.shape[0])])
    return jax.vmap(one)(vectors)


def _nonnegative_variances(variables: dict) -> dict:
    """BatchNorm running variances clipped at 0. A decoded variance below zero (an untrained
    decoder's first steps on an entire BN network) makes every logit NaN, and with it the
    whole loss; clipped, the term leaves it to the reconstruction error to mend."""
    if "batch_stats" not in variables:
        return variables

    def clip(path, leaf):
        return jnp.maximum(leaf, 0.0) if getattr(path[-1], "key", None) == "var" else leaf

    return dict(variables,
                batch_stats=jax.tree_util.tree_map_with_path(clip, variables["batch_stats"]))


@functools.partial(jax.jit, static_argnames=("model_def", "spec", "start"))
def _logits_jit(base, vectors, inputs, *, model_def, spec, start):
    return logits_of(model_def, spec, start, base, vectors, inputs)


def teacher_logits(behaviour: Behaviour, base, vectors, inputs, chunk: int = 50,
                   image_chunk: int = 256) -> np.ndarray:
    """f32[K, b, C]: every zoo member's logits on the behaviour inputs (computed once), in
    blocks of ``chunk`` members x ``image_chunk`` images: 50 ConvNet-3s on 8,192 images at
    once would need 107 GB of activations."""
    b = jax.tree.leaves(inputs)[0].shape[0]
    rows = []
    for i in range(0, len(vectors), chunk):
        members = jnp.asarray(vectors[i:i + chunk])
        rows.append(np.concatenate([
            np.asarray(_logits_jit(base, members, _images(inputs, j, image_chunk),
                                   model_def=behaviour.model_def, spec=behaviour.spec,
                                   start=behaviour.start))
            for j in range(0, b, image_chunk)], axis=1))
    return np.concatenate(rows)


def _images(inputs, start: int, size: int):
    """Rows ``start:start + size`` of the behaviour inputs (an array or a pytree of them)."""
    return jax.tree.map(lambda a: a[start:start + size], inputs)


# A smoothed one-hot keeps log-probabilities finite: KL to it is cross-entropy up to a constant.
LABEL_SMOOTHING = 1e-3


def label_targets(labels, num_classes: int) -> np.ndarray:
    """f32[1, b, C]: the log-probabilities of the smoothed one-hot ``labels`` (b of them),
    one row that every member shares (K copies were 65 MB on the device for MLP-3)."""
    one_hot = np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]
    p = (1 - LABEL_SMOOTHING) * one_hot + LABEL_SMOOTHING / num_classes
    return np.log(p)[None]


def behaviour_targets(behaviour: Behaviour, base, vectors, inputs, labels=None) -> np.ndarray:
    """f32[K, b, C]: what each member's decoded networks must match (``settings.target``);
    f32[1, b, C] for the labels, the same for every member."""
    target = behaviour.settings.target
    if target == "members":
        return teacher_logits(behaviour, base, vectors, inputs)
    if target == "labels":
        if labels is None:
            raise ValueError("behaviour.target 'labels' needs the images' labels")
        # One member on one image says how many classes there are.
        one = teacher_logits(behaviour, base, vectors[:1], _images(inputs, 0, 1))
        return label_targets(labels, one.shape[-1])
    raise ValueError(f"behaviour.target {target!r}: use 'members' or 'labels'")


def mixed_targets(latents, teacher, key, mix: float):
    """Latent mixes of random pairs among ``latents f32[M, ...]`` and their targets: the
    same mix of the pair's probabilities, as log-probabilities ``f32[M, b, C]`` (``teacher``
    holds the members' logits)."""
    partner, a = pair_mix(*jax.random.split(key), latents.shape[0], mix, latents.dtype)
    log_p = jax.nn.log_softmax(teacher, axis=-1)
    a_p = a[:, :, None]
    # log((1 - a) p_i + a p_j); a = 0 gives log(0) = -inf on one side, which logaddexp takes.
    target = jnp.logaddexp(jnp.log1p(-a_p) + log_p, jnp.log(a_p) + log_p[partner])
    return mix_rows(latents, partner, a), target


def behaviour_loss(behaviour: Behaviour, decoded, teacher, data) -> jax.Array:
    """The weighted KL term for decoded normalized vectors ``f32[M, n]`` against the
    targets ``teacher f32[M, b, C]`` (logits, or log-probabilities); ``data`` holds
    ``normalizer``, ``base`` and ``inputs`` (see ``stages.train_autoencoder``)."""
    raw = denormalize(data["normalizer"], decoded)                     # [M, D]
    student = logits_of(behaviour.model_def, behaviour.spec, behaviour.start, data["base"],
                        raw, data["inputs"], behaviour.settings.vectorize,
                        behaviour.batch_statistics)                       # [M, b, C]
    log_p = jax.nn.log_softmax(teacher, axis=-1)
    log_q = jax.nn.log_softmax(student, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)           # [M, b]
    return behaviour.settings.weight * jnp.mean(kl)
