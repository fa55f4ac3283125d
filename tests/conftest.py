"""Shared test settings and the fixtures tests in several packages use.

Compiling dominates small JAX tests on a CPU, so the persistent compilation
cache is on for the whole session (a second run of the suite is much faster).

Fixtures that build something expensive are session-scoped: with
``pytest -n 2 --dist loadfile`` each worker builds one the first time a test file
it runs asks for it. pdiff_jax is imported inside the fixtures, so collecting
the suite stays cheap.
"""

import csv
import functools
import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent

_CACHE = Path(os.environ.get("PDIFF_TEST_JAX_CACHE", ROOT / ".pytest_cache" / "jax"))
_CACHE.mkdir(parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """A private TFDS data dir: tests never depend on the home directory."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def small_mnist(tfds_dir):
    """3,000 / 1,000 class-balanced digits of the bundled MNIST."""
    from pdiff_jax.data import load_dataset

    return load_dataset("mnist", data_dir=str(tfds_dir), max_train=3000, max_test=1000)


@pytest.fixture(scope="session")
def digits(tfds_dir):
    """320 digits padded to 32x32x3, the shape the GPU recipe trains on."""
    from pdiff_jax.data import load_dataset

    return load_dataset("mnist", data_dir=str(tfds_dir), max_train=320, max_test=10,
                        image_size=32, channels=3)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, tfds_dir):
    """One `python -m pdiff_jax.main` run on the smoke config, shared by the tests that
    read a finished run: (workdir, process, seconds, command)."""
    workdir = tmp_path_factory.mktemp("run")
    cmd = [sys.executable, "-m", "pdiff_jax.main", "--config=configs/default.py:smoke",
           f"--workdir={workdir}", f"--config.data.data_dir={tfds_dir}"]
    start = time.perf_counter()
    # The timeout catches a hang, not a slow machine: the run takes minutes when loaded.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc, elapsed, cmd


def _collect_zoo(cfg, *, dataset, model_def, workdir, train_examples):
    from pdiff_jax.evaluation.evaluator import make_evaluator
    from pdiff_jax.zoo.collect import collect_vectors
    from pdiff_jax.zoo.settings import ZooSettings
    from pdiff_jax.zoo.store import Zoo

    base, vectors, spec, split = collect_vectors(dataset, model_def,
                                                 ZooSettings.from_section(cfg), seed=0,
                                                 checkpoints=workdir)
    evaluator = make_evaluator(model_def, base, spec, split, dataset,
                               train_examples=train_examples)
    train_acc, _ = evaluator.evaluate(vectors, "train")
    test_acc, _ = evaluator.evaluate(vectors, "test")
    return Zoo(base, vectors, spec, split, train_acc, test_acc,
               {"dataset": {"name": dataset.name}}), evaluator


@pytest.fixture(scope="session")
def collect_zoo():
    """``collect_zoo(zoo_config, *, dataset, model_def, workdir, train_examples)
    -> (Zoo, evaluator)``: the collect stage as the pipeline runs it (vectors, then their
    accuracies)."""
    return _collect_zoo


@pytest.fixture(scope="session")
def subset_zoo(small_mnist, tmp_path_factory, collect_zoo):
    """(model_def, Zoo, evaluator, workdir): 12 snapshots of cnn_bn's default subset after
    two epochs on ``small_mnist``."""
    from pdiff_jax.config.defaults import zoo_defaults
    from pdiff_jax.models import get_model

    md = get_model("cnn_bn", num_classes=10, input_shape=small_mnist.x_train.shape[1:])
    cfg = zoo_defaults()
    cfg.epochs, cfg.lr, cfg.num_models, cfg.checkpoint_every = 2, 0.1, 12, 5
    workdir = tmp_path_factory.mktemp("zoo")
    zoo, evaluator = collect_zoo(cfg, dataset=small_mnist, model_def=md, workdir=workdir,
                                 train_examples=1000)
    return md, zoo, evaluator, workdir


def _refuse_network(monkeypatch) -> list:
    """Make every socket connection fail; returns the list of attempted addresses."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture(scope="session")
def refuse_network():
    """``refuse_network(monkeypatch) -> attempts``, for fixtures of any scope."""
    return _refuse_network


@pytest.fixture
def no_network(monkeypatch):
    """The network is refused for this test; the fixture value lists attempted addresses."""
    return _refuse_network(monkeypatch)


# ----------------------------------------------------------------------------- Small CNN Zoo
#
# A Small CNN Zoo made by the tests, in the zoo's own file layout, and one finished
#
# ``python -m pdiff_jax.main`` run on it (shared by tests/zoo/test_small_cnn_zoo_source.py
# and tests/test_notebook.py; not a test module).
#
# The zoo: 3 networks trained here with plain JAX (no Flax) exactly as the zoo's Keras
# CNN computes (3 x [3x3 conv, stride 2, 'valid', activation], global average pooling,
# dense 10) on MNIST scaled to [-1, 1], checkpointed at the zoo's 8 steps; 25 runs
# (each a base network with its hidden units permuted: the same function, another
# vector) x 8 checkpoints = 200 rows. Run 24's final row diverged (NaN). Written as
#
#     weights.npy      f32[200, 4970], per layer its bias then its kernel (Keras layout,
#                      C order), layers in network order, as the released files
#     layout.csv       ,varname,start_idx,end_idx,size,shape  (a pandas-style index first)
#     metrics.csv.gz   an index column, the README's config.* columns, modeldir, step,
#                      test/train accuracy (fractions) and loss
#
# Stored test accuracies are measured (by the NumPy forward pass below) on the 500 test
# images the smoke config evaluates, so the run compares like with like.

LAYERS = ("sequential/conv2d", "sequential/conv2d_1", "sequential/conv2d_2", "sequential/dense")
STEPS = (0, 1, 2, 3, 20, 40, 60, 86)
BASE_RUNS = (("relu", 0.2), ("relu", 0.4), ("tanh", 0.2))   # (activation, learning rate)
UPDATES_PER_STEP = 4
RUNS, NAN_RUN = 25, 24
ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh}
SMOKE_DATA = dict(max_train=2000, max_test=500, seed=0)   # configs/small_cnn_zoo.py:smoke


def keras_variables(channels: int = 1, width: int = 16, classes: int = 10):
    """[(varname, shape)] in the zoo's column order: per layer its bias, then its kernel."""
    shapes = [(3, 3, channels, width), (3, 3, width, width), (3, 3, width, width),
              (width, classes)]
    out = []
    for layer, shape in zip(LAYERS, shapes, strict=True):
        out += [(f"{layer}/bias:0", (shape[-1],)), (f"{layer}/kernel:0", shape)]
    return out


def layout_rows(variables) -> list[tuple[str, int, int, tuple]]:
    rows, start = [], 0
    for name, shape in variables:
        rows.append((name, start, start + int(np.prod(shape)), shape))
        start += int(np.prod(shape))
    return rows


def params_of(row: np.ndarray, layout) -> dict:
    """{varname: array} of one weights.npy row, read through its layout."""
    return {name: np.asarray(row[a:b], np.float32).reshape(shape) for name, a, b, shape in layout}


def _conv(x, w, b):
    """Keras Conv2D(strides=2, padding='valid') in NumPy: [N, H, W, C] -> [N, H', W', O]."""
    n, h, wd, c = x.shape
    ho, wo = (h - 3) // 2 + 1, (wd - 3) // 2 + 1
    cols = np.stack([x[:, i:i + 2 * ho - 1:2, j:j + 2 * wo - 1:2, :]
                     for i in range(3) for j in range(3)], axis=3)   # [N, H', W', 9, C]
    return cols.reshape(n, ho, wo, 9 * c) @ w.reshape(9 * c, -1) + b


def reference_logits(params: dict, u: np.ndarray, activation: str) -> np.ndarray:
    """The zoo's Keras CNN in NumPy: images ``u`` f32[N, H, W, C] on [-1, 1] -> logits."""
    act, x = ACTIVATIONS[activation], np.asarray(u, np.float32)
    for layer in LAYERS[:3]:
        x = act(_conv(x, params[f"{layer}/kernel:0"], params[f"{layer}/bias:0"]))
    return x.mean(axis=(1, 2)) @ params[f"{LAYERS[3]}/kernel:0"] + params[f"{LAYERS[3]}/bias:0"]


def _logits_jax(params, u, activation: str):
    """The same network in plain JAX (no Flax), for training."""
    import jax
    import jax.numpy as jnp

    act = {"relu": jax.nn.relu, "tanh": jnp.tanh}[activation]
    for layer in LAYERS[:3]:
        u = act(jax.lax.conv_general_dilated(u, params[f"{layer}/kernel:0"], (2, 2), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
                + params[f"{layer}/bias:0"])
    return u.mean(axis=(1, 2)) @ params[f"{LAYERS[3]}/kernel:0"] + params[f"{LAYERS[3]}/bias:0"]


@functools.cache
def _sgd_step(activation: str):
    import jax
    import jax.numpy as jnp

    def loss(params, u, labels):
        logp = jax.nn.log_softmax(_logits_jax(params, u, activation))
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    @jax.jit
    def step(params, u, labels, lr):
        return jax.tree.map(lambda a, g: a - lr * g, params, jax.grad(loss)(params, u, labels))

    return step


def _train(activation: str, lr: float, x, y, seed: int) -> list[dict]:
    """One network trained by SGD (batch 64, UPDATES_PER_STEP updates per unit of the
    zoo's step); its parameters at each of STEPS."""
    import jax

    step = _sgd_step(activation)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in keras_variables():
        fan_in = int(np.prod(shape[:-1]))   # he_normal kernels, zero biases
        params[name] = ((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
                        if name.endswith("kernel:0") else np.zeros(shape, np.float32))
    batches = rng.integers(len(x), size=(STEPS[-1] * UPDATES_PER_STEP, 64))
    out = []
    for t in range(STEPS[-1] + 1):
        if t in STEPS:
            out.append(jax.tree.map(np.asarray, params))
        for b in batches[t * UPDATES_PER_STEP:(t + 1) * UPDATES_PER_STEP]:
            params = step(params, x[b], y[b], np.float32(lr))
    return out


def _permuted(params: dict, rng) -> dict:
    """The same function with every hidden layer's 16 units permuted."""
    out = dict(params)
    for i in range(3):
        perm = rng.permutation(16)
        layer, nxt = LAYERS[i], LAYERS[i + 1]
        out[f"{layer}/kernel:0"] = out[f"{layer}/kernel:0"][..., perm]
        out[f"{layer}/bias:0"] = out[f"{layer}/bias:0"][perm]
        out[f"{nxt}/kernel:0"] = (out[f"{nxt}/kernel:0"][:, :, perm] if i < 2
                                  else out[f"{nxt}/kernel:0"][perm])
    return out


def _accuracy_and_loss(params, activation, u, y) -> tuple[float, float]:
    z = reference_logits(params, u, activation).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    nll = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1)))
    return float(np.mean(z.argmax(axis=1) == y)), float(nll.mean())


def to_unit_range(x_normalized, mean, std) -> np.ndarray:
    """The library's normalized images back on the zoo's [-1, 1] scale."""
    return (2.0 * (np.asarray(x_normalized, np.float64) * np.asarray(std) + np.asarray(mean))
            - 1.0).astype(np.float32)


def write_zoo(folder: Path, dataset) -> Path:
    """The 200-row zoo in ``folder``; accuracies measured on ``dataset``'s test split."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = np.load(ROOT / "pdiff_jax" / "data" / "bundled" / "mnist.npz")
    x = (raw["x_train"][:4096, ..., None] / 127.5 - 1.0).astype(np.float32)
    y = raw["y_train"][:4096].astype(np.int32)
    u_test = to_unit_range(dataset.x_test, dataset.mean, dataset.std)
    u_train = to_unit_range(dataset.x_train[:500], dataset.mean, dataset.std)
    trained = [_train(act, lr, x, y, seed=i) for i, (act, lr) in enumerate(BASE_RUNS)]
    measured = [[(_accuracy_and_loss(p, act, u_test, dataset.y_test),
                  _accuracy_and_loss(p, act, u_train, dataset.y_train[:500]))
                 for p in checkpoints] for checkpoints, (act, _) in zip(trained, BASE_RUNS,
                                                                        strict=True)]
    layout = layout_rows(keras_variables())
    rng = np.random.default_rng(26)
    weights, metrics = [], []
    for run in range(RUNS):
        base = run % len(BASE_RUNS)
        activation, lr = BASE_RUNS[base]
        perm_rng = np.random.default_rng([run, 1])
        for k, step in enumerate(STEPS):
            params = trained[base][k] if run < len(BASE_RUNS) else _permuted(trained[base][k],
                                                                             perm_rng)
            row = np.concatenate([params[name].reshape(-1) for name, *_ in layout])
            (test_acc, test_loss), (train_acc, train_loss) = measured[base][k]
            if run == NAN_RUN and step == STEPS[-1]:   # a run that diverged at the end
                row[rng.integers(len(row), size=3)] = np.nan
                test_acc = test_loss = train_acc = train_loss = float("nan")
            weights.append(row.astype(np.float32))
            metrics.append({
                "": f"cnn_zoo/run_{run:02d}/permanent_ckpt-{step}",
                "config.activation": activation, "config.b_init": "zeros",
                "config.dataset": "mnist", "config.dnn_architecture": "cnn",
                "config.dropout": 0.0, "config.epochs": 86,
                "config.epochs_between_checkpoints": 20, "config.init_std": 0.05,
                "config.l2reg": 0.0, "config.learning_rate": lr, "config.num_layers": 3,
                "config.num_units": 16, "config.optimizer": "sgd", "config.random_seed": 42,
                "config.train_fraction": 1.0, "config.w_init": "he_normal",
                "modeldir": f"cnn_zoo/run_{run:02d}", "step": step,
                "test_accuracy": test_acc, "test_loss": test_loss,
                "train_accuracy": train_acc, "train_loss": train_loss})
    np.save(folder / "weights.npy", np.stack(weights))
    with open(folder / "layout.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "varname", "start_idx", "end_idx", "size", "shape"])
        for i, (name, a, b, shape) in enumerate(layout):
            w.writerow([i, name, a, b, b - a, str(tuple(shape))])
    with gzip.open(folder / "metrics.csv.gz", "wt", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(metrics[0]))
        w.writeheader()
        w.writerows(metrics)
    return folder


def smoke_dataset(tfds_dir):
    from pdiff_jax.data import load_dataset

    return load_dataset("mnist", data_dir=str(tfds_dir), **SMOKE_DATA)


def main_command(source, workdir, *extra) -> list[str]:
    return [sys.executable, "-m", "pdiff_jax.main", "--config=configs/small_cnn_zoo.py:smoke",
            f"--config.zoo.source={source}", f"--workdir={workdir}", *extra]


def run_env(tfds_dir) -> dict:
    """The environment of a main subprocess or notebook kernel: the tests' TFDS folder (as
    $TFDS_DATA_DIR, so the run's config is the config file's own) and compilation cache."""
    import jax

    env = dict(os.environ, TFDS_DATA_DIR=str(tfds_dir))
    if jax.config.jax_compilation_cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = str(jax.config.jax_compilation_cache_dir)
    return env


@functools.cache
def zoo_folder(root: Path, tfds_dir: Path) -> Path:
    """The 200-row zoo, written once per test process under ``root`` (read-only: tests
    that change files copy it)."""
    return write_zoo(root / "mnist", smoke_dataset(tfds_dir))


@functools.cache
def finished_run(root: Path, tfds_dir: Path) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``(zoo folder, workdir, process)``: :func:`zoo_folder` and one
    ``python -m pdiff_jax.main --config configs/small_cnn_zoo.py:smoke`` run on it (built
    once per test process and root)."""
    folder = zoo_folder(root, tfds_dir)
    workdir = root / "run"
    proc = subprocess.run(main_command(folder, workdir), capture_output=True, text=True,
                          timeout=1200, cwd=ROOT, env=run_env(tfds_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, workdir, proc


@pytest.fixture(scope="session")
def scz():
    """The Small CNN Zoo fixture above: its makers and constants, e.g. ``scz.zoo_folder``."""
    from types import SimpleNamespace

    names = ("ACTIVATIONS", "BASE_RUNS", "LAYERS", "NAN_RUN", "ROOT", "RUNS", "SMOKE_DATA",
             "STEPS", "UPDATES_PER_STEP", "finished_run", "keras_variables", "layout_rows",
             "main_command", "params_of", "reference_logits", "run_env", "smoke_dataset",
             "to_unit_range", "write_zoo", "zoo_folder")
    return SimpleNamespace(**{name: globals()[name] for name in names})
