"""What the evaluation tests share: fake groups of networks (accuracies, wrong answers,
vectors) and the results the report builds from them."""

import numpy as np
import pytest

from pdiff_jax.evaluation import report

N_TEST, K, N_GEN, D = 400, 12, 10, 20


def _fake_groups(seed=0, with_novelty=True):
    rng = np.random.default_rng(seed)
    vec = rng.standard_normal((K, D)).astype(np.float32)

    def group(n, base, noise):
        test = np.clip(base + noise * rng.standard_normal(n), 0, 1)
        train = np.clip(test + 0.1 + 0.01 * rng.standard_normal(n), 0, 1)
        wrong = rng.random((n, N_TEST)) < (1 - test)[:, None]
        vectors = vec[rng.integers(0, K, n)] + 0.1 * rng.standard_normal((n, D))
        if not with_novelty:
            wrong = vectors = None
        return report.Group(train, test, wrong, vectors)

    orig = group(K, 0.767, 0.002)
    if with_novelty:
        orig = orig._replace(vectors=vec)
    gen = group(N_GEN, 0.72, 0.03)
    bases = {name: group(N_GEN, 0.75, 0.01)
             for name in ["noise_0.01", "noise_0.05", "noise_0.1", "average_16", "gaussian"]}
    return orig, gen, bases


def _build(with_novelty=True, **kw):
    orig, gen, bases = _fake_groups(with_novelty=with_novelty)
    ens = {"train_acc": [0.86], "test_acc": [0.766],
           "wrong": orig.wrong[:1] if with_novelty else None}
    meta = {"dataset": "cifar100", "arch": "resnet18", "D": D, "K": K,
            "timings_s": {"ae": 1.5, "diffusion": 2.0}, "config": {"seed": 0, "lr": 1e-3}}
    return report.build_results(orig, gen, ensemble=ens, baselines=bases, meta=meta,
                                acc_unit="fraction", **kw), (orig, gen, bases)


@pytest.fixture(scope="session")
def fake_groups():
    """``fake_groups(seed=0, with_novelty=True) -> (original, generated, baselines)``: groups
    of K = 12 original and N_GEN = 10 generated networks (accuracies as fractions, wrong
    answers on 400 test examples, 20-dimensional vectors) and five baseline groups."""
    return _fake_groups


@pytest.fixture(scope="session")
def fake_results():
    """``fake_results(with_novelty=True, **kw) -> (results, (original, generated, baselines))``:
    ``report.build_results`` on ``fake_groups`` with an ensemble and run metadata."""
    return _build
