"""Checkpoint compatibility: real 2B shape on meta, published key layout, save/load round trips."""

from __future__ import annotations

import json

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tests.conftest import REAL_CONFIG, SHARED, VIDEO_ID, frames, prompt_ids, require, tiny_model
from xcomp import XCompForCausalLM
from xcomp.accounting import parameter_counts
from xcomp.model.convert import load_config, load_model, load_published, map_key, save_published

KEY_LIST = SHARED / "reference" / "videochat_flash_2b_state_dict_keys.txt"


def _published_keys():
    rows = [line.split("\t") for line in require(KEY_LIST).read_text().splitlines() if not line.startswith("#")]
    return {name: json.loads(shape) for name, shape, _ in rows}


def test_real_shape_builds_on_meta_with_published_names_and_shapes():
    config = load_config(require(REAL_CONFIG))
    with torch.device("meta"):
        model = XCompForCausalLM(config)
    ours = {map_key(k, to_ours=False): list(v.shape) for k, v in model.state_dict().items()}
    assert ours == _published_keys()
    counts = parameter_counts(config)
    assert counts["total"] == 1_838_128_640  # the published model's unique parameter count
    assert 1.5e9 < counts["llm"] < 1.6e9
    assert 0.28e9 < counts["vision_tower"] < 0.30e9


def test_published_layout_round_trip(tmp_path):
    model = tiny_model("lp_comp")
    save_published(model, tmp_path / "published")
    saved = set(json.loads((tmp_path / "published" / "config.json").read_text()))
    assert {"mm_projector_type", "mm_local_num_frames", "mm_hidden_size"} <= saved
    loaded = load_published(tmp_path / "published", compression="lp_comp")
    ids, pix = prompt_ids(), frames(8)
    published_ids = ids.masked_fill(ids == VIDEO_ID, -200)  # the published code marks the video with -200
    with torch.no_grad():
        torch.testing.assert_close(loaded(published_ids, pixel_values=pix).logits, model(ids, pixel_values=pix).logits)
    # Dense by default: a VideoChat-Flash checkpoint is the uncompressed base model.
    assert load_model(tmp_path / "published").config.compression == "dense"


def test_save_pretrained_and_auto_classes(tmp_path):
    model = tiny_model("uniform_drop")
    model.save_pretrained(tmp_path / "ours")
    assert (tmp_path / "ours" / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path / "ours").compression == "uniform_drop"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(loaded, XCompForCausalLM)
    ids, pix = prompt_ids(), frames(4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, pixel_values=pix).logits, model(ids, pixel_values=pix).logits)
    switched = load_model(tmp_path / "ours", compression="dense")
    assert switched.config.compression == "dense"
