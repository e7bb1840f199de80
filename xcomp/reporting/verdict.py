"""A report's verdicts: each claim an experiment makes, checked against its arms' metrics and their standard errors.

A claim names one arm by the values of the sweep's axes (``{compress: lp, train: sct_paper}``), the arms it is
compared with (those with ``against``'s values; every other arm when empty), a metric ``m`` (its SE is the metric
``m_se``, binomial, or with ``se: se_cluster`` the SE clustered by video that benchmarks with several questions
per video need) and how the arm should compare:

- ``better``: it beats every compared arm by more than ``z`` combined SEs -> holds; some compared arm beats it by
  more than that -> does not hold; otherwise inconclusive (the difference is within the noise of this suite).
- ``no_worse``: no compared arm beats it by more than ``z`` combined SEs -> holds; otherwise does not hold.

With ``at_most`` (a cost metric, e.g. ``token_layers_ratio``) only the arms at most as costly as the claimed one
are compared: ``no_worse`` then says the arm is on the accuracy/cost Pareto front within the noise.

The combined SE of two arms is sqrt(se_a² + se_b²): it treats their questions as independent, which is
conservative for arms that answer the same questions (the paired SE would be smaller). A claim whose arms are
missing, failed, or not told apart by the sweep's axes is "not testable here", with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

KINDS = ("better", "no_worse")
"""How the claimed arm should compare with the others."""


@dataclass
class Claim:
    """One claim of an experiment, checked in its report's first lines."""

    text: str = ""
    """The claim in words (the verdict line starts with it)."""
    arm: dict[str, Any] = field(default_factory=dict)
    """Axis values naming the claimed arm, e.g. {compress: lp, train: sct_paper}."""
    against: dict[str, Any] = field(default_factory=dict)
    """Axis values of the compared arms, a value or a list of them per axis (empty: every other arm)."""
    metric: str = "accuracy"
    """Metric compared (higher is better); its SE is the metric `<metric>_<se>`."""
    se: str = "se"
    """Which SE: se (binomial) or se_cluster (clustered by video: several questions per video, e.g. LVBench)."""
    kind: str = "better"
    """better (beats each compared arm) or no_worse (no compared arm beats it)."""
    z: float = 2.0
    """How many combined standard errors make a difference."""
    at_most: str | None = None
    """A cost metric: compare only with arms whose cost is at most the claimed arm's (None: no cost filter)."""


@dataclass
class Verdict:
    """A claim's outcome and the numbers behind it."""

    claim: Claim
    """The claim checked."""
    outcome: str
    """holds, does not hold, inconclusive, or not testable here."""
    evidence: str
    """The numbers (or the reason it could not be tested)."""

    def line(self) -> str:
        """Markdown: **outcome**: the claim (evidence)."""
        return f"- **{self.outcome}**: {self.claim.text} ({self.evidence})"


def _matches(table: pd.DataFrame, values: dict[str, str]) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for key, value in values.items():
        mask &= table[key].astype(str).isin([str(v) for v in (value if isinstance(value, list | tuple) else [value])])
    return mask


def check(table: pd.DataFrame, claim: Claim) -> Verdict:
    """The verdict on ``claim`` over a sweep's arms (`xcomp.reporting.sweep.sweep_runs`)."""
    if claim.kind not in KINDS:
        raise ValueError(f"claim kind must be one of {', '.join(KINDS)}, got {claim.kind!r}")
    axes = table.attrs.get("axes", [])
    unknown = [k for k in (*claim.arm, *claim.against) if k not in axes]
    if unknown:
        return Verdict(claim, "not testable here", f"{', '.join(unknown)} did not vary in this sweep")
    metric, se = claim.metric, f"{claim.metric}_{claim.se}"
    if metric not in table or se not in table:
        return Verdict(claim, "not testable here", f"no arm logged {metric} with its SE {se}")
    if claim.at_most is not None and claim.at_most not in table:
        return Verdict(claim, "not testable here", f"no arm logged the cost {claim.at_most}")
    done = table[(table["status"] == "FINISHED") & table[metric].notna() & table[se].notna()]
    ours = done[_matches(done, claim.arm)]
    others = done[_matches(done, claim.against) & ~_matches(done, claim.arm)]
    if claim.at_most is not None and len(ours) == 1:
        others = others[others[claim.at_most] <= ours.iloc[0][claim.at_most]]
    if len(ours) != 1 or others.empty:
        found = f"{len(ours)} finished arm(s) match {claim.arm}, {len(others)} to compare with"
        return Verdict(claim, "not testable here", found)
    a = ours.iloc[0]
    gaps = [(a[metric] - b[metric], math.hypot(a[se], b[se]), b) for _, b in others.iterrows()]
    closest = min(gaps, key=lambda g: g[0] / g[1] if g[1] else math.copysign(math.inf, g[0]))
    beaten = [g for g in gaps if g[0] < -claim.z * g[1]]
    if claim.kind == "better":
        won = all(g[0] > claim.z * g[1] for g in gaps)
        outcome = "holds" if won else "does not hold" if beaten else "inconclusive"
    else:
        outcome = "does not hold" if beaten else "holds"
    diff, combined, b = closest
    cheaper = f" (at most its {claim.at_most} {a[claim.at_most]:.3f})" if claim.at_most else ""
    evidence = (
        f"`{a['arm']}` {metric} {a[metric]:.3f} ± {a[se]:.3f}; closest of {len(gaps)} compared{cheaper}: `{b['arm']}` "
        f"{b[metric]:.3f} ± {b[se]:.3f}, difference {diff:+.3f} = {diff / combined:+.1f} combined SE"
        if combined
        else f"`{a['arm']}` {metric} {a[metric]:.3f}, `{b['arm']}` {b[metric]:.3f}: no spread to compare against"
    )
    return Verdict(claim, outcome, evidence)
