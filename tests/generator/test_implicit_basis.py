"""The principal basis kept implicit (normalization.basis = 'implicit',
pdiff_jax/generator/implicit_basis.py): the same map as the dense basis up to float
rounding, exact for the zoo, stored without the zoo, and the default path unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdiff_jax.errors import MismatchError
from pdiff_jax.generator import TrainedGenerator, default_generator_config, train_autoencoder
from pdiff_jax.generator.implicit_basis import column_blocks, dense_basis
from pdiff_jax.generator.normalize import (
    _fit_affine,
    denormalize,
    fit_normalizer,
    normalize,
    normalizer_from_arrays,
)
from pdiff_jax.params.subset import segment_ids

SEGMENTS = [32, 48, 16]


def _fit_affine_before(vectors, segments, *, mode, std_floor, abs_floor):
    """normalize._fit_affine as it was before blocks (fd10778), frozen for the comparison."""
    x = np.asarray(vectors, np.float64)
    K, D = x.shape
    seg = segment_ids(segments, D)
    n_seg = int(seg.max()) + 1
    counts = np.bincount(seg, minlength=n_seg) * K
    seg_rms = np.sqrt(np.bincount(seg, weights=(x ** 2).sum(0), minlength=n_seg) / counts)
    floor = np.maximum(std_floor * seg_rms, abs_floor)[seg]
    if mode == "coordinate":
        mean, std = x.mean(0), x.std(0)
    else:
        seg_mean = np.bincount(seg, weights=x.sum(0), minlength=n_seg) / counts
        centred = ((x - seg_mean[seg]) ** 2).sum(0)
        seg_std = np.sqrt(np.bincount(seg, weights=centred, minlength=n_seg) / counts)
        mean, std = seg_mean[seg], seg_std[seg]
    return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)


@pytest.mark.parametrize("mode", ["coordinate", "tensor"])
@pytest.mark.parametrize("block", [None, 1, 7, 40, 96])
def test_statistics_in_blocks_are_bit_identical_to_before(independent_zoo, mode, block):
    x = independent_zoo(3) * np.float32(3.0) + np.float32(0.5)
    mean, std = _fit_affine_before(x, SEGMENTS, mode=mode, std_floor=1e-4, abs_floor=1e-8)
    got = _fit_affine(x, SEGMENTS, mode=mode, std_floor=1e-4, abs_floor=1e-8, block=block)
    np.testing.assert_array_equal(got.mean, mean)
    np.testing.assert_array_equal(got.std, std)


def test_column_blocks_cover_every_column_once():
    blocks = column_blocks(10, 3)
    assert [(s.start, s.stop) for s in blocks] == [(0, 3), (3, 6), (6, 9), (9, 10)]


@pytest.mark.parametrize("mode", ["coordinate", "tensor"])
def test_implicit_basis_is_the_dense_basis(independent_zoo, mode):
    x = independent_zoo()
    K = len(x)
    dense = fit_normalizer(x, SEGMENTS, mode=mode, components=200)
    implicit = fit_normalizer(x, SEGMENTS, mode=mode, components=200, basis="implicit")
    assert implicit.implicit and implicit.basis is None and implicit.out_dim == K - 1
    assert implicit.coefficients.shape == (K - 1, K)
    np.testing.assert_array_equal(implicit.mean, dense.mean)
    np.testing.assert_array_equal(implicit.std, dense.std)
    np.testing.assert_allclose(implicit.center, dense.center, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(implicit.scale, dense.scale, rtol=1e-5)
    built = dense_basis(implicit.center, implicit.coefficients, implicit.mean, implicit.std, x)
    np.testing.assert_allclose(built @ built.T, np.eye(K - 1), atol=1e-5)   # orthonormal
    signs = np.sign(np.sum(built * dense.basis, axis=1))                   # each row's sign
    np.testing.assert_allclose(built, signs[:, None] * dense.basis, atol=1e-4)
    y = normalize(implicit, x)
    np.testing.assert_allclose(y, normalize(dense, x) * signs, atol=1e-4)
    np.testing.assert_allclose(denormalize(implicit, y), x, rtol=1e-4, atol=1e-4)


def test_implicit_basis_in_small_blocks_and_off_the_zoo(independent_zoo, monkeypatch):
    from pdiff_jax.generator import implicit_basis

    x, other = independent_zoo(), independent_zoo(5)[:5]
    norm = fit_normalizer(x, SEGMENTS, mode="tensor", components=6, basis="implicit")
    y, back = normalize(norm, other), denormalize(norm, normalize(norm, other))
    monkeypatch.setattr(implicit_basis, "BLOCK_BYTES", 4 * 16 * 7)   # blocks of 7 columns
    again = fit_normalizer(x, SEGMENTS, mode="tensor", components=6, basis="implicit")
    np.testing.assert_allclose(again.coefficients, norm.coefficients, atol=1e-5)
    np.testing.assert_allclose(normalize(again, other), y, atol=1e-5)
    np.testing.assert_allclose(denormalize(again, y), back, atol=1e-5)
    # the rank-6 reconstruction of a vector outside the zoo is the dense one's
    dense = fit_normalizer(x, SEGMENTS, mode="tensor", components=6)
    np.testing.assert_allclose(back, denormalize(dense, normalize(dense, other)), atol=1e-4)


def test_stored_without_the_zoo_and_rebuilt_with_it(independent_zoo):
    x = independent_zoo()
    norm = fit_normalizer(x, SEGMENTS, mode="tensor", components=200, basis="implicit")
    stored = norm.arrays()
    assert set(stored) == {"mean", "std", "center", "scale", "coefficients"}
    again = normalizer_from_arrays(stored, zoo=x)
    np.testing.assert_array_equal(normalize(again, x), normalize(norm, x))
    with pytest.raises(ValueError, match="attach the zoo"):
        normalize(normalizer_from_arrays(stored), x)
    with pytest.raises(ValueError, match="fitted on a zoo"):
        normalizer_from_arrays(stored, zoo=x[:3])
    # a dense normalizer ignores a zoo
    dense = fit_normalizer(x, SEGMENTS, mode="tensor", components=200)
    assert normalizer_from_arrays(dense.arrays(), zoo=x).zoo is None


def test_jax_arrays_take_one_block_and_agree(independent_zoo):
    x = independent_zoo()
    norm = fit_normalizer(x, SEGMENTS, mode="tensor", components=200, basis="implicit")
    on_device = jax.tree.map(jnp.asarray, norm)
    y = jax.jit(normalize)(on_device, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), normalize(norm, x), atol=1e-4)
    back = jax.jit(denormalize)(on_device, y)
    np.testing.assert_allclose(np.asarray(back), x, rtol=1e-4, atol=1e-4)


def test_unknown_basis_is_refused(independent_zoo):
    with pytest.raises(ValueError, match="basis must be one of"):
        fit_normalizer(independent_zoo(), components=4, basis="sparse")


def test_generator_with_an_implicit_basis_needs_its_zoo(independent_zoo):
    x = independent_zoo()
    cfg = default_generator_config()
    cfg.normalization.update(mode="tensor", components=256, basis="implicit")
    cfg.autoencoder.model.update(kind="fc", hidden=(32,), latent_len=2, latent_channels=2)
    cfg.autoencoder.train.update(steps=5, batch_size=8, log_every=5)
    arrays, meta = train_autoencoder(x, key=jax.random.key(0), segments=SEGMENTS,
                                     normalization=cfg.normalization,
                                     model=cfg.autoencoder.model, train=cfg.autoencoder.train)
    assert "coefficients" in arrays["normalizer"] and "basis" not in arrays["normalizer"]
    assert meta["input_dim"] == len(x) - 1
    with pytest.raises(MismatchError, match="pass zoo="):
        TrainedGenerator(arrays, meta)
    gen = TrainedGenerator(arrays, meta, zoo=x)
    decoded = gen.decode(arrays["latents"])
    assert decoded.shape == x.shape and np.isfinite(decoded).all()
