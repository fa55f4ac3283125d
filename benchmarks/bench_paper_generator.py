"""Step times of the paper's generator (ported) beside ours, same machine, same run.

    python benchmarks/bench_paper_generator.py                       # D = 2,048 and 10,000
    python benchmarks/bench_paper_generator.py --dims 2048 --repeats 5 --variants paper,ours

Variants: ``ours`` (default config: folded conv AE + UNet-1D), ``paper`` (the
authors' ``medium`` AE + AE_CNN_bottleneck, kind='paper', with the sub-pixel /
patch layers), ``paper_reference`` (the same port with its ConvTranspose and
strided convs written as plain ``lax.conv_transpose`` / strided
``lax.conv_general_dilated``: same maths, the layers a direct port would use;
the pre-padding of TorchConv1D stays in, without it one layer alone takes ~19 s).
Each (variant, D) runs in a fresh subprocess on a synthetic zoo of K = batch
vectors and reports the median AE train step, the median diffusion train step
(on that AE's latents) after one warm-up call, and the process's peak RSS.
Prints a markdown table with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_generator
from _common import load, machine_info

from pdiff_jax.generator import default_generator_config, paper_modules

VARIANTS = ("ours", "paper", "paper_reference")


class ReferenceConvTranspose1D(nn.Module):
    """ConvTranspose1d as lax.conv_transpose (same params as SubPixelConvTranspose1D)."""

    features: int
    kernel_size: int
    stride: int

    @nn.compact
    def __call__(self, x):
        k, s = self.kernel_size, self.stride
        fan_in = self.features * k
        kernel = self.param("kernel", paper_modules.torch_uniform(fan_in),
                            (k, x.shape[-1], self.features))
        bias = self.param("bias", paper_modules.torch_uniform(fan_in), (self.features,))
        y = jax.lax.conv_transpose(x, kernel[::-1], (s,), ((k - 1, k - 1),),
                                   dimension_numbers=("NWC", "WIO", "NWC"))
        return y + bias


class ReferencePatchConv1D(nn.Module):
    """Conv1d with stride == kernel as a strided lax conv (same params as PatchConv1D)."""

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        fan_in = x.shape[-1] * k
        kernel = self.param("kernel", paper_modules.torch_uniform(fan_in),
                            (k, x.shape[-1], self.features))
        bias = self.param("bias", paper_modules.torch_uniform(fan_in), (self.features,))
        y = jax.lax.conv_general_dilated(x, kernel, (k,), "VALID",
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        return y + bias


def config_for(variant: str):
    cfg = default_generator_config()
    if variant.startswith("paper"):
        cfg.autoencoder.model.kind = "paper"
        cfg.autoencoder.model.size = "medium"
        cfg.diffusion.model.kind = "paper"
    if variant == "paper_reference":  # setup() looks the layer classes up at build time
        paper_modules.SubPixelConvTranspose1D = ReferenceConvTranspose1D
        paper_modules.PatchConv1D = ReferencePatchConv1D
    return cfg


def step_times(variant: str, D: int, batch: int, repeats: int) -> dict:
    r = bench_generator.step_times(D, batch, repeats, cfg=config_for(variant))
    return dict(r, variant=variant, load=load(),
                peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def in_child(variant: str, D: int, batch: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", f"{variant},{D},{batch},{repeats}"],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        return {"variant": variant, "D": D, "batch": batch,
                "error": f"exit {out.returncode}: " + (out.stderr or out.stdout)[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", default="2048,10000")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--reference-dims", default="2048",
                   help="dims at which paper_reference runs (it is slow)")
    p.add_argument("--child", default="")
    args = p.parse_args()
    if args.child:
        variant, D, batch, repeats = args.child.split(",")
        print(json.dumps(step_times(variant, int(D), int(batch), int(repeats))))
        return
    print(f"machine: {machine_info()}; load at start {load()}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}\n")
    print("| D | generator | latent | AE params | denoiser params | AE step (s) "
          "| diffusion step (s) | peak RSS (GB) | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    ref_dims = {int(d) for d in args.reference_dims.split(",") if d}
    for D in (int(d) for d in args.dims.split(",")):
        for variant in args.variants.split(","):
            if variant == "paper_reference" and D not in ref_dims:
                continue
            r = in_child(variant, D, args.batch, args.repeats)
            if "error" in r:
                print(f"| {D:,} | {variant} | error: {r['error'][-120:]!r} |")
                continue
            print(f"| {D:,} | {variant} | {'x'.join(map(str, r['latent']))} "
                  f"| {r['ae_params']:,} | {r['denoiser_params']:,} | {r['ae_step_s']:.3f} "
                  f"| {r['diff_step_s']:.4f} | {r['peak_rss_gb']:.2f} | {r['load']} |",
                  flush=True)


if __name__ == "__main__":
    main()
