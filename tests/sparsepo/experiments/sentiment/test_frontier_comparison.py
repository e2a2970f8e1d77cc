"""Matched-KL comparison, front areas and the paired test against the reference, on hand-made points."""

import numpy as np
import pandas as pd
import pytest

from sparsepo.evaluation.stats import paired_bootstrap_test
from sparsepo.experiments.sentiment.comparison import (
    conclusions,
    front_areas,
    gain_over_reference,
    kl_budgets,
    matched_kl,
    verdict,
)
from sparsepo.experiments.sentiment.pareto import best_within, front_area
from sparsepo.experiments.sentiment.points import REFERENCE, points_with_cis

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


def test_holm_against_the_step_down_by_hand():
    from sparsepo.evaluation.stats import holm, two_sided

    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []
    assert two_sided(0.01) == pytest.approx(0.02) and two_sided(0.995) == pytest.approx(0.01) and two_sided(0.5) == 1.0


def test_split_is_disjoint_covering_and_fixed_by_the_seed():
    from sparsepo.experiments.sentiment.comparison import split_prompts

    _, per_prompt = hand_made()
    a, b, c = split_prompts(per_prompt, 0), split_prompts(per_prompt, 0), split_prompts(per_prompt, 1)
    assert not set(a.selection) & set(a.confirmation) and len(a.selection) == len(a.confirmation) == N // 2
    assert sorted([*a.selection, *a.confirmation]) == list(range(N))
    assert np.array_equal(a.selection, b.selection) and not np.array_equal(a.selection, c.selection)


def _null_trials(rng, k=6, n=160):
    """A reference and ``k`` trained points that are the reference plus per-prompt noise: none is better."""
    base = rng.uniform(0.2, 0.8, n)
    rows = [{"method": REFERENCE, "beta": np.nan, "step": 0, "prompt_id": i, "reward": base[i], "kl": 0.0, "kl_mc": 0.0}
            for i in range(n)]
    for j in range(k):
        noise = rng.normal(0, 0.1, n)
        rows += [{"method": "dpo", "beta": 0.1 * (j + 1), "step": 4, "prompt_id": i, "reward": base[i] + noise[i],
                  "kl": 1.0 + j, "kl_mc": 1.0 + j} for i in range(n)]
    return pd.DataFrame(rows)


def test_null_trials_are_called_better_than_the_reference_at_no_more_than_the_nominal_rate():
    """200 reports of 6 null trials: choosing the best on the selection prompts and testing it on the confirmation
    ones keeps false 'better' verdicts at or under the nominal rate; choosing and testing on the same prompts
    (what the report did before) does not."""
    from sparsepo.experiments.sentiment.comparison import adjust, split_prompts

    rng = np.random.default_rng(0)
    free = same = 0
    reps = 200
    for rep in range(reps):
        per_prompt = _null_trials(rng)
        points = points_with_cis(per_prompt, n_resamples=200, seed=rep)
        gain, _, _ = adjust(gain_over_reference(points, per_prompt, n_resamples=200, seed=rep,
                                                split=split_prompts(per_prompt, rep)), pd.DataFrame(columns=["p_value"]))
        free += gain["delta_low"] > 0 and gain["p_holm"] < 0.05
        naive = gain_over_reference(points, per_prompt, n_resamples=200, seed=rep)
        same += naive["delta_low"] > 0
    # nominal: a two-sided 5% test says 'better' for a null point 2.5% of the time; binomial slack for 200 reports
    assert free / reps <= 0.05, free
    assert same / reps > 0.08, same  # selection on the tested prompts: the best of 6 looks better far more often


def test_a_point_lucky_on_the_selection_prompts_is_reported_by_its_confirmation_prompts():
    from sparsepo.experiments.sentiment.comparison import split_prompts

    rng = np.random.default_rng(3)
    per_prompt = _null_trials(rng, k=2)
    split = split_prompts(per_prompt, 0)
    lucky = (per_prompt["beta"] == 0.2) & per_prompt["prompt_id"].isin(split.selection)
    per_prompt.loc[lucky, "reward"] += 0.3  # better only where it is chosen
    points = points_with_cis(per_prompt, n_resamples=200)
    gain = gain_over_reference(points, per_prompt, n_resamples=200, split=split)
    assert gain["best"]["beta"] == 0.2 and gain["n_prompts"] == len(split.confirmation)
    assert abs(gain["gain"]) < 0.05 and gain["delta_low"] < 0 < gain["delta_high"]  # no gain where it is tested
    assert gain_over_reference(points, per_prompt, n_resamples=200)["gain"] > 0.1  # chosen and tested on all


def test_each_verdict_says_on_how_many_seeds_its_difference_holds():
    from sparsepo.experiments.sentiment.comparison import agreement, seed_deltas
    from sparsepo.experiments.sentiment.points import mean_over_seeds

    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.7, 50)
    rows = [{"method": REFERENCE, "beta": np.nan, "seed": 0, "step": 0, "prompt_id": i, "reward": base[i], "kl": 0.0,
             "kl_mc": 0.0} for i in range(50)]
    for seed, shift in ((0, 0.2), (1, 0.15), (2, -0.05)):  # two seeds gain, one loses
        rows += [{"method": "dpo", "beta": 0.1, "seed": seed, "step": 4, "prompt_id": i, "reward": base[i] + shift,
                  "kl": 1.0, "kl_mc": 1.0} for i in range(50)]
    by_seed = pd.DataFrame(rows)
    per_prompt = mean_over_seeds(by_seed)
    points = points_with_cis(per_prompt, n_resamples=200)
    dpo, ref = points[points["method"] == "dpo"].iloc[0], points[points["method"] == REFERENCE].iloc[0]
    assert seed_deltas(by_seed, dpo, ref) == pytest.approx([0.2, 0.15, -0.05])
    assert agreement([0.2, 0.15, -0.05], 0.1) == "2/3" and agreement([], 0.1) == ""
    gain = gain_over_reference(points, per_prompt, n_resamples=200, by_seed=by_seed)
    assert gain["seeds_agree"] == "2/3"
    text = conclusions(gain, pd.DataFrame(columns=["vs"]), pd.DataFrame())[0]
    assert "on 2 of 3 seeds only" in text


def test_interpolated_fronts_read_each_method_at_the_budget_with_paired_cis():
    from sparsepo.experiments.sentiment.comparison import adjust, interpolated_fronts
    from sparsepo.experiments.sentiment.pareto import front_value

    points, per_prompt = hand_made()
    table = interpolated_fronts(per_prompt, [1.0, 4.0, 8.0], n_resamples=300, seed=2).set_index(["budget", "method"])
    means = per_prompt.groupby(["method", "step"])[["kl", "reward"]].mean()
    for (budget, method), row in table.iterrows():
        own = means.loc[[REFERENCE, method]]
        assert row["reward"] == pytest.approx(front_value(own["kl"].to_numpy(), own["reward"].to_numpy(), budget))
        assert row["reward_low"] <= row["reward"] <= row["reward_high"]
    # At KL 1 both read halfway from the reference to their KL-2 point: SparsePO's 0.7 beats DPO's 0.6.
    sp1 = table.loc[(1.0, "sparsepo")]
    assert sp1["reward"] == pytest.approx(0.6, abs=0.01) and sp1["delta"] == pytest.approx(0.05, abs=0.01)
    assert sp1["delta_low"] > 0 and sp1["n_within"] == 0 and not sp1["beyond_last"]
    assert table.loc[(8.0, "sparsepo")]["beyond_last"] and table.loc[(8.0, "sparsepo")]["delta"] < 0
    assert table.loc[(1.0, "dpo")][["delta", "p_value"]].isna().all()  # the baseline is not tested against itself
    _, _, n = adjust(None, pd.DataFrame(columns=["p_value", "p_holm"]), fronts := table.reset_index())
    from sparsepo.evaluation.stats import two_sided

    tested = fronts[fronts["p_value"].notna()]
    assert n == len(tested) == 3
    assert all(h >= two_sided(p) - 1e-12 for h, p in zip(tested["p_holm"], tested["p_value"], strict=True))
