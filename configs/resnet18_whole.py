"""Whole ResNet-18 generation (issue 27): the size ladder's ResNet rung, widened to 11M.

Every variable of a ResNet-18 (CIFAR stem, 32x32x3 bundled MNIST, 10 classes) is
generated, BatchNorm statistics included, from a zoo of K independently seeded
networks aligned with merge_many (the ResNet permutation spec), by the entire-network
generator (principal coordinates, FC autoencoder, latent DDPM); every evaluated
network's BatchNorm statistics are recomputed from 1,000 training images first, and the
evaluate stage computes the accuracy-novelty frontier (``evaluate.frontier``).

    variant  width  numbers (D)  K    images/net  p-diff draws  where
    :w8      8        177,602    200  3,200       100           a CPU (~1 h on 2 cores)
    :w16     16       703,866    200  9,600       100           one GPU
    :w32     32     2,802,410    100  9,600       100           one GPU
    :w64     64    11,183,562     50  9,600        50           one GPU (the real ResNet-18)

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
    python -m pdiff_jax.main --config configs/resnet18_whole.py:w8 --workdir runs/r18-w8
    bash benchmarks/resnet18_whole.sh                 # on a GPU: :w64, one table

(No width: :w64.)

``:w8`` is configs/size_ladder.py:resnet18_w8 exactly (tests/test_resnet18_whole.py
compares them; the ladder recomputes statistics, as configs/convnet3.py does for every
whole BatchNorm network): the run of benchmarks/ENTIRE_NETWORKS.md §8 (zoo 95.15 / 93.25,
p-diff 94.75 / 92.60 best / median).

The wider variants start from it and change only what one GPU needs; none is measured
yet (no GPU was at hand: README, "On one GPU"). The aim is collect + generator +
evaluate within 10 minutes of one H100/H200 for :w64 at K = 50. Reasoning, from the
one GPU measurement there is (../shared/GPU_NOTES.md, BENCHMARKS.md §9: a width-64
ResNet-18 step of 128 images took 2.7 ms in bf16 with the data on the device, 7.8 ms
from the host pipeline; the generator ran ~1,000 steps per second; a first compile
8-16 s):

* one network per step (``zoo.models_per_step = 1``): only that path keeps the training
  set on the device and runs 100 optimizer steps per device call; the stacked trainers
  ('unrolled', 'vmap') draw every batch on the host, the bound measured there. bf16
  compute with float32 parameters (``zoo.precision``): half the step time there; not yet
  checked for accuracy on a seed zoo (the run's table says, as zoo best / median);
* 9,600 images per network, one pass at batch 32 (300 steps, configs/convnet3.py:mnist's
  seed recipe; the width-8 rung saw 3,200 only for the CPU's sake): at ~2 ms a step,
  ~0.6 s a network of width 64 plus one compile; K = 200 / 100 / 50 keeps the zoo
  (K x D float32: 0.56 / 1.1 / 2.2 GB) and its training (~1-2 min) small;
* merge_many runs on the host CPU, one weight matching per member and pass: on this
  2-core machine 26.7 s per member at width 64 and 0.59 s at width 16 (random members,
  RESNET_ALIGNMENT.md; a width-64 matching took 5.4 s here, 1.4 s of it linear
  assignments, most of the rest single-threaded float64 products). At K = 50 that is
  ~20 minutes here: on the device's host the largest unknown of the whole run, and the
  likeliest to break the 10 minutes, which is why K stops at 50 (the table reports it as
  'align'); if it does, the levers are the alignment's passes or
  ``zoo.align = 'weight_matching'`` (one matching per member);
* the principal basis is implicit (``generator.normalization.basis = 'implicit'``,
  generator/implicit_basis.py): K x K coefficients instead of a float32 copy of the
  zoo's size (2.2 GB at :w64; fitting it no longer holds float64 copies of the zoo);
* evaluation: 31 groups of n parameter sets (p-diff, 5 baselines, the frontier's 25
  points) plus the zoo, each network on 2,000 + 2,000 images with statistics recomputed
  from 1,000 (twice): ~1,600 networks at :w64 with n = 50 (~7 TFLOP each: a few
  minutes), plus the frontier's fine-tuned members (n x 100 steps), so the draws per
  group halve there (``evaluate.num_generated`` and ``num_baseline`` 50).

``smoke`` (any width): the same recipe at toy sizes on width 8 (K = 4, 4 draws a group,
statistics from 250 images), for a CPU in minutes (benchmarks/resnet18_whole.sh
--cpu-smoke; tests/test_resnet18_whole.py): the code path, not a result.
"""

from pathlib import Path

from pdiff_jax.config.defaults import config_file, shrink_for_smoke

# width -> (K, training images per network, p-diff draws = draws per baseline)
GPU_RUNGS = {16: (200, 9600, 100), 32: (100, 9600, 100), 64: (50, 9600, 50)}
WIDTHS = (8, *GPU_RUNGS)


def get_config(arg=None):
    args = set((arg or "").split(",")) - {""}
    widths = {a for a in args if a in {f"w{w}" for w in WIDTHS}} or {"w64"}
    unknown = args - widths - {"smoke"}
    if len(widths) != 1 or unknown:
        raise ValueError(f"configs/resnet18_whole.py takes one width of "
                         f"{', '.join(f'w{w}' for w in WIDTHS)} (default w64) and optionally "
                         f"smoke, got {sorted(args)}; e.g. --config configs/resnet18_whole.py:w32")
    width = int(widths.pop()[1:])
    config = config_file(Path(__file__).with_name("size_ladder.py"), "resnet18_w8")
    if width in GPU_RUNGS:
        num_models, images, draws = GPU_RUNGS[width]
        config.model.kwargs.width = width
        config.data.max_train = images
        config.zoo.update(num_models=num_models, models_per_step=1, precision="bf16")
        config.generator.normalization.basis = "implicit"
        config.evaluate.update(num_generated=draws, num_baseline=draws)
    if "smoke" in args:   # the evaluation is most of a smoke run: fewer draws
        shrink_for_smoke(config)   # (and statistics from 250 images)
        config.model.kwargs.width = 8
        config.zoo.num_models = 4
        config.evaluate.update(num_generated=4, num_baseline=4)
    return config
