"""Trainer: learning, resume after SIGKILL without lost or repeated steps, logs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TOKENIZER_DIR, require
from tests.train_job import RowFile, curve, make_job, train_job
from xcomp.errors import ConfigError
from xcomp.train.config import TrainConfig
from xcomp.train.fit import fit

ROOT = Path(__file__).resolve().parents[1]


def _job(out: Path, steps: int, batch_size: int = 2) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.train_job", str(out), str(steps), str(batch_size)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def test_loss_decreases_and_only_trainable_parts_change(tmp_path):
    require(TOKENIZER_DIR)
    config, model, dataset, processor = make_job(str(tmp_path), steps=12)
    vision_before = model.model.vision_tower.encoder.blocks[0].mlp.fc1.weight.detach().clone()
    final = fit(config, model, dataset, processor, loggers=[RowFile(str(tmp_path))])
    losses = [r["loss"] for r in curve(tmp_path)]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert (final / "model.safetensors").is_file() and (final / "tokenizer_config.json").is_file()
    after = load_file(str(final / "model.safetensors"))
    assert (after["model.vision_tower.encoder.blocks.0.mlp.fc1.weight"] == vision_before).all()


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    require(TOKENIZER_DIR)
    steps = 8
    reference = _job(tmp_path / "ref", steps)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    killed = _job(tmp_path / "run", steps)
    deadline = time.time() + 300
    while not (tmp_path / "run" / "checkpoints" / "step_0000004.ckpt").exists():
        assert killed.poll() is None, "job finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "run" / "final").exists()
    resumed = _job(tmp_path / "run", steps)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    ref = load_file(str(tmp_path / "ref" / "final" / "model.safetensors"))
    got = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert ref.keys() == got.keys()
    assert all((ref[k] == got[k]).all() for k in ref), "resumed weights differ from the uninterrupted run"
    assert [r["step"] for r in curve(tmp_path / "run")] == list(range(1, steps + 1))


def test_resume_refuses_another_recipe_but_extends_a_run(tmp_path):
    require(TOKENIZER_DIR)
    train_job(str(tmp_path), 2)
    with pytest.raises(ConfigError, match=re.escape("another config (weight_decay: 0.0 -> 0.1)")):
        train_job(str(tmp_path), 2, weight_decay=0.1)
    assert not (tmp_path / "final" / "pipeline_config.json").exists()
    train_job(str(tmp_path), 4, answer_frames=4)  # more steps: continues from step 2
    assert [r["step"] for r in curve(tmp_path)] == [1, 2, 3, 4]
    saved = json.loads((tmp_path / "final" / "pipeline_config.json").read_text())
    assert saved["select"]["keep_frames"] == 4 and saved["sampling"]["max_frames"] == 8


def test_unknown_keys_and_nothing_to_train():
    with pytest.raises(ConfigError, match="learning_rate: Key 'learning_rate' not in 'TrainConfig'"):
        TrainConfig.from_dict({"output_dir": "out", "learning_rate": 0.1})
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"output_dir": "x", "train_llm": False, "train_projector": False})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"steps": "many"}, "steps: Value 'many' of type 'str' could not be converted to Integer"),
        ({"grad_accum": 1.5}, "grad_accum: Value '1.5' of type 'float' could not be converted to Integer"),
        ({"train_llm": "perhaps"}, "train_llm: Value 'perhaps' is not a valid bool"),
        ({"compression": "zip"}, "compression = 'zip' is not one of 'dense'"),
        ({"precision": "fp8"}, "precision = 'fp8' is not one of 'fp32', 'bf16'"),
        ({"schedule": [16, "nine"]}, "schedule[1]: Value 'nine' of type 'str' could not be converted to Integer"),
        ({"data": {"answer": "emoji"}}, "data must be a training source (built from its _target_)"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"warmup_ratio": 2}, "warmup_ratio must be in [0, 1]"),
        ({}, "output_dir: Structured config of type `TrainConfig` has missing mandatory value: output_dir"),
    ],
)
def test_mistyped_or_out_of_range_fields_are_named(fields, message):
    raw = {"output_dir": "x", **fields} if fields else {}
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.from_dict(raw)


def test_integers_are_accepted_for_float_fields():
    cfg = TrainConfig.from_dict({"output_dir": "x", "lr": 1})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.data.name == "synth"  # the default source


def test_a_training_source_checks_its_values_and_conf_types_them():
    from hydra.errors import ConfigCompositionException

    from tests.test_run import compose_run
    from xcomp.train.sources.jsonl import JsonlQAData
    from xcomp.train.sources.synth import SynthQAData

    for make, message in (
        (lambda: SynthQAData(answer="emoji"), "data.answer = 'emoji' is not one of 'letter', 'text'"),
        (lambda: SynthQAData(families=["needle", "colour"]), "unknown synthetic families ['colour']"),
        (lambda: SynthQAData(fraction=0), "data.fraction must be in (0, 1]"),
        (lambda: JsonlQAData(jsonl="q.jsonl", num_frames=[16, 32]), "one number for jsonl training data"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            make()
    for override, message in (("train.data.num_frames=[16,32.5]", "train.data.num_frames"),
                               ("train.data.bogus=1", "train.data.bogus")):  # fmt: skip
        with pytest.raises(ConfigCompositionException, match=re.escape(message)):
            compose_run(Path("/unused"), "train=sct", override)
    assert compose_run(Path("/unused"), "train=sct", "train.data.noise=0").train.data.noise == 0.0


def test_two_process_ddp_equals_single_process_with_global_batch(tmp_path):
    """torchrun, 2 CPU processes (gloo), 2 samples each == 1 process with 4 samples per step."""
    require(TOKENIZER_DIR)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with socket.socket() as probe:  # a free port: a fixed one collides with a leftover or parallel run
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
         "-m", "tests.train_job", str(tmp_path / "ddp"), "4", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        start_new_session=True,  # torchrun's agent signals its process group on failure: keep pytest out of it
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == [
        "last.ckpt", "step_0000002.ckpt", "step_0000004.ckpt"
    ]
    single = _job(tmp_path / "single", 4, batch_size=4)
    assert single.wait(timeout=300) == 0, single.stderr.read()
    a = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "single" / "final" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)
    logs = {run: curve(tmp_path / run) for run in ("ddp", "single")}
    assert [r["samples"] for r in logs["ddp"]] == [4, 8, 12, 16]
    for a_row, b_row in zip(logs["ddp"], logs["single"], strict=True):
        assert abs(a_row["loss"] - b_row["loss"]) < 1e-4 and a_row["lr"] == b_row["lr"]


def test_open_ended_share_and_a_curriculum_vocabulary_that_covers_every_family():
    require(TOKENIZER_DIR)
    from xcomp.train.recipe import build_processor, vocab_for
    from xcomp.train.sources.synth import SynthQAData

    stage = TrainConfig.from_dict(
        {
            "output_dir": "unused",
            "tokenizer": str(TOKENIZER_DIR),
            "data": SynthQAData(families=["needle", "locate"], num_samples=40, num_frames=[16], span=4,
                                open_ended=0.25),
        }
    )
    dataset = stage.data
    open_ended = [i for i in range(len(dataset)) if dataset.is_open_ended(i)]
    assert len(open_ended) == 10 and {i % 2 for i in open_ended} == {0, 1}  # a quarter, from both families
    sample = dataset[open_ended[0]]
    assert sample.options is None and sample.answer == dataset.case(open_ended[0]).record["answer_text"]

    processor = build_processor(stage)
    later = SynthQAData(families=["order", "count"], num_samples=40, num_frames=[32])
    covered = set(vocab_for(processor, dataset.vocabulary_texts()))
    assert set(vocab_for(processor, later.texts())) <= covered
    assert not set(vocab_for(processor, later.texts())) <= set(vocab_for(processor, dataset.texts()))


def test_text_answers_keep_the_options_and_parse_back_to_the_letter():
    from dataclasses import replace

    from xcomp.model.processing import parse_choice
    from xcomp.train.sources.synth import SynthQAData

    letters = SynthQAData(families=["needle", "order", "count", "locate"], num_samples=8, num_frames=[32], span=2)
    texts = replace(letters, answer="text")
    for i in range(8):
        record = letters.case(i, render_frames=False).record
        letter, text = letters[i], texts[i]
        assert letter.answer == record["answer"] and text.answer == record["answer_text"]
        assert text.options == letter.options == record["options"]
        assert parse_choice(text.answer, 4, text.options) == record["answer"]
