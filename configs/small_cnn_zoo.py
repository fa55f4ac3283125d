"""Bring your own zoo: the Small CNN Zoo (Unterthiner et al., 2020), imported, not trained.

The zoo's MNIST networks (3 conv layers of 16 units, global average pooling, dense 10:
4,970 parameters, model 'small_cnn_zoo') are read from its files instead of being
trained here, and p-diff learns all of their parameters (the entire-network generator
settings of configs/mlp3.py). Unpack the zoo's mnist.tar.xz (google-research's
dnn_predict_accuracy README links it) and point zoo.source at the folder:

    python -m pdiff_jax.main --config configs/small_cnn_zoo.py \\
        --config.zoo.source=PATH/mnist --workdir runs/small_cnn_zoo
    python -m pdiff_jax.main --config configs/small_cnn_zoo.py:smoke ...   # tiny, for tests

Rows: final checkpoints (step 86) of ReLU networks trained on MNIST with finite
parameters; zoo.num_models of them, drawn with the run's seed. Another activation is
another model: --config.model.kwargs.activation=tanh together with
--config.zoo.source_filter='dataset=mnist,activation=tanh,step=86,finite'.
"""

from pdiff_jax.config.defaults import get_config as default_config
from pdiff_jax.config.defaults import shrink_for_smoke, use_entire_network_generator


def get_config(arg=None):
    args = set((arg or "").split(",")) - {""}
    unknown = args - {"smoke"}
    if unknown:
        raise ValueError(f"unknown config arguments {sorted(unknown)}; use smoke or nothing")
    config = default_config()
    config.data.name = "mnist"
    config.model.name = "small_cnn_zoo"
    config.model.kwargs = dict(activation="relu", width=16, depth=3)
    zoo = config.zoo
    zoo.source = ""   # required: --config.zoo.source=PATH (the folder of weights.npy)
    zoo.source_filter = "dataset=mnist,activation=relu,step=86,finite"
    zoo.mode = "seed"   # whole networks, each its own
    zoo.selector = ".*"
    # Independently trained networks: permuted to one mode first (their average of 16 at
    # smoke size: 10.0 % unaligned, 82.6 % after merge_many), as configs/mlp3.py does.
    zoo.align = "merge_many"
    zoo.num_models = 200
    use_entire_network_generator(config)
    config.evaluate.train_examples = 10000
    if "smoke" in args:
        shrink_for_smoke(config)
        # On a CPU a loop over the networks (lax.map) compiles this conv net's evaluation
        # far faster than vmap (measured 0.6 s against 7.5 s for 25 networks).
        config.evaluate.vectorize = "map"
    return config
