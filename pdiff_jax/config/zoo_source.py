"""``zoo.source``, ``zoo.source_filter`` and ``zoo.source_tolerance`` checked before any
work: the fields' values, how they combine with the rest of the ``zoo`` section, and then
the source itself (its files, their fit to the model and data, the filter's rows: see
``pdiff_jax.zoo.sources``), so a malformed zoo costs seconds, not a trained generator.
"""

from __future__ import annotations

from pdiff_jax.config.fields import fail, flag, get_field


def check_source_fields(config) -> None:
    """The values alone (step 1 of ``config.check``): no file is read."""
    source, text = get_field(config, "zoo.source"), get_field(config, "zoo.source_filter")
    for path, v in (("zoo.source", source), ("zoo.source_filter", text)):
        if not isinstance(v, str):
            fail(path, "a string", v)
    if text:
        from pdiff_jax.zoo.sources.row_filter import parse_filter

        parse_filter(text)   # its syntax: a ConfigError naming the clause
    if text and not source:   # e.g. configs/small_cnn_zoo.py without its zoo
        fail("zoo.source", f"the zoo to import, as zoo.source_filter={text!r} filters its "
             "rows", source, "e.g. --config.zoo.source=PATH/mnist (a folder of weights.npy, "
             f"layout.csv, metrics.csv.gz), or {flag('zoo.source_filter', '')} to train here")
    if source and get_field(config, "zoo.mode") != "seed":
        # Imported members are whole networks, each its own: a seed zoo's layout.
        fail("zoo.mode", "'seed' with zoo.source (an imported zoo holds whole networks)",
             get_field(config, "zoo.mode"), f"use {flag('zoo.mode', 'seed')}")


def check_zoo_source(config, *, input_shape, num_classes: int) -> None:
    """The source itself, for the model built for the data (after ``check_model``)."""
    if not get_field(config, "zoo.source"):
        return
    from pdiff_jax.models import get_model
    from pdiff_jax.zoo.settings import ZooSettings
    from pdiff_jax.zoo.sources import check_source

    model_def = get_model(config.model.name, num_classes=num_classes,
                          input_shape=input_shape, **dict(config.model.kwargs))
    check_source(ZooSettings.from_section(config.zoo), model_def, data_name=config.data.name,
                 seed=config.seed)
