"""GPU throughput paths, checked on the CPU: device-resident data, k steps per dispatch,
bf16 compute. Each must train exactly what the plain path trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_generator import (
    Interrupt,
    _interrupt_at,
    ae_stage,
    diffusion_stage,
    tiny_config,
    tiny_zoo,
)

from pdiff_jax.data import load_dataset, resident
from pdiff_jax.data.batches import apply_crop_flip, crop_flip
from pdiff_jax.models import get_model
from pdiff_jax.runtime import dispatch
from pdiff_jax.runtime.checkpoint import restore_pytree
from pdiff_jax.runtime.train_loop import TrainingDivergedError, resumable_loop
from pdiff_jax.zoo import training

# A few steps only: early SGD with BatchNorm amplifies float rounding (measured: 2e-7
# after one step, 5e-6 after three, 5e-3 after ten), so longer runs cannot be compared.
RECIPE = dict(epochs=2, batch_size=32, seed=3, optimizer="sgd", lr=0.05, momentum=0.9,
              weight_decay=5e-4, schedule="cosine")


@pytest.fixture(scope="module")
def digits(tfds_dir):
    """320 digits padded to 32x32x3, the shape the GPU recipe trains on."""
    return load_dataset("mnist", data_dir=str(tfds_dir), max_train=320, max_test=10,
                        image_size=32, channels=3)


@pytest.fixture(scope="module")
def cnn(digits):
    model_def = get_model("cnn_bn", num_classes=10, input_shape=digits.image_shape)
    return model_def, jax.device_get(model_def.init(jax.random.key(0)))


def train(cnn, digits, n_images=64, **kw):
    model_def, variables = cnn
    args = dict(RECIPE, data_stats=(digits.mean, digits.std))
    args.update(kw)
    return training.train_classifier(model_def, variables, digits.x_train[:n_images],
                                     digits.y_train[:n_images], **args)


def assert_trees_close(a, b, **tol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


def assert_same_training(a, b, start):
    """``a`` and ``b`` moved from ``start`` by the same steps: they differ by float rounding
    (< 1 % of how far training moved each tensor), not by a different batch or key."""
    def check(x, y, x0):
        moved = np.abs(x - x0).max()
        assert moved > 1e-4 and np.abs(x - y).max() <= 0.01 * moved + 1e-6
    jax.tree.map(check, a, b, start)


def test_images_are_stored_as_bytes_that_decode_exactly(digits):
    u = resident.encode_bytes(digits.x_train, digits.mean, digits.std)
    assert u is not None and u.dtype == np.uint8
    back = resident.decode(jnp.asarray(u), jnp.asarray(digits.mean, jnp.float32),
                           jnp.asarray(digits.std, jnp.float32))
    np.testing.assert_allclose(np.asarray(back), digits.x_train, rtol=0, atol=1e-6)
    # Resized images are no bytes: they stay float32, exactly.
    resized = load_dataset("mnist", data_dir=None, max_train=50, max_test=10, image_size=20)
    assert resident.encode_bytes(resized.x_train, resized.mean, resized.std) is None
    data = resident.to_device(resized.x_train, resized.y_train, mean=resized.mean,
                              std=resized.std)
    assert data.images.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(data.images), resized.x_train)


def test_crop_flip_is_the_same_arithmetic_on_host_and_device():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype(np.float32)
    dy, dx = rng.integers(0, 9, size=6), rng.integers(0, 9, size=6)
    flip = rng.random(6) < 0.5
    host = apply_crop_flip(x, dy, dx, flip)
    device = jax.jit(lambda *a: apply_crop_flip(*a, xp=jnp))(x, dy, dx, flip)
    np.testing.assert_array_equal(host, np.asarray(device))
    # offset 4 without a flip is the identity; the host entry point draws its offsets
    np.testing.assert_array_equal(apply_crop_flip(x, dy * 0 + 4, dx * 0 + 4, flip & False), x)
    assert crop_flip(x, np.random.default_rng(1)).shape == x.shape


def test_device_resident_training_equals_the_host_pipeline(cnn, digits):
    # two epochs of two steps: each epoch's batch order is the host pipeline's
    host = train(cnn, digits, data_placement="host")
    device = train(cnn, digits, data_placement="device", steps_per_dispatch=1)
    assert_same_training(host, device, cnn[1])


def test_k_steps_per_dispatch_equal_k_single_steps(cnn, digits):
    # 3 steps: chunks of 2 and 1 against three single calls, with augmentation.
    kw = dict(n_images=96, epochs=1, data_placement="device", augment="crop_flip")
    one = train(cnn, digits, steps_per_dispatch=1, **kw)
    two = train(cnn, digits, steps_per_dispatch=2, **kw)
    assert_same_training(one, two, cnn[1])
    host = train(cnn, digits, n_images=96, epochs=1, data_placement="host", augment="crop_flip")
    # Device augmentation draws its own offsets: a different (valid) run.
    assert np.abs(host["params"]["fc2"]["kernel"] - one["params"]["fc2"]["kernel"]).max() > 1e-3


def test_bf16_compute_keeps_float32_parameters_and_learns(cnn, digits):
    f32 = train(cnn, digits, epochs=1, data_placement="device")
    bf16 = train(cnn, digits, epochs=1, data_placement="device", precision="bf16")
    for leaf in jax.tree.leaves(bf16):
        assert leaf.dtype == np.float32
    # The same run in lower precision: close to the float32 one, not equal to it.
    a, b = f32["params"]["fc2"]["kernel"], bf16["params"]["fc2"]["kernel"]
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, atol=0.05)
    with pytest.raises(ValueError, match="precision"):
        train(cnn, digits, epochs=1, precision="fp8")


def test_cpu_keeps_one_step_per_call_and_the_host_pipeline():
    assert dispatch.platform() == "cpu"
    assert dispatch.steps_per_dispatch(0) == 1
    assert dispatch.steps_per_dispatch(7) == 7
    assert not dispatch.use_device_data("auto", 10)
    assert dispatch.use_device_data("device", 10**15)
    with pytest.raises(ValueError, match="placement"):
        dispatch.use_device_data("gpu", 10)


def generator_run(workdir, *, k, steps=7, ckpt=10**6, metrics_fn=None):
    """Both generator stages with ``k`` steps per dispatch at a learning rate so small
    that the weights barely move: Adam on this tiny AE turns a 1e-7 relative change of
    the weights into a 3 % different loss within five steps, so rounding differences
    between a scan and single calls would swamp any comparison at a normal rate. Each
    step's loss still depends on its batch and noise key, which is what must match."""
    cfg = tiny_config(ae_steps=steps, diff_steps=steps, ckpt=ckpt)
    for section in (cfg.autoencoder.train, cfg.diffusion.train):
        section.update(steps_per_dispatch=k, log_every=1, learning_rate=1e-6)
    records = []

    def log(done, rec):
        if "loss" in rec:
            records.append((rec["stage"], done, rec["loss"]))
        if metrics_fn:
            metrics_fn(done, rec)

    ae_stage(tiny_zoo()[0], config=cfg, workdir=workdir, key=jax.random.key(0), metrics_fn=log)
    diffusion_stage(config=cfg, workdir=workdir, key=jax.random.key(1), metrics_fn=log)
    arrays = [restore_pytree(workdir / name / "arrays") for name in ("autoencoder", "diffusion")]
    return arrays, records


def window_means(per_step, ends):
    """Mean loss of each window ``(previous end, end]`` of 1-based step losses."""
    losses = {(stage, done): loss for stage, done, loss in per_step}
    out, last = [], {}
    for stage, end in ends:
        start = last.get(stage, 0)
        out.append(np.mean([losses[(stage, s)] for s in range(start + 1, end + 1)]))
        last[stage] = end
    return out


def test_generator_k_steps_per_dispatch_equal_single_steps(tmp_path):
    single, single_log = generator_run(tmp_path / "k1", k=1)
    scanned, scanned_log = generator_run(tmp_path / "k3", k=3)
    ends = [(stage, done) for stage, done, _ in scanned_log]
    assert [d for _, d in ends] == [3, 6, 7, 3, 6, 7]   # chunks of 3, 3 and 1 per stage
    np.testing.assert_allclose([loss for *_, loss in scanned_log],
                               window_means(single_log, ends), rtol=1e-4)
    assert_trees_close(single, scanned, rtol=0, atol=1e-5)


def test_a_run_resumes_with_another_number_of_steps_per_dispatch(tmp_path):
    straight, straight_log = generator_run(tmp_path / "straight", k=1)
    with pytest.raises(Interrupt):   # stopped after step 6 of the AE: its checkpoint is at 4
        generator_run(tmp_path / "resumed", k=1, ckpt=4, metrics_fn=_interrupt_at(6))
    resumed, resumed_log = generator_run(tmp_path / "resumed", k=3, ckpt=4)
    ends = [(stage, done) for stage, done, _ in resumed_log]
    # The AE resumed at 4 in one chunk of 3; the diffusion stage ran in chunks of 3, 3, 1.
    assert ends == [("autoencoder", 7), ("diffusion", 3), ("diffusion", 6), ("diffusion", 7)]
    expected = window_means(straight_log, [("autoencoder", 4), *ends])[1:]
    np.testing.assert_allclose([loss for *_, loss in resumed_log], expected, rtol=1e-4)
    assert_trees_close(straight, resumed, rtol=0, atol=1e-5)


def test_loop_with_several_units_per_call_checks_every_unit():
    calls = []

    def advance(state, u):
        n = min(3, 10 - u)
        calls.append((u, n))
        losses = np.arange(u, u + n, dtype=np.float64)
        return state + n, np.where(losses == 7, np.nan, losses)

    # unit 7 counted from 0 is the loop's step 8 (steps are counted from 1)
    with pytest.raises(TrainingDivergedError, match="step 8"):
        resumable_loop(advance, 0, total=10, desc="t", hint="h", units_per_call=3,
                       check_every=4)
    assert calls == [(0, 3), (3, 3), (6, 3)]   # checked at 6 (crossed 4) and 9 (crossed 8)
    records = []
    state = resumable_loop(lambda s, u: (s + min(3, 10 - u), np.zeros(min(3, 10 - u))), 0,
                           total=10, desc="t", hint="h", units_per_call=3, check_every=5,
                           metrics_fn=lambda done, rec: records.append(done))
    assert state == 10 and records == [6, 10]


def test_checkpoints_closer_than_the_minimum_interval_are_skipped(tmp_path):
    saved = []

    def run(min_seconds, ckpt_dir):
        resumable_loop(lambda s, u: (s + 1, 0.0), np.zeros(()), total=6, desc="t", hint="h",
                       ckpt_dir=ckpt_dir, checkpoint_every=2,
                       min_checkpoint_seconds=min_seconds)
        saved.append(sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()))

    run(0.0, tmp_path / "every")
    run(3600.0, tmp_path / "throttled")
    assert saved[1] == [6]   # only the last unit: the others came too soon
    assert saved[0][-1] == 6 and len(saved[0]) >= 2
    assert dispatch.min_checkpoint_seconds() == 0.0   # the CPU saves as configured
