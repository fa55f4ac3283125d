"""A folder of PyTorch state dicts as an imported zoo: one file per network.

    zoo/net_000.pth  zoo/net_001.pth  ...      (.pt, .pth, .bin or .safetensors)

Each file is a timm / torchvision state dict of the run's architecture (``model.name``
and ``model.kwargs``: resnet*, vit_*, convnext_*), read and converted to Flax by
``pdiff_jax.models.convert`` (checkpoints holding the weights under 'state_dict' or
'model' and 'module.' prefixes are unwrapped there). Files are taken in name order; with
more than ``zoo.num_models`` of them a seeded draw chooses which. The config check
converts the first chosen file (names and shapes, every mismatch listed); the import
converts the rest and names any file that does not fit or holds NaN. State dicts carry
no accuracies, so nothing is compared with stored ones.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from pdiff_jax.models.convert import (
    TORCH_NAMES,
    WeightConversionError,
    convert_state_dict,
    read_state_dict,
)
from pdiff_jax.params.subset import ParamSpec, flatten_subset
from pdiff_jax.zoo.sources.imported import (
    ImportedZoo,
    ZooSourceError,
    check_finite,
    choose_members,
)

EXTENSIONS = (".pt", ".pth", ".bin", ".safetensors")


def state_dict_files(folder: Path) -> list[Path]:
    """The folder's state-dict files (not its subfolders), in name order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in EXTENSIONS)


def holds_state_dicts(path: Path) -> bool:
    return path.is_dir() and bool(state_dict_files(path))


def _read(file: Path) -> dict:
    try:
        return read_state_dict(file)
    except Exception as e:   # torch.load / safetensors raise many types for a bad file
        why = (str(e).splitlines() or [""])[0][:160]   # torch's own messages run long
        raise ZooSourceError(f"zoo.source: {file} is not a readable PyTorch state dict "
                             f"({type(e).__name__}: {why}); remove it from the folder or "
                             "re-save it with torch.save(model.state_dict())") from e


def _vector(file: Path, model_def, spec: ParamSpec) -> np.ndarray:
    """f32[D]: the network in ``file`` converted and flattened in ``spec`` order."""
    state = _read(file)
    try:
        variables = convert_state_dict(state, model_def.name, model_def)
    except WeightConversionError as e:
        _, _, details = str(e).partition("\n")
        counts = "; ".join(line.strip().rstrip(":") for line in details.splitlines()
                           if line and not line.startswith("  "))
        raise ZooSourceError(
            f"zoo.source: {file.name} does not fit model.name={model_def.name!r} for "
            f"{model_def.input_shape} images and {model_def.num_classes} classes ({counts}); "
            "set model.name and model.kwargs (e.g. width, stem) to the checkpoints' "
            f"architecture\n{details}") from e
    return np.asarray(jax.device_get(flatten_subset(variables, spec)), np.float32)


def check(folder: Path, *, model_def, spec: ParamSpec, settings, seed: int) -> list[Path]:
    """The files the zoo will hold, after converting the first of them."""
    if settings.source_filter:
        raise ZooSourceError("zoo.source_filter applies to Small CNN Zoo rows; a folder of "
                             "state dicts is taken whole: use --config.zoo.source_filter=''")
    if not model_def.name.startswith(tuple(TORCH_NAMES)):
        raise ZooSourceError(
            f"zoo.source: {folder} holds PyTorch state dicts, which convert for "
            f"{', '.join(f'{f}*' for f in TORCH_NAMES)} (pdiff_jax/models/convert.py), not "
            f"model.name={model_def.name!r}: set model.name to the checkpoints' architecture")
    files = state_dict_files(folder)
    if not files:
        raise ZooSourceError(f"zoo.source: {folder} holds no state dict ({', '.join(EXTENSIONS)}"
                             "); fix zoo.source")
    chosen = [files[i] for i in choose_members(len(files), settings.num_models, seed)]
    check_finite(_vector(chosen[0], model_def, spec)[None], [chosen[0].name],
                 "remove that file from the folder")
    return chosen


def load(files: list[Path], *, model_def, spec: ParamSpec) -> ImportedZoo:
    """Every chosen file converted, as vectors in ``spec`` order."""
    vectors = np.stack([_vector(f, model_def, spec) for f in files])
    names = tuple(f.name for f in files)
    check_finite(vectors, names, "remove those files from the folder")
    meta = dict(format="torch_state_dicts", path=str(files[0].parent.absolute()),
                files=list(names))
    return ImportedZoo(vectors, spec, names, None, meta)
