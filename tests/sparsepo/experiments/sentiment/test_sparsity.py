"""Figure 3's summary: start/end sparsity per (method, beta, seed) and the paper's two readings per seed."""

import numpy as np
import pandas as pd

from sparsepo.experiments.sentiment.sparsity import sparsity_findings, sparsity_summary


def _curves(falls: dict[tuple[float, int], bool], kl_end: dict[tuple[float, int], float]) -> pd.DataFrame:
    rows = []
    for (beta, seed), fall in falls.items():
        for step in range(1, 9):
            reward = 60.0 - (5 * step if fall else -step)
            kl = 40.0 + (kl_end[(beta, seed)] - 40.0) * step / 8
            rows.append({"method": "sparsepo", "beta": beta, "seed": seed, "step": step,
                         "sparsity/reward/chosen": reward, "sparsity/kl/chosen": kl})
            rows.append({"method": "dpo", "beta": beta, "seed": seed, "step": step,
                         "sparsity/reward/chosen": np.nan, "sparsity/kl/chosen": np.nan})
            rows.append({"method": "mapo", "beta": beta, "seed": seed, "step": step,  # activation masks: left out
                         "sparsity/reward/chosen": 0.0, "sparsity/kl/chosen": 0.0})
    return pd.DataFrame(rows)


def test_summary_start_is_the_first_step_and_end_the_last_quarter_mean():
    df = _curves({(0.1, 0): True, (0.5, 0): True}, {(0.1, 0): 20.0, (0.5, 0): 70.0})
    s = sparsity_summary(df)
    assert list(s["method"].unique()) == ["sparsepo"]  # methods without learned masks have no row
    row = s[(s["beta"] == 0.1)].iloc[0]
    assert row["reward_start"] == 55.0 and row["reward_end"] == np.mean([60 - 5 * 7, 60 - 5 * 8])
    assert row["kl_start"] == 40 + (20 - 40) / 8 and row["kl_end"] == np.mean([40 + (20 - 40) * k / 8 for k in (7, 8)])


def test_findings_count_the_seeds_on_which_each_reading_holds():
    falls = {(0.1, 0): True, (0.5, 0): True, (0.1, 1): True, (0.5, 1): False}
    kl_end = {(0.1, 0): 20.0, (0.5, 0): 70.0, (0.1, 1): 50.0, (0.5, 1): 30.0}
    lines = sparsity_findings(sparsity_summary(_curves(falls, kl_end)))
    assert "falls during training in 3 of 4 runs" in lines[0]
    assert "holds on 1 of 2 seeds" in lines[1]
    kl_end[(0.5, 1)] = 60.0
    assert "holds on every seed" in sparsity_findings(sparsity_summary(_curves(falls, kl_end)))[1]
