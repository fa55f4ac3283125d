"""Zoo sharing between the runs of a suite.

Most rows of an ablation suite change only the generator: their zoos (the collect
stage, about half of a default run) are identical. A run whose zoo section equals a
finished zoo's gets that artifact linked into its workdir before it starts, and the
pipeline skips its collect stage (a workdir without config.json takes any config).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from pdiff_jax import artifacts
from pdiff_jax.config.diff import value_at, with_new_defaults


def zoo_key(config: Mapping, sections: Sequence[str]) -> str:
    """What identifies a run's zoo: the values of the collect stage's config ``sections``
    (``pipeline.STAGES[0].sections``) in a config dict (as config.json holds it)."""
    picked = {section: value_at(config, section) for section in sections}
    return json.dumps(picked, sort_keys=True)


def finished_zoo(workdir: Path) -> bool:
    return artifacts.exists(artifacts.artifact_dir(workdir, artifacts.ZOO))


def zoo_donors(root: Path, sections: Sequence[str]) -> list[tuple[str, Path]]:
    """``[(zoo key, workdir)]`` of every run under ``root/<suite>/<run>`` holding a
    finished zoo (other suites' runs too), keyed by its config.json."""
    out = []
    for config in sorted(Path(root).glob(f"*/*/{artifacts.CONFIG_JSON}")):
        if finished_zoo(config.parent):
            try:
                saved = with_new_defaults(json.loads(config.read_text()))
                out.append((zoo_key(saved, sections), config.parent))
            except ValueError:
                continue
    return out


def link_zoo(donor: Path, workdir: Path) -> None:
    """Hard-link (else copy) ``donor``'s finished zoo artifact into ``workdir``, atomically."""
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{artifacts.ZOO}.linking"
    if tmp.exists():
        shutil.rmtree(tmp)

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:   # another file system, or links not allowed
            shutil.copy2(src, dst)

    shutil.copytree(artifacts.artifact_dir(donor, artifacts.ZOO), tmp, copy_function=link)
    tmp.replace(artifacts.artifact_dir(workdir, artifacts.ZOO))
