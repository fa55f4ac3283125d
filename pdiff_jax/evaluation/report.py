"""Results of an evaluation: one dict, `results.json`, `report.md`, a printed summary.

`build_results` turns the per-model evaluations of every group (zoo, generated,
baselines) into the nested results dict below; `write_results_json`,
`write_report` and `summary_text` render it. All accuracies are test accuracies in
PERCENT unless a key says otherwise.

    {"original": {best, best_index, median, avg, std, worst, n, [best_by_train]},
     "ensemble": {acc, [train_acc], [max_iou]},
     "pdiff": {best, best_train, best_index, avg, median, std, worst, oracle_best, n,
               "novelty": {...}},
     "baselines": {"noise_0.01": {best, ..., "novelty": {...}}, ..., "gaussian": {...}},
     "novelty": {iou_orig_orig, iou_gen_gen, iou_orig_gen, max_iou_gen_mean,
                 max_iou_orig_mean, nn_l2_gen_mean, nn_l2_orig_mean},
     "finetuned": {... as a baseline ...},                  # optional
     "meta": {config, dataset, arch, D, K, timings_s, ...},  # passed through
     "per_model": {"original": {test_acc, train_acc, max_iou, nn_l2},
                   "pdiff": {...}, "baselines": {name: {...}}, "finetuned": {...}}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pdiff_jax import artifacts
from pdiff_jax.evaluation import novelty as nov
from pdiff_jax.evaluation import protocol


class Group(NamedTuple):
    """The evaluation of a group of n models (any of them may be a plain Mapping too).

    train_acc: f32[n] training accuracy (None allowed for the zoo only);
    test_acc: f32[n] test accuracy; wrong: bool[n, N_test] wrong-prediction masks
    (None: no novelty for this group); vectors: f32[n, D] flat parameters (None: no
    parameter-space distances).
    """

    train_acc: Any
    test_acc: Any
    wrong: Any = None
    vectors: Any = None


def _group(g) -> Group:
    if isinstance(g, Group):
        return g
    if isinstance(g, Mapping):
        return Group(g.get("train_acc"), g["test_acc"], g.get("wrong"), g.get("vectors"))
    return Group(*g)


def _group_results(g: Group, orig: Group, unit: str, per: dict) -> dict:
    """Summary (+ novelty against the zoo) of one group; fills per-model arrays in `per`."""
    if g.train_acc is None:
        raise ValueError("generated and baseline groups need train_acc (best is chosen on it)")
    train = protocol.as_percent(g.train_acc, unit)
    test = protocol.as_percent(g.test_acc, unit)
    out = protocol.summarize(train, test)
    per.update(test_acc=test, train_acc=train)
    if g.wrong is not None and orig.wrong is not None:
        m = nov.group_metrics(orig.wrong, g.wrong, orig.vectors, g.vectors)
        out["novelty"] = {k: m[k] for k in ("iou_gen_gen", "iou_orig_gen", "max_iou_gen_mean",
                                            "nn_l2_gen_mean") if k in m}
        per["max_iou"] = m["max_iou_gen"]
        per["max_iou_index"] = m["max_iou_gen_index"]
        if "nn_l2_gen" in m:
            per["nn_l2"] = m["nn_l2_gen"]
            per["nn_l2_index"] = m["nn_l2_gen_index"]
    return out


def build_results(original, pdiff, *, ensemble=None, baselines: Mapping | None = None,
                  finetuned=None, meta: Mapping | None = None,
                  acc_unit: str = "auto") -> dict:
    """Assemble the results dict from the per-model evaluations of every group.

    Args:
      original: Group (or Mapping with the same keys) for the K zoo models:
        test_acc f32[K], optional train_acc f32[K], wrong bool[K, N], vectors f32[K, D].
      pdiff: Group for the n generated models (train_acc required: "best" is the test
        accuracy of the member with the best training accuracy).
      ensemble: the uniform-average model: a Group of one model, or its test accuracy.
      baselines: {name: Group}, e.g. from evaluating `baselines.make_baselines`.
      finetuned: optional Group (zoo nearest neighbours fine-tuned further).
      meta: passed through (config, dataset, arch, D, K, timings_s, ...).
      acc_unit: 'fraction', 'percent' or 'auto' (see `protocol.as_percent`); one unit
        for all groups. Results are in percent.

    Novelty entries appear for a group when it and the zoo both have `wrong`; L2
    distances when both have `vectors`.
    """
    orig = _group(original)
    per: dict[str, Any] = {"original": {}, "pdiff": {}}
    o_test = protocol.as_percent(orig.test_acc, acc_unit)
    o_train = None if orig.train_acc is None else protocol.as_percent(orig.train_acc, acc_unit)
    results: dict[str, Any] = {"original": protocol.original_summary(o_test, o_train)}
    per["original"]["test_acc"] = o_test
    if o_train is not None:
        per["original"]["train_acc"] = o_train

    if ensemble is not None:
        if isinstance(ensemble, (int, float, np.floating, np.integer)):
            ens = {"acc": float(protocol.as_percent([ensemble], acc_unit)[0])}
        else:
            e = _group(ensemble)
            ens = {"acc": float(protocol.as_percent(e.test_acc, acc_unit)[0])}
            if e.train_acc is not None:
                ens["train_acc"] = float(protocol.as_percent(e.train_acc, acc_unit)[0])
            if e.wrong is not None and orig.wrong is not None:
                ens["max_iou"] = float(nov.iou_matrix(e.wrong, orig.wrong).max())
        results["ensemble"] = ens

    gen = _group(pdiff)
    results["pdiff"] = _group_results(gen, orig, acc_unit, per["pdiff"])
    if orig.wrong is not None:
        ref = nov.reference_metrics(orig.wrong, orig.vectors)
        per["original"]["max_iou"] = ref["max_iou_orig"]
        if "nn_l2_orig" in ref:
            per["original"]["nn_l2"] = ref["nn_l2_orig"]
        summary = {k: ref[k] for k in ("iou_orig_orig", "max_iou_orig_mean", "nn_l2_orig_mean")
                   if k in ref}
        summary.update(results["pdiff"].get("novelty", {}))
        results["novelty"] = summary

    if baselines:
        results["baselines"] = {}
        per["baselines"] = {}
        for name, g in baselines.items():
            per["baselines"][name] = {}
            results["baselines"][name] = _group_results(_group(g), orig, acc_unit,
                                                        per["baselines"][name])
    if finetuned is not None:
        per["finetuned"] = {}
        results["finetuned"] = _group_results(_group(finetuned), orig, acc_unit,
                                              per["finetuned"])
    results["meta"] = dict(meta or {})
    results["per_model"] = per
    return results


# ---------------------------------------------------------------------------- json


def to_jsonable(obj):
    """A copy of `obj` made of dicts, lists, str, int, float, bool and None.

    Arrays become lists, NaN/inf become None (strict JSON), Paths become strings,
    config objects with `to_dict` become dicts, anything else its `str`.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__"):
        return to_jsonable(np.asarray(obj).tolist())
    return str(obj)


def write_results_json(results: Mapping, workdir) -> Path:
    """Write `results` (made strict-JSON safe) to workdir/results.json; return the path."""
    path = Path(workdir) / artifacts.RESULTS_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(results), indent=1, allow_nan=False) + "\n")
    return path


# ---------------------------------------------------------------------------- text


def _f(x, fmt: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, fmt)


def _rows(results: Mapping):
    """(label, summary dict) for every group that has best/avg/median, in report order."""
    if "pdiff" in results:
        yield "p-diff", results["pdiff"]
    yield from results.get("baselines", {}).items()
    if "finetuned" in results:
        yield "finetuned", results["finetuned"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


PROTOCOL_TEXT = """\
- **original**: the best test accuracy among the K zoo models (the paper's definition,
  chosen on the test set; "original, best by train" selects the zoo model with the best
  training accuracy instead, the same rule as for p-diff).
- **ensemble**: test accuracy of the uniform average of the K zoo parameter vectors.
- **best** (p-diff and baselines): the test accuracy of the member with the best
  TRAINING accuracy (ties: lowest index). It is never chosen on the test set; the
  original code did that, which reports the maximum of n noisy test accuracies.
  "oracle" shows that test-selected maximum only to expose the difference.
- **avg. / med.**: mean and median test accuracy of all members of the group.
- **Baselines** (memorization checks, after Zeng et al. 2025): `noise_a`: a random zoo
  member plus Gaussian noise of a times each tensor's RMS; `average_k`: the average of
  k distinct random zoo members; `gaussian`: samples of a per-coordinate Gaussian
  fitted to the zoo. They are evaluated exactly like the generated models.
- **IoU** of two models: |wrong(A) & wrong(B)| / |wrong(A) | wrong(B)| over the test set
  (1 when neither makes a mistake). "max IoU (NN)" is each model's highest IoU with any
  zoo model, averaged; a generator that memorizes has values near those of the zoo's
  own nearest neighbours (the "original" row). "NN L2" is the Euclidean distance in
  parameter space to the closest zoo vector.
- All accuracies are in percent."""


AUTOENCODER_KEYS = (
    "input_dim", "rel_recon_error", "latent_dims", "latent_dims_varying",
    "latent_dims_above_noise", "latent_std_max", "latent_std_median", "latent_std_min",
    "recon_test_acc_best", "recon_test_acc_median", "recon_test_acc_min", "warning")


def autoencoder_summary(ae_meta: Mapping) -> dict:
    """The autoencoder artifact's diagnostics that the report shows (those it has)."""
    return {k: ae_meta[k] for k in AUTOENCODER_KEYS if k in ae_meta}


def _autoencoder_lines(ae: Mapping | None) -> list[str]:
    if not ae:
        return []
    lines = ["", "## Autoencoder: latents and reconstructions of the zoo", ""]
    rows = []
    if "recon_test_acc_median" in ae:
        rows.append(["zoo members through the AE, test accuracy best / median / min",
                     " / ".join(_f(ae.get(f"recon_test_acc_{k}")) for k in ("best", "median",
                                                                           "min"))])
    if "latent_dims" in ae:
        rows.append(["latent dimensions: varying (std > 0.01) / above the latent noise / all",
                     f"{ae.get('latent_dims_varying', '-')} / "
                     f"{ae.get('latent_dims_above_noise', '-')} / {ae['latent_dims']}"])
        rows.append(["per-dimension std across the zoo: max / median / min",
                     " / ".join(_f(ae.get(f"latent_std_{k}"), ".3g") for k in ("max", "median",
                                                                              "min"))])
    if "rel_recon_error" in ae:
        rows.append(["relative reconstruction error (L2 of the difference / L2 of the zoo)",
                     _f(ae["rel_recon_error"], ".4g")])
    if "input_dim" in ae:
        rows.append(["numbers the AE sees per network", str(ae["input_dim"])])
    warning = [f"**Warning.** {ae['warning']}", ""] if ae.get("warning") else []
    return lines + warning + _table(["what", "value"], rows)


def append_section(workdir, lines: list[str]) -> Path:
    """Append a section (``lines``, the last one empty) to ``workdir/report.md``."""
    with (path := Path(workdir) / artifacts.REPORT_MD).open("a") as f:
        f.write("\n" + "\n".join(lines))
    return path


def write_report(results: Mapping, workdir, pictures: Mapping[str, Path] | None = None
                 ) -> Path:
    """Write workdir/report.md (tables in the paper's format, figures, protocol).

    Any section whose data is absent from `results` is left out. `pictures` maps a
    caption to an image path; links are written relative to workdir.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    meta = results.get("meta", {}) or {}
    o = results.get("original", {})
    p = results.get("pdiff", {})
    lines = ["# p-diff evaluation", ""]
    info = [f"{k}: {meta[k]}" for k in ("dataset", "arch", "D", "K") if k in meta]
    if info:
        lines += ["; ".join(info), ""]
    if meta.get("batch_stats", "as stored") != "as stored":
        lines += [f"BatchNorm statistics of every evaluated network: {meta['batch_stats']} "
                  "(`evaluate.recompute_batch_stats`), not the stored or generated ones.", ""]

    lines += ["## Headline (paper Tab. 1 format, test accuracy %)", ""]
    lines += _table(
        ["dataset", "architecture", "original", "ensemble", "p-diff best", "p-diff avg.",
         "p-diff med.", "parameter number"],
        [[str(meta.get("dataset", "-")), str(meta.get("arch", "-")), _f(o.get("best")),
          _f(results.get("ensemble", {}).get("acc")), _f(p.get("best")), _f(p.get("avg")),
          _f(p.get("median")), str(meta.get("D", "-"))]])

    lines += ["", "## Best / average / median by group (test accuracy %)", ""]
    rows = []
    if o:
        rows.append(["original models (best by test, as the paper)", _f(o.get("best")),
                     _f(o.get("avg")), _f(o.get("median")), "-", str(o.get("n", "-"))])
        if "best_by_train" in o:
            rows.append(["original models (best by train)", _f(o["best_by_train"]),
                         _f(o.get("avg")), _f(o.get("median")), "-", str(o.get("n", "-"))])
    if "ensemble" in results:
        acc = _f(results["ensemble"].get("acc"))
        rows.append(["ensemble (weight average)", acc, acc, acc, "-", "1"])
    for label, r in _rows(results):
        rows.append([label, _f(r.get("best")), _f(r.get("avg")), _f(r.get("median")),
                     _f(r.get("oracle_best")), str(r.get("n", "-"))])
    lines += _table(["method", "best", "avg.", "med.", "oracle (test-selected)", "n"], rows)

    n = results.get("novelty")
    if n:
        lines += ["", "## Novelty: similarity of wrong predictions (paper Fig. 3f)", ""]
        lines += _table(["comparison", "mean IoU"], [
            ["original - original", _f(n.get("iou_orig_orig"), ".3f")],
            ["p-diff - p-diff", _f(n.get("iou_gen_gen"), ".3f")],
            ["original - p-diff", _f(n.get("iou_orig_gen"), ".3f")],
            ["max (nearest neighbour) original - p-diff", _f(n.get("max_iou_gen_mean"), ".3f")],
        ])
        lines += ["", "Per group, against the zoo:", ""]
        grows = [["original (to another original)", _f(n.get("iou_orig_orig"), ".3f"), "-",
                  _f(n.get("max_iou_orig_mean"), ".3f"), _f(n.get("nn_l2_orig_mean"), ".4g")]]
        for label, r in _rows(results):
            g = r.get("novelty")
            if g:
                grows.append([label, _f(g.get("iou_gen_gen"), ".3f"),
                              _f(g.get("iou_orig_gen"), ".3f"),
                              _f(g.get("max_iou_gen_mean"), ".3f"),
                              _f(g.get("nn_l2_gen_mean"), ".4g")])
        if results.get("ensemble", {}).get("max_iou") is not None:
            grows.append(["ensemble", "-", "-", _f(results["ensemble"]["max_iou"], ".3f"), "-"])
        lines += _table(["group", "IoU within group", "IoU with originals",
                         "max IoU with originals (NN)", "NN L2 to originals"], grows)

    lines += _autoencoder_lines(results.get("autoencoder"))
    if pictures:
        lines += ["", "## Figures", ""]
        for caption, path in pictures.items():
            rel = os.path.relpath(Path(path).resolve(), workdir.resolve())
            lines += [f"![{caption}]({Path(rel).as_posix()})", f"*{caption}*", ""]

    lines += ["", "## Protocol", "", PROTOCOL_TEXT]
    timings = meta.get("timings_s")
    if timings:
        lines += ["", "## Timings (s)", ""]
        lines += _table(["stage", "seconds"],
                        [[str(k), _f(v, ".1f")] for k, v in timings.items()])
    if "config" in meta:
        cfg = json.dumps(to_jsonable(meta["config"]), indent=1)
        lines += ["", "## Config", "", "```json", cfg, "```"]
    path = workdir / artifacts.REPORT_MD
    path.write_text("\n".join(lines) + "\n")
    return path


def summary_text(results: Mapping) -> str:
    """A one-screen plain-text summary of `results` (printed at the end of a run)."""
    meta = results.get("meta", {}) or {}
    o, p = results.get("original", {}), results.get("pdiff", {})
    head = " ".join(f"{k}={meta[k]}" for k in ("dataset", "arch", "D", "K") if k in meta)
    out = [f"p-diff evaluation {head}".rstrip()]
    out.append(f"original {_f(o.get('best'))} | ensemble "
               f"{_f(results.get('ensemble', {}).get('acc'))} | p-diff best {_f(p.get('best'))}"
               f" (avg {_f(p.get('avg'))}, median {_f(p.get('median'))}, n={p.get('n', '-')};"
               " best chosen by training accuracy)")
    if "best_by_train" in o:
        out.append(f"original best by train {_f(o['best_by_train'])}, avg {_f(o.get('avg'))},"
                   f" median {_f(o.get('median'))}, K={o.get('n')}")
    out.append(f"{'group':<14} {'best':>7} {'avg':>7} {'median':>7} {'maxIoU':>7} {'NN-L2':>9}")
    for label, r in _rows(results):
        g = r.get("novelty", {})
        out.append(f"{label:<14} {_f(r.get('best')):>7} {_f(r.get('avg')):>7} "
                   f"{_f(r.get('median')):>7} {_f(g.get('max_iou_gen_mean'), '.3f'):>7} "
                   f"{_f(g.get('nn_l2_gen_mean'), '.4g'):>9}")
    ae = results.get("autoencoder") or {}
    if "recon_test_acc_median" in ae:
        out.append(f"zoo through the AE: best {_f(ae['recon_test_acc_best'])}, median "
                   f"{_f(ae['recon_test_acc_median'])}, min {_f(ae['recon_test_acc_min'])}; "
                   f"latent dims varying {ae.get('latent_dims_varying', '-')} of "
                   f"{ae.get('latent_dims', '-')}")
    out += [f"WARNING: {ae['warning']}"] if ae.get("warning") else []   # the AE lost the zoo
    n = results.get("novelty")
    if n:
        out.append(f"IoU orig-orig {_f(n.get('iou_orig_orig'), '.3f')}, gen-gen "
                   f"{_f(n.get('iou_gen_gen'), '.3f')}, orig-gen "
                   f"{_f(n.get('iou_orig_gen'), '.3f')}, NN max IoU gen "
                   f"{_f(n.get('max_iou_gen_mean'), '.3f')} (orig-to-orig "
                   f"{_f(n.get('max_iou_orig_mean'), '.3f')}); NN L2 gen "
                   f"{_f(n.get('nn_l2_gen_mean'), '.4g')} (orig-to-orig "
                   f"{_f(n.get('nn_l2_orig_mean'), '.4g')})")
    return "\n".join(out)
