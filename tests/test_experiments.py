"""The claim experiments (experiments/*.yaml with a report): each composes, every arm of its sweep composes, and
each claim names arms that the sweep has, so a typo fails here rather than at the end of a long run."""

from __future__ import annotations

import itertools

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.test_run import compose_run

CLAIM_EXPERIMENTS = [
    "c1_lp_vs_heuristics", "c2_frames_vs_tokens", "c3_position_bias", "c4_sct_fraction", "qc_grid", "schedule_test",
]


def axes(cfg) -> dict[str, list[str]]:
    """The sweep's axes: override key (without +) -> its values, as Hydra parses them (a value can be a list)."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides([f"{key}={values}" for key, values in cfg.hydra.sweeper.params.items()])
    return {o.get_key_element().lstrip("+"): list(o.sweep_string_iterator()) for o in parsed}


@pytest.mark.parametrize("name", CLAIM_EXPERIMENTS)
def test_each_arm_composes_and_each_claim_names_swept_arms(tmp_path, name):
    cfg = compose_run(tmp_path, f"+experiment={name}")
    assert cfg.report.name == name == cfg.logger.experiment
    assert cfg.data.n == 100 and cfg.data.seed == 29  # the shared regime (experiments/regime.yaml)
    sweep = axes(cfg)
    keys = list(cfg.hydra.sweeper.params)
    for values in itertools.product(*sweep.values()):
        arm = compose_run(tmp_path, f"+experiment={name}", *(f"{k}={v}" for k, v in zip(keys, values)))
        assert arm.report.name == name
    for claim in OmegaConf.to_container(cfg.report.claims):
        for side in (claim["arm"], claim.get("against", {})):
            for key, value in side.items():
                assert key in sweep, (claim["text"], key)
                for v in value if isinstance(value, list) else [value]:
                    assert str(v) in sweep[key], (claim["text"], key, v)


def test_the_sct_fraction_arms_take_one_pass_over_their_slice(tmp_path):
    for option, fraction in [("pct1", 0.01), ("pct2_5", 0.025), ("pct5", 0.05), ("pct10", 0.1), ("pct25", 0.25)]:
        cfg = compose_run(tmp_path, "+experiment=c4_sct_fraction", f"+experiment/c4_sct_fraction={option}")
        assert cfg.train.data.fraction == fraction and cfg.model.name == "base_tiny"
        assert cfg.train.steps * cfg.train.batch_size == round(fraction * cfg.train.data.num_samples)
    assert compose_run(tmp_path, "+experiment=c4_sct_fraction", "+experiment/c4_sct_fraction=pct0").train is None
