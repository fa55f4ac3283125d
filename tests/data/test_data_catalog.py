"""The catalog of data sets (pdiff_jax.data.catalog): the issue's data sets are known, and
one that is not prepared fails at once, offline, with the command that prepares it."""

import pytest

from pdiff_jax.data import DATASETS, DataMissingError, load_dataset


@pytest.mark.parametrize("name", ["cifar10", "imagenet2012", "food101"])
def test_missing_dataset_fails_fast_offline(name, tmp_path, no_network):
    with pytest.raises(DataMissingError) as info:
        load_dataset(name, data_dir=str(tmp_path), image_size=32)
    assert isinstance(info.value, RuntimeError)
    message = str(info.value)
    assert f"tfds build {name} --data_dir {tmp_path}" in message
    assert "pip install 'pdiff_jax[tf]'" in message
    assert ("downloads/manual" in message) == (name == "imagenet2012")
    assert no_network == []  # failed without even trying the network


def test_catalog_covers_the_issue_datasets():
    wanted = {"mnist", "fashion_mnist", "cifar10", "cifar100", "stl10", "oxford_flowers102"}
    wanted |= {"oxford_iiit_pet", "food101", "imagenet2012", "bundled_mnist"}
    assert wanted <= set(DATASETS)
    for spec in DATASETS.values():
        assert len(spec.mean) == len(spec.std) and all(s > 0 for s in spec.std)
