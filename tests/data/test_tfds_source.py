"""Reading TFDS data sets (pdiff_jax.data.tfds_source): random access from a label pool,
images of varying size resized as read, and no warnings about data not prepared yet."""

import functools

import numpy as np
import pytest

from pdiff_jax.data import DATASETS, load_dataset, tfds_source


def test_lazy_random_access_path(mnist_full, data_dir, monkeypatch):
    """Large data sets are read by random access from a label pool; use MNIST as if large."""
    monkeypatch.setattr(tfds_source, "IN_MEMORY_MAX_BYTES", 0)
    ds = load_dataset("bundled_mnist", data_dir=data_dir, val_examples=50, max_train=200, seed=3)
    assert np.bincount(ds.y_train, minlength=10).tolist() == [20] * 10
    assert np.bincount(ds.y_val, minlength=10).tolist() == [5] * 10
    assert ds.x_test.shape == (10000, 28, 28, 1)
    # Every example read is a real MNIST example with its own label.
    full = zip(mnist_full.x_train, mnist_full.y_train, strict=True)
    label_of = {hash(x.tobytes()): y for x, y in full}
    read = zip([*ds.x_train, *ds.x_val], [*ds.y_train, *ds.y_val], strict=True)
    assert all(label_of[hash(x.tobytes())] == y for x, y in read)
    train_keys = {x.tobytes() for x in ds.x_train}
    assert not any(x.tobytes() in train_keys for x in ds.x_val)


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buffer, "png")
    return buffer.getvalue()


@functools.cache  # TFDS registers a builder class by name, once per process
def _tiny_variable_size_builder():
    """A TFDS builder shaped like oxford_iiit_pet: PNG images of varying size, extra mask."""
    import tensorflow_datasets as tfds

    class TinyVariableImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {
                "image": tfds.features.Image(shape=(None, None, 3)),
                "segmentation_mask": tfds.features.Image(shape=(None, None, 1)),
                "label": tfds.features.ClassLabel(num_classes=3),
            }
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features)
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(60), "test": self._generate_examples(12)}

        def _generate_examples(self, n):
            rng = np.random.default_rng(n)
            for i in range(n):
                label = i % 3
                h, w = rng.integers(20, 50, size=2)
                image = np.zeros((h, w, 3), np.uint8)
                image[..., label] = 200  # the label's colour, flat
                mask = np.full((h, w, 1), 1, np.uint8)
                yield i, {"image": _png(image), "segmentation_mask": _png(mask), "label": label}

    return TinyVariableImages


def test_variable_size_images_are_resized_as_read(tmp_path, monkeypatch):
    """The ImageNet-style path (random access, per-image resize) on a tiny PNG data set."""
    from pdiff_jax.data.catalog import DatasetSpec

    builder_cls = _tiny_variable_size_builder()
    builder = builder_cls(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    # Extra image features stay encoded; `image` too when only labels are wanted.
    example = tfds_source.open_split(builder, "train")[0]
    assert isinstance(example["segmentation_mask"], bytes) and example["image"].ndim == 3
    assert isinstance(tfds_source.open_split(builder, "train", skip_images=True)[0]["image"], bytes)
    spec = DatasetSpec("tiny_variable_images", 3, None, (0.5,) * 3, (0.25,) * 3, style="imagenet")
    monkeypatch.setitem(DATASETS, "tiny_variable_images", spec)
    ds = load_dataset(
        "tiny_variable_images",
        data_dir=str(tmp_path),
        image_size=16,
        val_examples=6,
        max_train=30,
        max_test=6,
    )
    assert ds.source == "tfds" and ds.x_train.shape == (30, 16, 16, 3)
    assert ds.x_val.shape == (6, 16, 16, 3) and ds.x_test.shape == (6, 16, 16, 3)
    assert np.bincount(ds.y_train).tolist() == [10] * 3
    assert np.bincount(ds.y_val).tolist() == [2] * 3
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        raw = np.rint((x * 0.25 + 0.5) * 255)
        expected = np.zeros((len(y), 3))
        expected[np.arange(len(y)), y] = 200
        np.testing.assert_array_equal(raw, np.broadcast_to(expected[:, None, None], raw.shape))


@pytest.mark.parametrize("name", ["mnist", "cifar10", "bundled_mnist"])
def test_an_unprepared_data_set_is_found_missing_without_warnings(name, tmp_path, caplog):
    # TFDS warned "Variant folder .../mnist/3.0.1 has no dataset_info.json" about a
    # folder that does not exist each time the bundled MNIST stood in for the official one.
    from pdiff_jax.data.bundled_mnist import BundledMnist

    caplog.set_level("WARNING")
    if name == "bundled_mnist":  # the not-yet-built bundled copy: checked, not built
        assert not tfds_source._is_prepared(BundledMnist(data_dir=str(tmp_path)))
    else:
        assert tfds_source.prepared_builder(name, str(tmp_path)) is None
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


def test_resize_image_scales_shorter_side_and_centre_crops():
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :20, 0] = image[:, 20:60, 1] = image[:, 60:, 2] = 255  # red | green | blue
    out = tfds_source.resize_image(image, 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    # 40x80 -> 20x40, then the middle 20 columns: the green band (edges blur a little).
    np.testing.assert_array_equal(out[:, 2:18], np.broadcast_to([0, 255, 0], (20, 16, 3)))
    gray = tfds_source.resize_image(np.full((30, 10, 1), 7, np.uint8), 5)
    assert gray.shape == (5, 5, 1) and np.all(gray == 7)
