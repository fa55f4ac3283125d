"""What the zoo tests share: a small seed zoo collected as the pipeline collects it."""

import pytest


@pytest.fixture(scope="session")
def mlp3_seed_zoo(collect_zoo):
    """``mlp3_seed_zoo(dataset, workdir, *, train_examples, **zoo_settings) -> Zoo``: a seed
    zoo of 3 MLP-3s (1 epoch, 3 per step) with ``zoo_settings`` on top."""
    from pdiff_jax.config.defaults import zoo_defaults
    from pdiff_jax.models import get_model

    def collect(dataset, workdir, *, train_examples: int, **zoo_settings):
        model_def = get_model("mlp3", num_classes=10, input_shape=dataset.x_train.shape[1:])
        cfg = zoo_defaults()
        cfg.update(mode="seed", selector=".*", num_models=3, epochs=1, models_per_step=3,
                   **zoo_settings)
        return collect_zoo(cfg, dataset=dataset, model_def=model_def, workdir=workdir,
                           train_examples=train_examples)[0]

    return collect
