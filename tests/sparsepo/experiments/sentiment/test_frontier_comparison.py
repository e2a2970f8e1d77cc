"""Matched-KL comparison, front areas and the paired test against the reference, on hand-made points."""

import numpy as np
import pandas as pd
import pytest

from sparsepo.eval.stats import paired_bootstrap_test
from sparsepo.experiments.sentiment.comparison import (
    conclusions,
    front_areas,
    gain_over_reference,
    kl_budgets,
    matched_kl,
    verdict,
)
from sparsepo.experiments.sentiment.points import REFERENCE, points_with_cis
from sparsepo.pareto import best_within, front_area

N = 200


def hand_made():
    """Reference 0.5; DPO reaches 0.6 at KL 2 and 0.8 at KL 6; SparsePO 0.7 at KL 2 and 0.75 at KL 5."""
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.1, N)  # shared per-prompt difficulty: the paired test should see through it
    spec = [(REFERENCE, np.nan, 0, 0.5, 0.0), ("dpo", 0.1, 10, 0.6, 2.0), ("dpo", 0.1, 20, 0.8, 6.0),
            ("sparsepo", 0.1, 10, 0.7, 2.0), ("sparsepo", 0.1, 20, 0.75, 5.0)]
    rows = []
    for method, beta, step, reward, kl in spec:
        own = rng.normal(0, 0.02, N)
        for i in range(N):
            rows.append({"method": method, "beta": beta, "step": step, "prompt_id": i, "reward": reward + noise[i] + own[i],
                         "kl": kl + (0.1 * own[i] if kl else 0.0), "kl_mc": kl})
    per_prompt = pd.DataFrame(rows)
    return points_with_cis(per_prompt, n_resamples=300), per_prompt


def test_best_within_and_front_area_by_hand():
    df = pd.DataFrame({"method": ["a", "a", "b"], "kl": [1.0, 3.0, 2.0], "reward": [0.6, 0.9, 0.7]})
    best = best_within(df, [1.5, 2.5, 10])
    assert best[["budget", "method", "reward"]].values.tolist() == [[1.5, "a", 0.6], [2.5, "a", 0.6], [2.5, "b", 0.7],
                                                                     [10.0, "a", 0.9], [10.0, "b", 0.7]]
    # Step function above 0.5: 0.1 on [1, 3), 0.4 on [3, 4].
    assert front_area(df[df["method"] == "a"], 4.0, 0.5) == pytest.approx(0.1 * 2 + 0.4 * 1)
    assert front_area(df[df["method"] == "a"], 2.0, 0.5) == pytest.approx(0.1)


def test_matched_kl_compares_best_points_within_each_budget_with_a_paired_test():
    points, per_prompt = hand_made()
    table = matched_kl(points, per_prompt, [2.5, 6.5], n_resamples=300)
    sp = table[table["method"] == "sparsepo"].set_index("budget")
    assert sp.loc[2.5, "step"] == 10 and sp.loc[2.5, "vs_step"] == 10  # both best points at KL ~2
    assert sp.loc[6.5, "step"] == 20 and sp.loc[6.5, "vs_step"] == 20
    assert sp.loc[2.5, "delta"] == pytest.approx(0.1, abs=0.01) and sp.loc[2.5, "p_value"] < 0.01
    assert sp.loc[6.5, "delta"] == pytest.approx(-0.05, abs=0.01) and sp.loc[6.5, "p_value"] > 0.99
    # The same test computed directly on the two points' per-prompt rewards.
    a = per_prompt[(per_prompt["method"] == "sparsepo") & (per_prompt["step"] == 10)]["reward"].to_numpy()
    b = per_prompt[(per_prompt["method"] == "dpo") & (per_prompt["step"] == 10)]["reward"].to_numpy()
    direct = paired_bootstrap_test(a, b, n_resamples=300)
    assert (sp.loc[2.5, "delta_low"], sp.loc[2.5, "delta_high"]) == pytest.approx((direct.ci_low, direct.ci_high))
    assert table[table["method"] == "dpo"]["delta"].isna().all()  # the baseline is not tested against itself


def test_gain_areas_budgets_and_plain_words():
    points, per_prompt = hand_made()
    gain = gain_over_reference(points, per_prompt, n_resamples=300)
    assert gain["best"]["method"] == "dpo" and gain["gain"] == pytest.approx(0.3, abs=0.01)
    assert not gain["cis_overlap"] and gain["p_value"] == 0.0
    areas = front_areas(points, 6.0).set_index("method")["area"]
    assert areas["dpo"] == pytest.approx(0.1 * 4, abs=0.02)  # 0.6 - 0.5 over KL [2, 6); the 0.8 point sits at 6
    assert areas["sparsepo"] == pytest.approx(0.2 * 3 + 0.25 * 1, abs=0.02)
    assert kl_budgets(points, (3.0, 1.0)) == [1.0, 3.0]
    assert kl_budgets(points)[-1] == pytest.approx(points["kl"].max())
    matched = matched_kl(points, per_prompt, [2.5, 6.5], n_resamples=300)
    text = " ".join(conclusions(gain, matched, front_areas(points, 6.0)))
    assert "is shown at the +0.15 level" in text and "non-overlapping" in text
    assert "KL <= 2.5 nats, sparsepo's best reward 0.69" in text and "sparsepo is clearly better" in text
    assert "sparsepo is significantly worse" in text  # at KL <= 6.5 DPO's 0.8 point wins
    assert verdict(0.5, -0.1, 0.1).startswith("not distinguishable")
    assert verdict(0.02, 0.01, 0.2).startswith("significantly better")
    # one-sided p < 0.05 but the two-sided 95% CI contains 0: the words must not call it better
    assert verdict(0.036, -0.002, 0.071).startswith("not distinguishable")
    assert verdict(0.001, 0.05, 0.2).startswith("clearly better")
    assert verdict(0.99, -0.2, -0.01).startswith("significantly worse")
    assert verdict(1.0, 0.0, 0.0).startswith("not distinguishable")  # identical points: p = 1, yet not worse
