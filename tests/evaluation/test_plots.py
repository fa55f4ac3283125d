"""The figures (pdiff_jax.evaluation.plots): every plot renders a picture with something
in it, also for tiny groups."""

import numpy as np

from pdiff_jax.evaluation import plots


def assert_nontrivial_png(path):
    import matplotlib.image as mpimg

    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert np.std(img[..., :3]) > 0.02  # not a blank canvas
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20


def test_plots_render(tmp_path, fake_results):
    res, (orig, gen, _) = fake_results()
    (K, D), N_GEN = orig.vectors.shape, len(gen.vectors)
    rng = np.random.default_rng(0)
    lat_o = np.tanh(rng.standard_normal((K, 4, 3)))
    lat_g = np.tanh(rng.standard_normal((N_GEN, 4, 3)))
    steps = np.linspace(1, 0, 15)[None, :, None]
    traj = steps * 5 * rng.standard_normal((4, 1, D)) + (1 - steps) * orig.vectors[:4, None]
    pics = plots.plot_all(res, tmp_path, latents_orig=lat_o, latents_gen=lat_g,
                          trajectories=traj, zoo=orig.vectors, generated=gen.vectors)
    assert set(pics) == {"accuracy", "novelty", "tsne", "trajectories"}
    for p in pics.values():
        assert p.parent == tmp_path
        assert_nontrivial_png(p)


def test_tsne_handles_tiny_groups(tmp_path):
    rng = np.random.default_rng(0)
    p = plots.tsne_latents(tmp_path / "t.png", rng.standard_normal((2, 5)),
                           rng.standard_normal((1, 5)))  # 5 points: perplexity < n
    assert_nontrivial_png(p)
    p = plots.tsne_latents(tmp_path / "t1.png", rng.standard_normal((1, 5)),
                           rng.standard_normal((1, 5)))  # 3 points: PCA fallback
    assert p.exists()
    p = plots.trajectories_2d(tmp_path / "tr.png", rng.standard_normal((2, 6, 5)),
                              rng.standard_normal((1, 5)))  # K = 1
    assert_nontrivial_png(p)
