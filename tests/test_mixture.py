"""SCT's real training data: VideoChat-Flash's data-mixture YAML and LLaVA conversation records as a training source
(`train/data=mixture`), on mixtures the tests write (`xcomp.synth.mixture`): each sampling strategy against the
published code's rules, multi-turn records supervised on every answer, image records as still clips, missing and
undecodable media skipped and counted, `xcomp data check mixture`, the vision feature cache in training, and the
SCT recipe run on the CPU at the tiny shape, killed and resumed."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TOKENIZER_DIR, require
from tests.test_run import ROOT, all_runs, client, compose_run
from tests.test_run_training import killed_and_rerun
from xcomp.data.source import DataError
from xcomp.errors import ConfigError
from xcomp.model.modeling import IGNORE_INDEX
from xcomp.synth.generate import SynthParams
from xcomp.synth.mixture import write_mixture
from xcomp.train.config import TrainConfig
from xcomp.train.sources.mixture import MixtureData, select

PARAMS = SynthParams(frames=32, size=64, noise=0.0, span=2)
"""Generated videos: 32 one-second frames of 64 px, the tiny model's size."""


def mixture(root: Path, n: int = 1, images: int = 4, turns: int = 2) -> Path:
    return write_mixture(root, n, 0, PARAMS, turns=turns, images=images)


def source(path: Path, **fields) -> MixtureData:
    return MixtureData(mixture=str(path), **{"num_frames": [32], "min_frames": 8, "image_size": 64, **fields})


def published(rows: list, strategy: str, seed: int) -> list:
    """LazySupervisedDataset.__init__'s selection as LLaVA-NeXT / XComp's fork write it (integer percentages),
    after `random.seed(seed)`."""
    random.seed(seed)
    number = None
    if ":" in strategy:
        strategy, number = strategy.split(":")
        number = math.ceil(int(number.split("%")[0]) * len(rows) / 100) if "%" in number else int(number)
    if strategy == "first" and number is not None:
        return rows[:number]
    if strategy == "first2" and number is not None:
        return rows[number : number * 2]
    if strategy == "first3" and number is not None:
        return rows[number * 2 : number * 3]
    if strategy == "end" and number is not None:
        return rows[-number:]
    if strategy == "random" and number is not None:
        random.shuffle(rows)
        return rows[:number]
    return rows


@pytest.mark.parametrize(
    "strategy",
    ["all", "first:3", "first:10%", "first:34%", "end:5", "end:10%", "random:30%", "random:4", "first2:10%",
     "first3:10%", "first2:4", "first:100%", "first:500"],
)  # fmt: skip
def test_each_sampling_strategy_takes_the_records_the_published_code_takes(strategy):
    rows = [f"r{i}" for i in range(37)]
    assert select(rows, strategy, random.Random(7)) == published(list(rows), strategy, 7)


def test_percentages_round_up_slices_are_disjoint_and_a_fraction_is_accepted():
    rows = list(range(37))
    assert select(rows, "first:10%", random.Random(0)) == [0, 1, 2, 3]  # ceil(3.7)
    parts = [select(rows, f"{name}:10%", random.Random(0)) for name in ("first", "first2", "first3")]
    assert parts == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert select(rows, "first:2.5%", random.Random(0)) == [0]  # ceil(0.925): the published int("2.5") fails
    assert select(rows, "end:2.5%", random.Random(0)) == [36]
    assert len(select(list(range(3000)), "first:1.1%", random.Random(0))) == 33  # exactly, not float's 34


@pytest.mark.parametrize("strategy", ["first", "all:3", "middle:2", "first:0", "end:0%", "first:x%", "random:-1"])
def test_a_malformed_strategy_is_one_line(strategy):
    with pytest.raises(ConfigError, match="sampling_strategy"):
        select(list(range(10)), strategy, random.Random(0))


def test_random_draws_differ_by_seed_and_shuffle_the_datasets_in_order(tmp_path):
    rows = [{"id": f"v{i}", "video": f"v{i}.mp4", "conversations": [{"from": "human", "value": "q"},
                                                                     {"from": "gpt", "value": "a"}]}
            for i in range(20)]  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(rows))
    for i in range(20):
        (tmp_path / f"v{i}.mp4").write_bytes(b"")
    (tmp_path / "mix.yaml").write_text("datasets:\n" + "".join(
        "  - json_path: a.json\n    sampling_strategy: random:5\n" for _ in range(2)))  # fmt: skip
    got = [c.id for c in source(tmp_path / "mix.yaml", seed=3).conversations]
    random.seed(3)
    expected = []
    for _ in range(2):
        shuffled = [r["id"] for r in rows]
        random.shuffle(shuffled)
        expected += shuffled[:5]
    assert got == expected
    assert got != [c.id for c in source(tmp_path / "mix.yaml", seed=4).conversations]


def test_multi_turn_records_are_supervised_on_every_answer(tmp_path):
    require(TOKENIZER_DIR)
    from xcomp.model.processing import XCompProcessor
    from xcomp.train.data import QACollator

    data = source(mixture(tmp_path, turns=3))
    sample = data[0]
    assert len(sample.follow_ups) == 2 and "<image>" not in sample.question
    assert sample.frames.shape == (32, 64, 64, 3) and sample.duration == 32.0
    assert sample.origin[0] == str(tmp_path / "videos" / "needle_00000.mp4") and len(sample.origin[1]) == 32
    processor = XCompProcessor.from_pretrained(TOKENIZER_DIR, image_size=64)
    batch = QACollator(processor)([sample])
    labels = batch["labels"][0]
    supervised = processor.tokenizer.decode(labels[labels != IGNORE_INDEX])
    answers = [sample.answer, *(a for _, a in sample.follow_ups)]
    assert supervised == "".join(f"{a}<|im_end|>" for a in answers)
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert text.count("<|im_start|>user") == 3 and text.count("<|video_pad|>") == 1
    assert text.index("<|video_pad|>") < text.index(sample.question[:20])  # the media before the first question


def test_image_records_are_still_clips_one_per_image(tmp_path):
    data = source(mixture(tmp_path, images=2))
    single, double = data[len(data) - 2], data[len(data) - 1]
    assert single.frames.shape == (4, 64, 64, 3) and double.frames.shape == (8, 64, 64, 3)
    assert single.duration is None and single.origin is None
    assert (double.frames[:4] == double.frames[0]).all() and (double.frames[4:] == double.frames[4]).all()
    assert not (double.frames[0] == double.frames[4]).all() or "second" in double.question
    assert "<image>" not in single.question and single.question.startswith("What colour is the image?")


def test_missing_media_are_counted_and_left_out_and_data_check_reports_them(tmp_path, capsys):
    from xcomp.cli import main

    path = mixture(tmp_path)
    (tmp_path / "videos" / "count_00000.mp4").unlink()
    data = source(path)
    assert len(data) == 7 and data.skipped_before == 1
    assert "count_00000" not in [c.id for c in data.conversations]
    args = ["data", "check", "mixture", "--annotations", str(path)]
    assert main(args) == 1
    facts = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert facts["records"] == "8" and facts["missing media"] == "1" and facts["trained on"] == "7"
    assert facts["videos.json.records"] == "4" and facts["images.jsonl.sampled"] == "4"
    assert "count_00000.mp4" in facts["missing"]
    assert main([*args, "--allow-missing"]) == 0
    capsys.readouterr()
    # what a run trained on is part of its record: a resume after media appeared or vanished is refused
    assert data.record()["trained_on"] != source(mixture(tmp_path / "whole")).record()["trained_on"]
    path.write_text(path.read_text().replace("sampling_strategy: all", "sampling_strategy: first:50%"))
    assert main([*args, "--allow-missing"]) == 0
    facts = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert facts["records"] == "4" and facts["videos.json.sampled"] == "2"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r[0].pop("conversations"), "videos.json: row 1: conversations: expected a non-empty list"),
        (lambda r: r[1]["conversations"].pop(), "videos.json: row 2: conversations: expected human / gpt pairs"),
        (lambda r: r[0]["conversations"][2].update({"from": "gpt"}), "row 1: conversations[3].from: expected 'human'"),
        (lambda r: r[2].update(video=["a.mp4"]), "videos.json: row 3: video: expected a path"),
        (lambda r: r[0]["conversations"][1].update(value=None), "row 1: conversations[2]: expected"),
    ],
)
def test_a_malformed_record_is_one_line_naming_file_row_and_field(tmp_path, edit, message):
    path = mixture(tmp_path)
    rows = json.loads((tmp_path / "videos.json").read_text())
    edit(rows)
    (tmp_path / "videos.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        len(source(path))


def test_a_leading_system_turn_is_dropped_and_a_bad_mixture_file_is_one_line(tmp_path):
    path = mixture(tmp_path)
    rows = json.loads((tmp_path / "videos.json").read_text())
    rows[0]["conversations"].insert(0, {"from": "system", "value": "Be brief."})
    (tmp_path / "videos.json").write_text(json.dumps(rows))
    assert source(path)[0].question.startswith("What digit")
    for text, message in [("datasets: 3\n", "expected a 'datasets:' list"),
                          ("datasets:\n  - json_path: videos.json\n    sampling: all\n", "unknown keys ['sampling']"),
                          ("datasets:\n  - json_path: videos.json\n    sampling_strategy: top:3\n", "sampling_strategy"),
                          ("datasets: [\n", "not a YAML file")]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            len(source(path))
    with pytest.raises(ConfigError, match="data mixture not found"):
        len(source(tmp_path / "nope.yaml"))


def test_an_undecodable_video_is_replaced_by_the_next_record_and_counted(tmp_path, caplog):
    path = mixture(tmp_path)
    (tmp_path / "videos" / "needle_00000.mp4").write_bytes(b"not a video")
    data = source(path)
    sample = data[0]
    assert sample.skipped == 1 and sample.question == data[1].question
    assert "skipped record needle_00000" in caplog.text
    for video in (tmp_path / "videos").iterdir():
        video.write_bytes(b"broken")
    for image in (tmp_path / "images").iterdir():
        image.write_bytes(b"broken")
    with pytest.raises(DataError, match="records in a row from record needle_00000 on could not be decoded"):
        source(path)[0]


def test_epochs_and_global_batch_set_the_steps_and_accumulation():
    config = TrainConfig(output_dir="x", steps=None, epochs=1, batch_size=1, global_batch=4)
    assert config.schedule_for(30, 2) == (7, 2)  # 30 samples / global 4 = 1 x 2 accumulated x 2 processes
    assert TrainConfig(output_dir="x", steps=None, epochs=2, batch_size=2).schedule_for(9, 1) == (9, 1)
    with pytest.raises(ConfigError, match="not a multiple of batch_size 1 x 3 processes"):
        config.schedule_for(30, 3)
    with pytest.raises(ConfigError, match="set one of steps and epochs"):
        TrainConfig(output_dir="x", steps=10, epochs=1).validate()
    with pytest.raises(ConfigError, match="global_batch sets grad_accum"):
        TrainConfig(output_dir="x", global_batch=8, grad_accum=2).validate()


def test_training_with_the_feature_cache_gives_the_weights_of_training_without_and_evaluation_finds_its_entries(tmp_path):
    require(TOKENIZER_DIR)
    from xcomp.evaluation.features import FeatureCache
    from xcomp.model.convert import load_model
    from xcomp.model.processing import XCompProcessor
    from xcomp.pipeline import XCompPipeline
    from xcomp.shipped import shipped_model
    from xcomp.train.fit import fit
    from xcomp.video.decode import load_video
    from xcomp.video.sampling import FrameSamplingConfig

    data = source(mixture(tmp_path / "mix", images=0))
    path = shipped_model("xcomp_tiny")
    processor = XCompProcessor.from_pretrained(path, image_size=64)
    cache = FeatureCache(tmp_path / "features", 2**30, context={"backend": "auto"})
    weights = []
    for run, used in (("plain", None), ("cold", cache), ("warm", cache)):
        config = TrainConfig(output_dir=str(tmp_path / run), steps=2, batch_size=2, lr=1e-3, data=data)
        config.validate()
        weights.append(load_file(str(fit(config, load_model(path), data, processor, feature_cache=used) / "model.safetensors")))
        if run == "cold":
            assert (cache.hits, cache.misses) == (0, 4)
    assert cache.hits == 4
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(weights[2][k], weights[0][k], rtol=1e-5, atol=1e-6)
    record = data.conversations[0]
    sampling = FrameSamplingConfig(fps=1.0, min_frames=8, max_frames=32, multiple_of=4, size=64)
    XCompPipeline(load_model(path), processor, feature_cache=cache).encode(load_video(record.paths[0], sampling))
    assert cache.hits == 5  # evaluation reads the entry training wrote


def test_the_sct_recipe_composes_with_the_papers_settings():
    require(ROOT.parent / "shared" / "fixtures" / "videochat_flash_tiny")
    cfg = compose_run(Path("/tmp"), "+experiment=recipe/sct_2b",
                      f"model.path={ROOT.parent / 'shared' / 'fixtures' / 'videochat_flash_tiny'}",
                      "train.data.mixture=m.yaml", "data.annotations=a.json", "data.videos=v")  # fmt: skip
    t = cfg.train
    assert (t.lr, t.global_batch, t.epochs, t.steps, t.warmup_ratio, t.precision) == (1e-5, 32, 1, None, 0.03, "bf16")
    assert t.gradient_checkpointing and not t.train_vision and t.train_llm and t.train_projector
    assert (list(t.data.num_frames), t.data.min_frames, t.data.image_size, t.data.fps) == ([1024], 128, 448, 1.0)
    assert cfg.trainer.strategy == "deepspeed_stage_2" and cfg.compress._target_.endswith("LPComp")
    assert cfg.schedule._target_.endswith("cosine") and cfg.data._target_.endswith("LVBench")


TINY_SCT = ["model=xcomp_tiny", "trainer=cpu", "data=synth", "data.n=1", "data.families=[locate]",
            "data.video_frames=16", "frames=16", "train.data.image_size=64", "train.data.num_frames=[32]",
            "train.data.min_frames=8", "train.precision=fp32", "train.global_batch=2", "train.workers=1",
            "train.save_every=2"]  # fmt: skip
"""The tiny override documented in experiments/recipe/sct_2b.yaml (and a smaller test suite)."""


def test_the_sct_recipe_runs_on_the_cpu_resumes_after_a_kill_at_the_exact_step_and_tests_the_result(tmp_path):
    require(TOKENIZER_DIR)
    path = mixture(tmp_path / "mix", n=3)  # 12 videos (2 turns each) + 4 image records
    (tmp_path / "mix" / "videos" / "order_00001.mp4").unlink()  # 15 records with their media: 7 steps of 2
    command = [sys.executable, "run.py", "+experiment=recipe/sct_2b", *TINY_SCT, f"train.data.mixture={path}",
               f"paths.root={tmp_path}", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]  # fmt: skip
    again = killed_and_rerun(command, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "skipped 1 training records: 1 without their media when read" in again.stdout + again.stderr
    (record,) = all_runs(tmp_path, "recipe_sct_2b")
    assert record.info.status == "FINISHED" and "accuracy" in record.data.metrics
    steps = [m.step for m in client(tmp_path).get_metric_history(record.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, 8)), steps  # each step once, though steps 1-2 ran before the kill
    assert record.data.metrics["train.skipped"] == 1 and record.data.params["train.data.mixture"] == str(path)
    final = np.array(sorted(tmp_path.glob("outputs/train/*/final")))
    assert len(final) == 1 and (final[0] / "model.safetensors").is_file()
