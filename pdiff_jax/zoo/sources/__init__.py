"""Zoos made elsewhere, imported instead of trained (``zoo.source``; issue 26).

``formats`` tells the format from the path and runs its check (before any work) and its
import (the collect stage); one module per format reads it: ``small_cnn_zoo`` (the
Small CNN Zoo of Unterthiner et al.: weights.npy, layout.csv, metrics.csv.gz, rows
chosen by ``row_filter``), ``torch_state_dicts`` (a folder of PyTorch checkpoints,
through ``models.convert``) and ``stacked_npz`` (vectors plus a ParamSpec JSON).
``imported`` holds what they share: the ``ImportedZoo`` they return, the
``ZooSourceError`` they raise, and the check of stored accuracies against this
library's evaluation.

    from pdiff_jax.zoo.sources import import_zoo
    zoo = import_zoo(settings, model_def, dataset, seed=0)   # zoo.vectors f32[K, D]
"""

from pdiff_jax.zoo.sources.formats import check_source, detect_format, import_zoo
from pdiff_jax.zoo.sources.imported import ImportedZoo, ZooSourceError

__all__ = ["ImportedZoo", "ZooSourceError", "check_source", "detect_format", "import_zoo"]
