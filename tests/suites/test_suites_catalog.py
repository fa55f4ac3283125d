"""The suites (pdiff_jax.suites.catalog): the paper's ablation rows and paper_vs_ours as
valid overrides of their configs, layer-depth selectors, and runs grouped by factor."""

from pathlib import Path

import pytest

from pdiff_jax.config.check import validate_config
from pdiff_jax.config.defaults import get_config
from pdiff_jax.suites import catalog as suites

ROOT = Path(__file__).resolve().parents[2]


def test_new_rows_and_paper_vs_ours_are_valid_overrides_of_their_configs(sweep):
    runs = suites.ablations()
    assert runs["no_ae"] == {f"{suites.AE}.kind": "identity"}
    assert runs["ae_vae"] == {f"{suites.AE}.kind": "vae"}
    assert {runs[n][f"{suites.DENOISER}.kind"] for n in ("latent_gaussian", "latent_kde")} \
        == {"gaussian", "kde"}
    for name in ("ae_vae", "no_ae", "latent_gaussian", "latent_kde"):
        validate_config(sweep.check_overrides(get_config("smoke"), name, runs[name]))
    for spec, size in (("configs/default.py", "small"), ("configs/mlp3.py", "medium")):
        _, _, _, config = sweep.load_config(str(ROOT / spec))
        pair = suites.paper_vs_ours(arch=config.model.name, mode=config.zoo.mode)
        assert pair["ours"] == {} and pair["paper"][f"{suites.AE}.size"] == size
        paper = sweep.check_overrides(config, "paper", pair["paper"])
        assert paper.generator.autoencoder.model.kind == "paper"
        assert paper.generator.diffusion.train.learning_rate == 1e-3
        # The suite's row is configs/paper.py's generator at the base config's step counts.
        arg = "" if size == "small" else "mlp3"
        reference = sweep.load_config(str(ROOT / f"configs/paper.py:{arg}"))[3].generator
        for stage in ("autoencoder", "diffusion"):
            assert paper.generator[stage].train.steps == config.generator[stage].train.steps
            reference[stage].train.steps = config.generator[stage].train.steps
        assert paper.generator.to_dict() == reference.to_dict()


def test_ablations_cover_the_paper_rows_and_every_override_is_valid(sweep):
    runs = suites.ablations(arch="cnn_bn", mode="subset")
    assert runs["default"] == {}
    assert {runs[f"k{k}"]["zoo.num_models"] for k in (1, 10, 50, 500)} == {1, 10, 50, 500}
    assert {runs[n][f"{suites.AE}.norm"] for n in ("norm_group", "norm_batch", "norm_none")} \
        == {"group", "batch", "none"}
    assert runs["ae_fc"] == {f"{suites.AE}.kind": "fc"}
    assert {"layers_early", "layers_middle", "t100", "t500", "ddim50", "noise_none"} <= set(runs)
    for name, overrides in runs.items():
        sweep.check_overrides(get_config(), name, overrides)
    # Seed zoos have no subset to move: no layer rows.
    assert not any(n.startswith("layers_") for n in suites.ablations(arch="cnn_bn", mode="seed"))


@pytest.mark.parametrize("arch, sizes", [("cnn_bn", {"early": 96, "middle": 192, "late": 256}),
                                         ("resnet18", {"early": 512, "middle": 1024,
                                                       "late": 2048})])
def test_layer_depth_selectors_pick_bn_layers_of_the_architecture(arch, sizes):
    import jax

    from pdiff_jax.models import get_model
    from pdiff_jax.params.subset import ParamSpec

    kwargs = {"stem": "cifar"} if arch == "resnet18" else {}
    shape = (32, 32, 3) if arch == "resnet18" else (28, 28, 1)
    model = get_model(arch, num_classes=10, input_shape=shape, **kwargs)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0)))
    for depth, pattern in suites.LAYER_DEPTH[arch].items():
        spec = ParamSpec.from_variables(variables, pattern)
        assert spec.size == sizes[depth], depth
        assert all("bn" in n and n.endswith(("scale", "bias")) for n in spec.names)
    late = ParamSpec.from_variables(variables, model)   # the default subset is 'late'
    assert late.names == ParamSpec.from_variables(variables,
                                                  suites.LAYER_DEPTH[arch]["late"]).names


def test_factors_group_runs_by_swept_keys_with_the_reference_in_each():
    runs = {"default": {}, "k1": {"zoo.num_models": 1}, "k10": {"zoo.num_models": 10},
            "n_in": {"a.input_noise": 0.0, "a.latent_noise": 0.1},
            "n_none": {"a.latent_noise": 0.0, "a.input_noise": 0.0}}
    assert suites.factors(runs) == {"num_models": ["default", "k1", "k10"],
                                    "input_noise+latent_noise": ["default", "n_in", "n_none"]}
    assert suites.factor_keys(runs)["num_models"] == ("zoo.num_models",)
