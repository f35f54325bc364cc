"""tsmbook.verdicts: every verdict reachable from hand-built family tables, boundaries, bad input; the sanity
check's thresholds and verdicts by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsmlib.evaluation import stats as S
from tsmbook import verdicts
from tsmbook.verdicts import VERDICTS, metric_outcomes, verdict

nan = float("nan")


def family(*intervals, metrics=None):
    """A family table with one row per (low, high); one metric per row unless ``metrics`` says otherwise."""
    metrics = metrics or [f"m{i}" for i in range(len(intervals))]
    return pd.DataFrame({"metric": metrics, "ci_low": [lo for lo, _ in intervals],
                         "ci_high": [hi for _, hi in intervals]})


def test_better_claim_reaches_every_verdict():
    assert verdict(family((0.1, 0.9), (0.2, 0.4), (-0.1, 0.1))) == "supported"           # 2 of 3 above 0
    assert verdict(family((0.1, 0.9), (-0.2, 0.4), (-0.1, 0.1))) == "partly supported"   # 1 above, none below
    assert verdict(family((0.1, 0.9), (-0.2, -0.1), (-0.1, 0.1))) == "not supported"     # 1 above, 1 below
    assert verdict(family((-0.2, 0.4), (-0.1, 0.1))) == "not supported"                   # none above
    assert verdict(family((nan, nan))) == "not testable here"
    assert verdict(family()) == "not testable here"                                        # empty table


def test_majority_is_strict_and_uncomputable_metrics_do_not_count():
    assert verdict(family((0.1, 0.2), (-0.1, 0.1))) == "partly supported"                 # 1 of 2 is not a majority
    assert verdict(family((0.1, 0.2), (nan, nan))) == "supported"                         # 1 of 1 computable
    # a majority above 0 with one metric below 0 stays supported (the rule counts the majority)
    assert verdict(family((0.1, 0.2), (0.1, 0.3), (-0.3, -0.1))) == "supported"


def test_boundaries_of_the_interval():
    # an interval that touches 0 is not above it; touching the target counts as containing it
    assert metric_outcomes(family((0.0, 0.5)))["outcome"].tolist() == ["undecided"]
    assert metric_outcomes(family((-0.5, 0.0)))["outcome"].tolist() == ["undecided"]
    assert metric_outcomes(family((0.2, 0.5)), target=0.5)["reaches_target"].tolist() == [True]
    assert metric_outcomes(family((0.5, 0.5)), target=0.5)["reaches_target"].tolist() == [True]
    assert metric_outcomes(family((0.51, 0.9)), target=0.5)["reaches_target"].tolist() == [False]


def test_target_size_of_the_claim():
    around_half = family((0.3, 0.7), (0.4, 0.6), (0.1, 0.2))
    assert verdict(around_half, target=0.5) == "supported"
    much_more = family((1.0, 2.0), (1.5, 3.0), (0.1, 0.2))                 # better, but not "about 50 %"
    assert verdict(much_more) == "supported"
    assert verdict(much_more, target=0.5) == "partly supported"
    small_and_mixed = family((0.01, 0.1), (0.02, 0.2), (-0.3, -0.1))
    assert verdict(small_and_mixed, target=0.5) == "partly supported"     # majority better, size missed


def test_the_worst_case_over_pairs_and_models_decides_each_metric():
    t = family((0.1, 0.3), (-0.4, -0.1), (0.2, 0.3), (0.1, 0.5), metrics=["ad", "ad", "iou", "iou"])
    out = metric_outcomes(t).set_index("metric")
    assert out.loc["ad", "outcome"] == "worse" and out.loc["iou", "outcome"] == "better"
    assert out["comparisons"].tolist() == [2, 2]
    t = family((0.1, 0.3), (-0.4, 0.1), metrics=["ad", "ad"])
    assert metric_outcomes(t)["outcome"].tolist() == ["undecided"]
    assert verdict(t) == "not supported"


def test_not_worse_claim_reaches_every_verdict():
    assert verdict(family((-0.2, 0.1), (0.1, 0.3), (-0.3, -0.1)), claim="not worse") == "supported"
    assert verdict(family((-0.2, 0.1), (-0.5, -0.1), (-0.3, -0.1)), claim="not worse") == "partly supported"
    assert verdict(family((-0.5, -0.1), (-0.3, -0.1)), claim="not worse") == "not supported"
    assert verdict(family((nan, nan)), claim="not worse") == "not testable here"
    assert verdict(family(), claim="not worse") == "not testable here"
    # one worse baseline makes the metric worse: competitive must hold against every baseline
    t = family((-0.1, 0.1), (-0.5, -0.2), metrics=["ad", "ad"])
    assert verdict(t, claim="not worse") == "not supported"


def test_bad_input():
    with pytest.raises(ValueError, match="claim must be"):
        verdict(family((0.1, 0.2)), claim="best")
    with pytest.raises(ValueError, match="target"):
        verdict(family((0.1, 0.2)), claim="not worse", target=0.5)
    with pytest.raises(KeyError, match="ci_low"):
        verdict(pd.DataFrame({"metric": ["ad"]}))
    assert set(VERDICTS) == {"supported", "partly supported", "not supported", "not testable here"}


def test_verdict_of_a_real_family_table():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        for method, shift in [("a", 0.0), ("b", 5.0)]:
            rows.append({"image": i, "method": method, "metric": "average_drop", "value": 40 + rng.normal() - shift})
            rows.append({"image": i, "method": method, "metric": "iou", "value": 0.5 + 0.01 * rng.normal() + shift / 50})
    table = S.compare_family(pd.DataFrame(rows), [("b", "a")], ["average_drop", "iou"], n_resamples=500)
    assert table["outcome"].tolist() == ["better", "better"]
    assert verdict(table) == "supported"
    assert verdict(S.compare_family(pd.DataFrame(rows), [("a", "b")], ["average_drop", "iou"], n_resamples=500),
                   claim="not worse") == "not supported"


def test_verdict_detail_names_each_metric_and_the_family():
    from tsmbook.verdicts import verdict_detail

    t = family((0.1, 0.9), (nan, nan), metrics=["average_drop", "iou"]).assign(confidence=0.99)
    assert verdict_detail(t, target=0.5) == ("Average Drop better (+50 % inside), mIoU not computable; "
                                             "2 comparisons, 99.0 % intervals")
    assert verdict_detail(family()) == "no comparison"


# ------------------------------------------------------------------------- the random-weight control
def keyed(*intervals, metrics=None, change=None):
    t = family(*intervals, metrics=metrics).assign(method="tsm", reference="eigencam")
    return t.assign(relative_change=change if change is not None else [(lo + hi) / 2 for lo, hi in intervals])


def test_control_outcomes_flags_a_gain_the_random_model_shows_too():
    from tsmbook.verdicts import control_outcomes

    trained = keyed((0.3, 0.6), (0.3, 0.6), (0.3, 0.6), (-0.1, 0.6), (0.3, 0.6))
    control = keyed((0.01, 0.1),    # above 0, below the trained interval: the random model gains too
                    (-0.5, 0.35),   # contains 0 but overlaps the trained interval: not distinguishable
                    (-0.5, 0.2),    # contains 0, disjoint from the trained interval: a real gain
                    (0.4, 0.5),     # the trained row is no gain: nothing to explain away
                    (nan, nan))     # control not computable: the gain stays, unchecked
    out = control_outcomes(trained, control)
    assert out["gain"].tolist() == [True, True, True, False, True]
    assert out["artefact"].tolist() == [True, True, False, False, False]
    assert out["control_checked"].tolist() == [True, True, True, True, False]
    assert out["control_low"].tolist()[:4] == [0.01, -0.5, -0.5, 0.4]
    assert len(out) == len(trained) and out.index.equals(trained.index)
    # touching intervals overlap (the boundary counts)
    assert control_outcomes(keyed((0.3, 0.6)), keyed((-0.2, 0.3)))["artefact"].tolist() == [True]
    assert control_outcomes(keyed((0.3, 0.6)), keyed((-0.2, 0.29)))["artefact"].tolist() == [False]


def test_control_matches_rows_by_key_and_several_models_share_one_control_row():
    from tsmbook.verdicts import control_outcomes

    trained = pd.concat([keyed((0.3, 0.6), metrics=["ad"]).assign(model=m) for m in ("simclr", "barlow")]
                        + [keyed((0.3, 0.6), metrics=["ad"]).assign(method="mtsm", model="simclr")],
                       ignore_index=True)
    control = pd.concat([keyed((-0.3, 0.1), metrics=["ad"]), keyed((0.05, 0.2), metrics=["ad"]).assign(method="mtsm")])
    assert control_outcomes(trained, control)["artefact"].tolist() == [False, False, True]


def test_artefact_metrics_do_not_count_as_better():
    from tsmbook.verdicts import verdict_detail

    trained = keyed((0.3, 0.6), (0.3, 0.6), (0.2, 0.7), metrics=["average_drop", "iou", "mse"])
    clean = keyed((-0.2, 0.1), (-0.2, 0.1), (-0.3, 0.1), metrics=["average_drop", "iou", "mse"])
    assert verdict(trained, target=0.5) == "supported"
    assert verdict(trained, target=0.5, control=clean) == "supported"
    one = keyed((0.01, 0.1), (-0.2, 0.1), (-0.3, 0.1), metrics=["average_drop", "iou", "mse"])
    out = metric_outcomes(trained, control=one).set_index("metric")
    assert out["outcome"].tolist() == ["artefact", "better", "better"] and out["artefacts"].tolist() == [1, 0, 0]
    assert verdict(trained, control=one) == "supported"                  # 2 of 3 still clean gains
    two = keyed((0.01, 0.1), (0.2, 0.4), (-0.3, 0.1), metrics=["average_drop", "iou", "mse"])
    assert verdict(trained, control=two) == "partly supported"           # 1 clean gain, none worse
    every = keyed((0.01, 0.1), (0.2, 0.4), (0.0, 0.3), metrics=["average_drop", "iou", "mse"])
    assert verdict(trained, control=every) == "not supported"            # no clean gain left
    assert verdict(trained, claim="not worse", control=every) == "supported"   # artefacts are not worse
    detail = verdict_detail(trained, control=two)
    assert detail.startswith("Average Drop artefact of the metric (gain also on the random-weight control), "
                             "mIoU artefact of the metric")
    assert "MSE better" in detail
    # a worse row keeps the metric worse whatever the control says
    mixed = keyed((0.3, 0.6), (-0.5, -0.1), metrics=["ad", "ad"]).assign(reference=["eigencam", "gradcam"])
    ctl = keyed((0.1, 0.4), (0.1, 0.4), metrics=["ad", "ad"]).assign(reference=["eigencam", "gradcam"])
    assert metric_outcomes(mixed, control=ctl)["outcome"].tolist() == ["worse"]


def test_control_bad_input():
    from tsmbook.verdicts import control_outcomes

    with pytest.raises(ValueError, match="several rows"):
        control_outcomes(keyed((0.1, 0.2)), pd.concat([keyed((0.1, 0.2)), keyed((0.1, 0.3))]))
    with pytest.raises(KeyError, match="method"):
        control_outcomes(keyed((0.1, 0.2)), family((0.1, 0.2)))


# ------------------------------------------------------------------------ the sanity check's verdicts
def _rows(values_by_step, method, scheme):
    return [{"scheme": scheme, "step": s, "layer_randomized": f"b{s}", "image": i, "method": method,
             "similarity": "spearman", "value": v} for s, vals in values_by_step.items() for i, v in enumerate(vals)]


def test_sanity_thresholds_and_verdicts_by_hand():
    import pandas as pd

    # noise floor: two methods, 10 images each; 5 % quantile of the pooled 20 values
    floor_vals = np.linspace(0.90, 0.99, 10)
    floor = pd.DataFrame(_rows({0: [1.0] * 10, 1: floor_vals}, "m1", "perturbation")
                         + _rows({0: [1.0] * 10, 1: floor_vals + 0.005}, "m2", "perturbation"))
    pooled = np.concatenate([floor_vals, floor_vals + 0.005])
    rnd = np.linspace(-0.2, 0.2, 9)
    results = pd.DataFrame(
        _rows({0: [1.0] * 9, 1: rnd, 2: rnd[::-1]}, "random", "cascading")
        + _rows({0: [1.0] * 9, 1: [0.97] * 9, 2: [0.99, 0.98, 0.97, 0.96, 0.99, 0.98, 0.97, 0.96, 0.98]}, "same", "cascading")
        + _rows({0: [1.0] * 9, 1: [0.9] * 9, 2: [0.5, 0.55, 0.6, 0.45, 0.5, 0.52, 0.48, 0.5, 0.5]}, "partly", "cascading")
        + _rows({0: [1.0] * 9, 1: [0.4] * 9, 2: rnd * 0.5}, "gone", "cascading")
        + _rows({0: [1.0] * 9, 1: [0.3] * 9, 2: [0.99] * 9}, "gone", "independent"))
    th = verdicts.sanity_thresholds(floor, results, methods=["m1", "m2"], random_method="random", quantile=0.05)
    assert th["similar"] == pytest.approx(np.quantile(pooled, 0.05))
    # |rho| of the random anchor over steps 1 and 2, 95 % quantile
    assert th["random"] == pytest.approx(np.quantile(np.abs(np.concatenate([rnd, rnd])), 0.95))
    v = verdicts.sanity_verdicts(results, similar=th["similar"], random=th["random"], n_resamples=999)
    assert v.loc[("cascading", "same"), "verdict"] == "stays similar"
    assert v.loc[("cascading", "partly"), "verdict"] == "changes partly"
    assert v.loc[("cascading", "gone"), "verdict"] == "as different as a random map"
    assert v.loc[("cascading", "partly"), "step"] == 2
    assert v.loc[("cascading", "partly"), "mean"] == pytest.approx(np.mean([0.5, 0.55, 0.6, 0.45, 0.5, 0.52, 0.48, 0.5, 0.5]))
    lo, hi = v.loc[("cascading", "partly"), ["ci_low", "ci_high"]]
    assert lo < 0.51 < hi
    # independent scheme: the statistic is the step that lowers the mean most (step 1 here, not the last)
    assert v.loc[("independent", "gone"), "step"] == 1
    assert v.loc[("independent", "gone"), "mean"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="overlap"):
        verdicts.sanity_thresholds(floor.assign(value=0.1), results, methods=["m1"], random_method="random")
    with pytest.raises(ValueError, match="random anchor"):
        verdicts.sanity_thresholds(floor, results, methods=["m1"], random_method="nope")
    with pytest.raises(ValueError, match="random < similar"):
        verdicts.sanity_verdicts(results, similar=0.2, random=0.5)
    with pytest.raises(ValueError, match="quantile"):
        verdicts.sanity_thresholds(floor, results, methods=["m1"], random_method="random", quantile=0.7)


def test_a_constant_map_counts_as_zero_similarity_in_the_verdicts():
    import pandas as pd

    # a Grad-CAM that a random network leaves all zero has an undefined rho (NaN): it kept no ranking
    rows = _rows({0: [1.0] * 6, 1: [np.nan] * 6}, "flat", "cascading") + _rows({0: [1.0] * 6, 1: [-0.99] * 6}, "flip", "cascading")
    df = pd.DataFrame(rows)
    vals = verdicts.similarity_values(df)
    assert vals[(vals.method == "flat") & (vals.step == 1)]["value"].tolist() == [0.0] * 6
    assert vals[(vals.method == "flip") & (vals.step == 1)]["value"].tolist() == pytest.approx([0.99] * 6)
    v = verdicts.sanity_verdicts(df, similar=0.95, random=0.2, n_resamples=999)
    assert v.loc[("cascading", "flat"), "verdict"] == "as different as a random map"
    assert v.loc[("cascading", "flip"), "verdict"] == "stays similar"  # an inverted map kept its structure


def test_one_image_has_no_interval_and_its_verdict_is_undecided():
    """With one image there is nothing to resample: the interval is undefined, and a mean of 0.5 between the
    thresholds must not read as "changes partly" (it did: NaN compared False with both thresholds)."""
    import pandas as pd

    df = pd.DataFrame(_rows({0: [1.0], 1: [0.5]}, "one", "cascading"))
    v = verdicts.sanity_verdicts(df, similar=0.95, random=0.2, n_resamples=999)
    assert np.isnan(v.loc[("cascading", "one"), "ci_low"]) and v.loc[("cascading", "one"), "mean"] == 0.5
    assert v.loc[("cascading", "one"), "verdict"] == "undecided"


def _verdict_table(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["scheme", "method", "verdict"]).set_index(["scheme", "method"])


def test_label_free_verdict_follows_its_rule_case_by_case():
    chance, partly, similar = "as different as a random map", "changes partly", "stays similar"
    both = lambda a, b: _verdict_table([("cascading", "tsm", a), ("independent", "tsm", b),  # noqa: E731
                                        ("cascading", "gradcam", similar), ("independent", "gradcam", similar)])
    assert verdicts.label_free_verdict(both(chance, chance), ["tsm"])["verdict"] == "supported"
    r = verdicts.label_free_verdict(both(partly, chance), ["tsm"])
    assert (r["verdict"], r["partly"], r["at_chance"]) == ("partly supported", {"tsm": ["cascading"]},
                                                          {"tsm": ["independent"]})
    assert verdicts.label_free_verdict(both(chance, similar), ["tsm"])["verdict"] == "not supported"
    assert verdicts.label_free_verdict(both(partly, "undecided"), ["tsm"])["failing"] == ["tsm"]
    # a label-dependent method that stays similar does not enter the label-free claim
    assert verdicts.label_free_verdict(both(chance, chance), ["tsm"])["failing"] == []
    assert verdicts.label_free_verdict(both(chance, chance), [])["verdict"] == "not testable here"
    with pytest.raises(KeyError, match="no verdict"):
        verdicts.label_free_verdict(both(chance, chance), ["mtsm"])
