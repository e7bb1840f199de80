"""Report verdicts (`xcomp.reporting.verdict`) and the suite-discrimination table, on hand-made arm tables."""

from __future__ import annotations

import pandas as pd
import pytest

from xcomp.reporting.sweep import family_spread
from xcomp.reporting.verdict import Claim, check


def arms(*rows: tuple[str, str, float, float]) -> pd.DataFrame:
    """A sweep table of (compress, train, accuracy, accuracy_se) rows, as `sweep_runs` returns it."""
    table = pd.DataFrame(
        [{"arm": f"compress={c} train={t}", "compress": c, "train": t, "status": "FINISHED", "accuracy": a,
          "accuracy_se": se} for c, t, a, se in rows]  # fmt: skip
    )
    table.attrs["axes"] = ["compress", "train"]
    return table


LP_WINS = Claim(text="LP-Comp beats the heuristics after SCT", arm={"compress": "lp", "train": "sct"},
                against={"train": "sct"})  # fmt: skip


@pytest.mark.parametrize(
    ("lp", "outcome"),
    [(0.70, "holds"), (0.58, "inconclusive"), (0.35, "does not hold")],
)
def test_a_better_claim_needs_a_margin_of_two_combined_standard_errors(lp, outcome):
    table = arms(("lp", "sct", lp, 0.03), ("uniform", "sct", 0.55, 0.03), ("pool", "sct", 0.45, 0.03),
                 ("lp", "none", 0.90, 0.03))  # fmt: skip
    verdict = check(table, LP_WINS)
    assert verdict.outcome == outcome, verdict.line()
    assert "compress=uniform train=sct" in verdict.evidence  # the closest rival; the train=none arm is not compared
    assert verdict.line().startswith(f"- **{outcome}**: LP-Comp beats the heuristics after SCT (")


def test_no_worse_holds_within_the_noise_and_fails_past_it():
    claim = Claim(text="2.5 % is enough", arm={"train": "sct"}, against={"compress": "lp"}, kind="no_worse")
    assert check(arms(("lp", "sct", 0.50, 0.05), ("lp", "none", 0.58, 0.05)), claim).outcome == "holds"
    assert check(arms(("lp", "sct", 0.50, 0.02), ("lp", "none", 0.70, 0.02)), claim).outcome == "does not hold"


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        (Claim(text="x", arm={"frames": "64"}), "frames did not vary"),
        (Claim(text="x", arm={"compress": "lp"}, metric="frame_recall"), "no arm logged frame_recall"),
        (Claim(text="x", arm={"compress": "fastv"}), "0 finished arm(s) match"),
    ],
)
def test_a_claim_the_sweep_cannot_test_says_why(claim, reason):
    verdict = check(arms(("lp", "sct", 0.5, 0.05), ("uniform", "sct", 0.4, 0.05)), claim)
    assert verdict.outcome == "not testable here" and reason in verdict.evidence


def test_the_compared_arms_can_be_a_list_of_values():
    table = arms(("lp", "sct", 0.60, 0.02), ("uniform", "sct", 0.50, 0.02), ("dense", "sct", 0.90, 0.02))
    claim = Claim(text="x", arm={"compress": "lp"}, against={"compress": ["uniform", "pool"]})
    verdict = check(table, claim)
    assert verdict.outcome == "holds" and "closest of 1 compared" in verdict.evidence  # dense is not compared


def test_a_cost_bound_compares_only_arms_at_most_as_costly():
    table = arms(("lp", "sct", 0.50, 0.02), ("uniform", "sct", 0.60, 0.02), ("dense", "sct", 0.90, 0.02))
    table["token_layers_ratio"] = [0.3, 0.3, 1.0]
    claim = Claim(text="x", arm={"compress": "lp"}, kind="no_worse", at_most="token_layers_ratio")
    verdict = check(table, claim)  # dense is more accurate but costlier: not compared; uniform, as cheap, wins
    assert verdict.outcome == "does not hold" and "closest of 1 compared (at most its token_layers_ratio" in verdict.evidence
    table.loc[1, "token_layers_ratio"] = 0.31
    assert "0 to compare with" in check(table, claim).evidence  # nothing as cheap left
    assert check(table.drop(columns="token_layers_ratio"), claim).outcome == "not testable here"


def test_a_failed_arm_is_not_compared():
    table = arms(("lp", "sct", 0.70, 0.03), ("uniform", "sct", 0.95, 0.01))
    table.loc[1, "status"] = "FAILED"
    assert "0 to compare with" in check(table, LP_WINS).evidence


def test_the_suite_discrimination_table_names_saturated_and_chance_families():
    table = arms(("lp", "sct", 0.5, 0.05), ("uniform", "sct", 0.4, 0.05))
    table["accuracy.locate"], table["accuracy.locate_se"] = [0.97, 1.0], [0.02, 0.0]
    table["accuracy.order"], table["accuracy.order_se"] = [0.27, 0.22], [0.04, 0.04]
    table["accuracy.count"], table["accuracy.count_se"] = [0.60, 0.30], [0.05, 0.05]
    spread = family_spread(table, chance=0.25).set_index("family")
    assert spread["verdict"].to_dict() == {"count": "discriminates", "locate": "saturates", "order": "at chance"}
    assert spread.loc["count", "best arm"] == "compress=lp train=sct" and spread.loc["count", "lowest"] == 0.30


def test_a_claim_on_a_benchmark_can_use_the_se_clustered_by_video():
    """LVBench asks ~15 questions per video: the clustered SE is larger, and a margin that is 2 binomial SEs may not
    be 2 clustered ones."""
    table = arms(("lp", "sct", 0.62, 0.02), ("uniform", "sct", 0.55, 0.02))
    table["accuracy_se_cluster"] = [0.04, 0.04]
    assert check(table, LP_WINS).outcome == "holds"
    clustered = check(table, Claim(**{**LP_WINS.__dict__, "se": "se_cluster"}))
    assert clustered.outcome == "inconclusive" and "± 0.040" in clustered.evidence
