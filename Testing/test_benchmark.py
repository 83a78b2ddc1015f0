"""``dmif bench``'s measuring functions run and report what they measured (figures are not asserted)."""

import torch

from DMIFLib.scattering.benchmark import epoch_times, format_table


def test_epoch_times_reports_both_paths_and_their_ratio():
    torch.manual_seed(0)
    result = epoch_times(torch.device("cpu"), n_slices=8, preset="tiny", batch=4, repeats=2)
    assert result["slices"] == 8 and result["on_the_fly_s"] > 0 and result["cache_s"] > 0
    assert result["ratio"] == result["on_the_fly_s"] / result["cache_s"]
    assert result["cache_gb"] > 0 and result["cache_build_s"] > 0
    table = format_table({"device": "cpu", "threads": 1, "torch": torch.__version__, "epoch": result,
                          "scattering": {"ours_images_s": 1.0, "kymatio_images_s": 1.0, "ratio": 1.0,
                                         "max_abs_diff_over_max": 0.0, "ours_build_s": 0.0, "kymatio_build_s": 0.0},
                          "inference": []})
    assert "epoch speed-up" in table and f"{result['ratio']:.1f}×" in table
