"""How a zoo is collected: the ``zoo`` config section as one frozen dataclass.

Its defaults are the config's defaults (``config.defaults.zoo_defaults`` is built from
this class), so a field is declared, documented and defaulted here only. Plain data,
no JAX: the config module imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class ZooSettings:
    # 'subset': snapshots of a subset of one network; 'seed': whole networks from K seeds.
    mode: str = "subset"
    # Regex(es) over variable paths; '' = the architecture's default subset.
    selector: str | tuple = ""
    init_from: str = ""           # optional .safetensors/.pth (timm/torchvision) to start from
    # Base training (subset mode) or each seed model's training (seed mode).
    epochs: int = 2
    batch_size: int = 128
    optimizer: str = "sgd"        # sgd | adam | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"      # cosine | step | constant
    milestones: tuple = (0.5, 0.75)  # fractions of training, for schedule='step' (x0.1 each)
    augment: str = ""             # '' | 'crop_flip'
    # Subset phase: keep training only the subset, saving snapshots.
    num_models: int = 200         # K
    save_every: int = 1           # iterations between snapshots
    subset_optimizer: str = "sgd"
    subset_lr: float = 0.01
    subset_batch_size: int = 128
    # Seed mode: models trained in one compiled step (vmap); 1 = a Python loop.
    models_per_step: int = 1
    # How those models share a step: 'vmap' (fast for MLPs), 'unrolled' (G plain
    # per-network steps in one program, split over the devices: for convnets), or
    # 'grouped' (ConvNet-3 only; grouped convolutions, slow on XLA CPU).
    stack: str = "vmap"
    # Seed mode: 'weight_matching' permutes every member's hidden units to match
    # member 0 (pdiff_jax.zoo.alignment); 'merge_many' then matches each member to the
    # mean of the others. The networks compute the same functions.
    align: str = "none"           # none | weight_matching | merge_many
    # Seed mode: one member per seed and listed epoch count, e.g. (1, 2, 4, 8): a zoo
    # with an accuracy spread (K = num_models * len). () = each seed after `epochs`.
    snapshot_epochs: tuple = ()
    checkpoint_every: int = 50    # subset snapshots between resumable checkpoints
    # Throughput (pdiff_jax.runtime.dispatch): where the training set lives ('auto' = on the
    # device when an accelerator has room), optimizer steps per device call (0 = 1 on
    # CPU, 100 on GPU/TPU), and 'bf16' compute with f32 parameters (classifiers only).
    data_placement: str = "auto"  # auto | host | device
    steps_per_dispatch: int = 0
    precision: str = "f32"        # f32 | bf16
    # Bring your own zoo (pdiff_jax.zoo.sources): '' = train the zoo here. Else the path of
    # a zoo made elsewhere, imported instead of trained: a Small CNN Zoo folder (weights.npy,
    # layout.csv, metrics.csv.gz), a folder of PyTorch state dicts (.pt/.pth/.safetensors)
    # or an .npz of stacked vectors with its ParamSpec JSON beside it. Its members are
    # whole networks (mode='seed'); at most num_models of them are drawn (seeded).
    source: str = ""
    # Small CNN Zoo rows to keep: comma-separated 'column op value' clauses on
    # metrics.csv.gz (op: = != < <= > >=; 'dataset', 'activation' name config.* columns)
    # and 'finite' (leave out rows holding NaN/inf), e.g. 'activation=relu,step=86,finite'.
    source_filter: str = ""
    # The source's stored test accuracies must match this library's evaluation within this
    # many percentage points (a subset test set, data.max_test, adds 3 standard errors).
    source_tolerance: float = 1.0

    @classmethod
    def from_section(cls, section: Mapping) -> ZooSettings:
        """The settings of a ``zoo`` config section (ConfigDict or dict); lists become
        tuples. A key this class does not know is a ``TypeError`` naming it."""
        d = section.to_dict() if hasattr(section, "to_dict") else dict(section)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TypeError(f"unknown zoo settings {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def recipe(self, **overrides) -> dict:
        """How one network is trained: the keyword arguments of the classifier trainers."""
        return dict(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,
                    lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                    schedule=self.schedule, milestones=tuple(self.milestones),
                    augment=self.augment, **overrides)

    def throughput(self) -> dict:
        """How one network's training runs on the backend (not part of the recipe)."""
        return dict(data_placement=self.data_placement,
                    steps_per_dispatch=self.steps_per_dispatch, precision=self.precision)
