"""Frame tagging: labels follow the scripted events, and training makes visual tokens carry colour."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.conftest import TOKENIZER_DIR, require
from xcomp.errors import ConfigError
from xcomp.model.convert import load_model
from xcomp.synth.generate import SynthParams, make_case
from xcomp.train.config import TrainConfig
from xcomp.train.fit import fit
from xcomp.train.frame_tags import ATTRIBUTES, FrameTagCollator, FrameTagDataset, FrameTagger, frame_labels
from xcomp.train.recipe import build_model, build_processor
from xcomp.train.sources.jsonl import JsonlQAData
from xcomp.train.sources.synth import SynthQAData


def test_labels_follow_the_events():
    params = SynthParams(frames=32, size=64, span=3, noise=0.0)
    for family, index in [("count", 0), ("order", 1), ("needle", 2), ("needle", 5)]:
        record = make_case(family, index, 0, params, render_frames=False).record
        labels = frame_labels(record, 32)
        shown = set()
        for event in record["events"]:
            colour, shape = event["object"].split()
            span = labels[event["start"] : event["end"]]
            assert (span[:, 0] == ATTRIBUTES["colour"].index(colour) + 1).all()
            assert (span[:, 1] == ATTRIBUTES["shape"].index(shape) + 1).all()
            assert (span[:, 2] == (event["digit"] + 1 if "digit" in event else 0)).all()
            shown.update(range(event["start"], event["end"]))
        assert not labels[sorted(set(range(32)) - shown)].any()
    digits = [make_case("needle", i, 0, params, render_frames=False).record for i in range(12)]
    assert any("digit" in r["events"][0] for r in digits)


def test_frame_tags_needs_noise_free_synthetic_data():
    with pytest.raises(ConfigError, match="synth"):
        TrainConfig.from_dict({"output_dir": "x", "objective": "frame_tags", "data": JsonlQAData(jsonl="q.jsonl")})
    with pytest.raises(ConfigError, match="noise"):
        TrainConfig.from_dict({"output_dir": "x", "objective": "frame_tags", "data": SynthQAData(noise=0.5)})


def _config(tmp_path) -> TrainConfig:
    require(TOKENIZER_DIR)
    return TrainConfig.from_dict(
        {
            "output_dir": str(tmp_path / "tags"),
            "tokenizer": str(TOKENIZER_DIR),
            "objective": "frame_tags",
            "tiny_hidden_size": 64,
            "tiny_patch_size": 16,
            "steps": 120,
            "batch_size": 4,
            "lr": 2e-3,
            "train_vision": True,
            "train_llm": False,
            "save_every": 120,
            "log_every": 40,
            "data": SynthQAData(families=["count", "needle"], num_samples=480, num_frames=[16], span=3, noise=0.0),
        }
    )


def _colour_accuracy(tagger: FrameTagger, batch: dict) -> float:
    tagger.eval()
    with torch.no_grad():
        return float(tagger(**batch).accuracy["colour"])


def test_training_teaches_tokens_the_colour_words(tmp_path):
    """Before training the tokens do not match the colour words; after 120 steps they do, on unseen videos;
    the LLM is untouched and the saved folder is a plain model."""
    config = _config(tmp_path)
    processor = build_processor(config)
    dataset = config.data
    model = build_model(config, processor, dataset)
    llm_before = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    vision_before = model.model.vision_tower.encoder.patch_embed.proj.weight.clone()
    tagger = FrameTagger(model, processor.tokenizer)
    held_out = replace(config.data, seed=99)
    collate = FrameTagCollator(processor)
    batch = collate([FrameTagDataset(held_out)[i] for i in range(8)])
    before = _colour_accuracy(tagger, batch)
    final = fit(config, tagger, FrameTagDataset(dataset), processor, collate_fn=collate)
    after = _colour_accuracy(tagger, batch)
    assert before < 0.4 and after > 0.8, (before, after)
    saved = load_model(final)
    for k, v in saved.model.language_model.state_dict().items():
        torch.testing.assert_close(v, llm_before[k], rtol=0, atol=0)
    assert not torch.equal(saved.model.vision_tower.encoder.patch_embed.proj.weight, vision_before)


def test_the_head_starts_from_its_seed_not_the_global_generator(tmp_path):
    """The tagger is built before the trainer seeds; its head must not depend on what ran before (reruns agree)."""
    config = _config(tmp_path)
    processor = build_processor(config)
    model = build_model(config, processor, config.data)
    heads = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        heads.append(FrameTagger(model, processor.tokenizer, seed=5).none.detach().clone())
    assert torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], FrameTagger(model, processor.tokenizer, seed=6).none)
