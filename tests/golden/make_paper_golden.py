"""Write tests/golden/paper_modules.npz: the authors' PyTorch modules on known weights.

    python tests/golden/make_paper_golden.py /path/to/Neural-Network-Parameter-Diffusion

The argument is a local checkout (branch ``main``) of the authors' code; only
``core/module/modules/encoder.py`` and ``unet.py`` are imported from it, with
torch (CPU). Nothing of their code is copied into this repository.

It builds their ``small`` autoencoder at D = 200, their ``medium`` at D =
1,300 (the smallest sizes that run; ``medium`` exercises the kernel-5 quirks)
and their ``AE_CNN_bottleneck`` denoiser at the small AE's latent size, sets
every weight to a 3-bit level of its PyTorch initialization (``q * scale``,
q an integer in [-3, 3]: exactly representable, and the file stays under 2 MB),
and records eval-mode forwards: encode, decode (of the codes and of random
latents), and the denoiser with a distinct timestep per sample (each sample
run alone, since their forward embeds sample 0's t for the whole batch).
Every forward is recorded in float32 and in float64 (``*_f64``, same weights):
InstanceNorm over a few positions can be ill-conditioned, so float32 runs of
two exact implementations may differ by ~1e-4 on some inputs; float64 runs
agree to ~1e-12 and are what the exactness test compares.
The file stores weights as (q int8 in PyTorch layout, scale f32) per tensor.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("paper_modules.npz")
LEVELS = 3
AE_SMALL_D, AE_MEDIUM_D, BATCH = 200, 1300, 3


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quantize_(model: torch.nn.Module, tag: str, out: dict) -> None:
    """Replace each weight by a 3-bit level of itself; store (q, scale) under tag/name."""
    with torch.no_grad():
        for name, p in model.state_dict().items():
            w = p.numpy().astype(np.float32)
            scale = np.float32(max(np.abs(w).max(), 1e-8) / LEVELS)
            q = np.clip(np.rint(w / scale), -LEVELS, LEVELS).astype(np.int8)
            p.copy_(torch.from_numpy(q.astype(np.float32) * scale))  # same f32 as the test
            out[f"{tag}/q/{name}"] = q
            out[f"{tag}/scale/{name}"] = scale


def run_ae(cls, D: int, tag: str, out: dict, rng) -> tuple[int, int]:
    torch.manual_seed(0)
    ae = cls(D, 0.001, 0.5).eval()
    quantize_(ae, tag, out)
    x = (0.1 * rng.standard_normal((BATCH, D)) + rng.standard_normal(D) * 0.05).astype(np.float32)
    with torch.no_grad():
        z = ae.encode(torch.from_numpy(x))  # [B, C, L]
        z_rand = rng.uniform(-1, 1, tuple(z.shape)).astype(np.float32)
        out[f"{tag}/x"], out[f"{tag}/z_rand"] = x, z_rand
        for suffix, dtype in (("", torch.float32), ("_f64", torch.float64)):
            ae = ae.to(dtype)
            z = ae.encode(torch.from_numpy(x).to(dtype))
            out[f"{tag}/latent{suffix}"] = z.numpy()
            out[f"{tag}/recon{suffix}"] = ae.decode(z).numpy()
            z_in = torch.from_numpy(z_rand).to(dtype)
            out[f"{tag}/decoded_rand{suffix}"] = ae.decode(z_in).numpy()
    out[f"{tag}/D"] = np.int64(D)
    return int(z.shape[1]), int(z.shape[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="local checkout of the authors' code")
    args = parser.parse_args()
    mod_dir = args.checkout / "core" / "module" / "modules"
    enc_lib = load_module(mod_dir / "encoder.py", "their_encoder")
    unet_lib = load_module(mod_dir / "unet.py", "their_unet")
    rng = np.random.default_rng(0)
    out: dict = {}
    C, L = run_ae(enc_lib.small, AE_SMALL_D, "ae_small", out, rng)
    run_ae(enc_lib.medium, AE_MEDIUM_D, "ae_medium", out, rng)

    torch.manual_seed(1)
    den = unet_lib.AE_CNN_bottleneck(in_dim=C * L, in_channel=1).eval()
    quantize_(den, "denoiser", out)
    x = rng.standard_normal((4, C, L)).astype(np.float32)
    t = np.array([0, 417, 998, 53], np.int64)
    out["denoiser/x"], out["denoiser/t"] = x, t
    for suffix, dtype in (("", torch.float32), ("_f64", torch.float64)):
        den = den.to(dtype)
        with torch.no_grad():
            eps = [den(torch.from_numpy(x[i:i + 1]).to(dtype), torch.from_numpy(t[i:i + 1]))
                   for i in range(len(t))]
        out[f"denoiser/eps{suffix}"] = np.concatenate([e.numpy() for e in eps])

    for f in ("encoder.py", "unet.py"):  # provenance: which version of their code
        out[f"source_sha256/{f}"] = np.array(hashlib.sha256((mod_dir / f).read_bytes()).hexdigest())
    out["torch_version"] = np.array(torch.__version__)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, {len(out)} arrays)")


if __name__ == "__main__":
    main()
