import json

import pytest
import torch

from tests.conftest import FIXTURE, REAL_CONFIG, TOKENIZER_DIR, require
from xcomp.accounting import run_cost
from xcomp.errors import XCompError
from xcomp.model.convert import load_config
from xcomp.model.processing import XCompProcessor, build_prompt, parse_choice


@pytest.fixture(scope="module")
def processor():
    return XCompProcessor.from_pretrained(require(TOKENIZER_DIR))


def test_prompt_round_trips_with_published_ids(processor):
    meta = json.loads((require(FIXTURE) / "meta.json").read_text())
    prompt = build_prompt(meta["question"], duration=8.0, num_frames=8)
    assert prompt.replace("<|video_pad|>", "<image>") == meta["prompt"]
    ids = processor.tokenize([prompt])["input_ids"][0]
    published = torch.tensor(meta["input_ids"])
    assert torch.equal(torch.where(published == -200, processor.video_token_id, published), ids)
    assert processor.tokenizer.decode(ids) == prompt
    assert processor.decode(meta["generated_ids"]) == meta["generated_text"].strip()


def test_multiple_choice_prompt_and_parsing(processor):
    prompt = build_prompt("What colour was the star?", options=["red", "green", "blue", "yellow"])
    assert "(A) red\n(B) green\n(C) blue\n(D) yellow\n" in prompt
    assert prompt.count("<|video_pad|>") == 1 and prompt.endswith("<|im_start|>assistant\n")
    assert parse_choice("B", 4) == "B"
    assert parse_choice("(C) blue", 4) == "C"
    assert parse_choice("The answer is D.", 4) == "D"
    assert parse_choice("E", 4) is None
    assert parse_choice("I am not sure", 4) is None
    options = ["red circle", "blue star", "3", "the first quarter"]
    assert parse_choice("Blue star.", 4, options) == "B"
    assert parse_choice("the first quarter", 4, options) == "D"
    assert parse_choice("3", 4, options) == "C"
    assert parse_choice("green star", 4, options) is None
    for bad in ["red", ["red"], ["red", ""], ["red", 3], list("ABCDEFGHIJK")]:  # a string would be its letters
        with pytest.raises(XCompError, match="options"):
            build_prompt("Which colour?", options=bad)


def test_left_padding(processor):
    batch = processor.tokenize(["<|im_start|>user\nhi<|im_end|>", "<|im_start|>user\nhello there friend<|im_end|>"])
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()


def test_accounting_matches_schedule_and_model():
    cfg = load_config(require(REAL_CONFIG)).with_compression(compression="lp_comp")
    dense = run_cost(cfg.with_compression(compression="dense"), 1024)
    lp = run_cost(cfg, 1024)
    ratio = lp.ratio_to(dense)
    assert ratio["token_layers"] == pytest.approx((64 * 28 + 1024 * 246) / (28 * (64 + 1024 * 16)))
    assert ratio["kv_cache_bytes"] == pytest.approx(ratio["token_layers"])
    assert 0.45 < ratio["prefill_flops"] < 0.56
    assert lp.tokens_per_layer[0] == 64 + 1024 * 16 and lp.tokens_per_layer[-1] == 64 + 1024
