"""The tiny models shipped inside the package (the XComp model and the dense base): present, loadable offline,
and better than chance on held-out cases (generated here with a seed no training or eval run used)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import run_cli
from xcomp.cli import default_model_path
from xcomp.pipeline import XCompPipeline
from xcomp.shipped import shipped_model
from xcomp.synth.generate import SynthParams, make_case, write_suite

HELD_OUT_SEED = 4242


def test_embedded_model_ships_with_its_tokenizer():
    path = default_model_path()
    assert path is not None, "xcomp/assets/default_model is missing"
    config = json.loads((path / "config.json").read_text())
    assert config["compression"] == "lp_comp"
    assert (path / "model.safetensors").is_file() and (path / "tokenizer_config.json").is_file()


def test_the_dense_base_ships_beside_it_with_the_same_tokenizer():
    base, tuned = Path(shipped_model("base_tiny")), Path(shipped_model("xcomp_tiny"))
    config = json.loads((base / "config.json").read_text())
    # dense; switched to a compression it uses xcomp_tiny's schedule, so heuristics spend LP-Comp's token-layers
    assert config["compression"] == "dense"
    assert config["schedule"] == json.loads((tuned / "config.json").read_text())["schedule"] == [16, 9, 3, 1]
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (base / name).read_bytes() == (tuned / name).read_bytes()


@pytest.mark.parametrize("name", ["xcomp_tiny", "base_tiny"])
def test_shipped_models_beat_chance_on_held_out_questions(name):
    """16 questions per family about 32-frame videos, every frame kept. Measured when shipped (needle, order,
    count, locate of 16; chance 4; base of recipe stages 1-6, 2026-12-05): xcomp_tiny 7, 9, 11, 16; base_tiny
    10, 10, 14, 16. Needle is near chance for xcomp_tiny, so it alone is not bounded."""
    pipe = XCompPipeline.from_pretrained(shipped_model(name))
    params = SynthParams(frames=32, size=64, span=2, noise=0.0)
    correct = {}
    for family in ["needle", "order", "count", "locate"]:
        cases = [make_case(family, i, HELD_OUT_SEED, params) for i in range(16)]
        correct[family] = sum(
            pipe.answer(c.frames, c.record["question"], c.record["options"], keep=1.0, max_new_tokens=8).choice
            == c.record["answer"]
            for c in cases
        )
    assert correct["locate"] >= 12 and correct["count"] >= 8 and correct["order"] >= 7, correct
    assert sum(correct.values()) >= 38, correct  # chance: 16


def test_ask_and_demo_work_without_a_model_argument(tmp_path):
    jsonl = write_suite(tmp_path, "locate", 1, HELD_OUT_SEED, SynthParams(frames=32, size=64, span=2, noise=0.0))
    case = json.loads(jsonl.read_text().splitlines()[0])
    res = run_cli("ask", str(tmp_path / case["video"]), case["question"], "--options", *case["options"],
                  "--frames", "32", "--keep", "16", "--show-frames")  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    assert lines["frames"] == "16 kept of 32 sampled" and lines["choice"][0] in "ABCD"

    # A long video (the `xcomp synth` default length) with no settings: the model's pipeline_config.json keeps
    # the LLM within the 32 frames it was trained on, chosen by QC-Comp from 64 sampled.
    jsonl = write_suite(tmp_path / "long", "needle", 1, HELD_OUT_SEED, SynthParams(frames=256, size=64, noise=0.0))
    case = json.loads(jsonl.read_text().splitlines()[0])
    res = run_cli("ask", str(tmp_path / "long" / case["video"]), case["question"], "--options", *case["options"])
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    assert lines["frames"] == "32 kept of 64 sampled"

    res = run_cli("demo", "--outdir", str(tmp_path / "demo"))
    assert res.returncode == 0, res.stderr
    assert "truth: " in res.stdout and "choice: " in res.stdout and "kept frames: " in res.stdout
