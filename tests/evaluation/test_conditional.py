"""The per-level report of accuracy-conditioned generation
(pdiff_jax.evaluation.conditional): what lands inside each level, its report section and
plot."""

import pytest

from pdiff_jax.evaluation import conditional as cond_report


def test_level_report_counts_what_lands_inside():
    s = cond_report.level_summary([1, 2, 3, 4], [80.0, 86.0, 88.0, 91.0], 85, 90, last=False)
    assert s["fraction_inside"] == 0.5 and s["median_inside"] and s["median_miss"] == 0.0
    assert s["best"] == 91.0   # chosen by training accuracy, not test
    miss = cond_report.level_summary([1, 1], [70.0, 72.0], 85, 90, last=False)
    assert not miss["median_inside"] and miss["median_miss"] == pytest.approx(14.0)
    assert cond_report.inside([95.0], 92, 95, last=True)[0]
    assert not cond_report.inside([95.0], 92, 95, last=False)[0]


def test_report_section_and_plot(tmp_path):
    levels = [{"level": i, "range": [lo, hi], "members": 3,
               "generated": cond_report.level_summary([1, 2], g, lo, hi, i == 1),
               "generated_test_acc": g, "zoo": cond_report.level_summary([1], [lo], lo, hi,
                                                                         i == 1),
               "zoo_test_acc": [lo]}
              for i, (lo, hi, g) in enumerate([(70, 80, [72.0, 75.0]), (80, 90, [70.0, 85.0])])]
    results = {"conditional": {"kind": "level", "on": "test", "guidance_scale": 1.0,
                               "noise_amplitude": 0.1, "target_fraction": 0.8,
                               "all_levels_met": False, "levels": levels}}
    (tmp_path / "report.md").write_text("# p-diff evaluation\n")
    cond_report.append_to_report(results, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| 1 | 80-90 | generated | 2 | 85.00 | 77.50 | 77.50 | 50 % |" in text
    assert "**NOT met**" in text and (tmp_path / "conditional_levels.png").stat().st_size > 0
