"""The recipes of the shipped models as Hydra experiments (experiments/recipe/): their stages chain, and the
tiny XComp model is reproduced bit for bit by its one command."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file

from tests.test_run import CONF, ROOT
from xcomp.shipped import shipped_model

STAGES = ["1_dense", "2_vision_tags", "3_all", "4_all_2", "5_order", "6_all_3"]


def _compose(tmp_path, *overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("run", overrides=[f"paths.root={tmp_path}", *overrides], return_hydra_config=True)


def test_the_base_recipe_runs_its_stages_in_order_each_from_the_one_before(tmp_path):
    sweep = _compose(tmp_path, "+experiment=recipe/base_tiny").hydra.sweeper.params
    assert sweep["+experiment/recipe/base_tiny"].split(",") == STAGES
    stages = [_compose(tmp_path, f"+experiment=recipe/base_tiny/{s}") for s in STAGES]
    assert stages[0].train.init == "tiny" and stages[0].train.data.families == ["locate"]
    for before, after in zip(stages, stages[1:]):
        assert after.train.init == f"{before.train.output_dir}/final"
    assert stages[1].train.objective == "frame_tags" and not stages[2].train.train_vision
    seeds = [s.train.data.seed for s in stages]
    assert len(set(seeds)) == len(STAGES) and stages[0].data.seed not in seeds  # the tests draw other cases
    last = stages[-1]
    assert OmegaConf.to_container(last.schedule.kept) == [16, 9, 3, 1] and last.train.answer_frames == 32
    assert all(s.compress._target_.endswith(".Dense") for s in stages)


@pytest.mark.slow
def test_the_xcomp_tiny_recipe_reproduces_the_shipped_model(tmp_path):
    """SCT of the shipped base, 120 steps of 16 (~1.5 min on 2 cores); the test stage answers 4 questions."""
    command = [sys.executable, "run.py", "+experiment=recipe/xcomp_tiny", f"paths.root={tmp_path}", "logger=none",
               "data.n=1", "data.video_frames=16", "frames=16"]  # fmt: skip
    res = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    made = load_file(str(tmp_path / "outputs/train/recipe/xcomp_tiny/final/model.safetensors"))
    shipped = load_file(f"{shipped_model('xcomp_tiny')}/model.safetensors")
    assert made.keys() == shipped.keys()
    assert [k for k in made if not (made[k] == shipped[k]).all()] == []
