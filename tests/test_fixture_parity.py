"""The published VideoChat-Flash / XComp implementation's outputs on the shared tiny fixture, reproduced."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FIXTURE, require
from xcomp.compression.schedule import CompressionSchedule
from xcomp.model.convert import load_published


@pytest.fixture(scope="module")
def fixture_data():
    require(FIXTURE)
    return (
        load_file(str(FIXTURE / "inputs.safetensors")),
        load_file(str(FIXTURE / "outputs.safetensors")),
        load_file(str(FIXTURE / "outputs_lpcomp.safetensors")),
    )


def _run(model, inputs, **kwargs):
    with torch.no_grad():
        return model(
            inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"],
            num_frames=[8],
            **kwargs,
        )


def _greedy(model, inputs):
    out = model.generate(
        inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        pixel_values=inputs["pixel_values"],
        num_frames=[8],
        max_new_tokens=8,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    return out.sequences[0, inputs["input_ids"].shape[1] :], torch.stack([s[0] for s in out.scores])


def test_dense_forward_matches_published(fixture_data):
    inputs, ref, _ = fixture_data
    model = load_published(FIXTURE)
    assert model.config.compression == "dense"
    out = _run(model, inputs, output_hidden_states=True)
    hidden = torch.stack([h[0] for h in out.hidden_states])
    assert hidden.shape == ref["llm_hidden_states"].shape
    torch.testing.assert_close(hidden[0], ref["inputs_embeds"], atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden, ref["llm_hidden_states"], atol=1e-5, rtol=0)
    logits = out.logits[0]
    torch.testing.assert_close(logits[-1], ref["logits_last"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits[-4:], ref["logits_tail4"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits[:, ref["logits_subset_vocab_ids"]], ref["logits_subset"], atol=1e-4, rtol=0)
    assert torch.equal(logits.argmax(-1), ref["logits_argmax_all"])
    torch.testing.assert_close(logits.logsumexp(-1), ref["logits_logsumexp_all"], atol=1e-4, rtol=0)


def test_dense_greedy_generation_matches_published(fixture_data):
    inputs, ref, _ = fixture_data
    ids, scores = _greedy(load_published(FIXTURE), inputs)
    assert ids.tolist() == ref["generated_ids"].tolist()
    top = scores.topk(8, dim=-1)
    assert torch.equal(top.indices, ref["generate_step_top8_ids"])
    torch.testing.assert_close(top.values, ref["generate_step_top8_logits"], atol=1e-4, rtol=0)


def test_lpcomp_matches_published_code(fixture_data):
    """The published XComp run: cosine schedule one layer early, positions renumbered after each drop."""
    inputs, _, ref = fixture_data
    schedule = CompressionSchedule.cosine(28, shift=1)
    model = load_published(
        FIXTURE, compression="lp_comp", schedule=list(schedule.kept), position_ids_after_drop="renumbered"
    )
    out = _run(model, inputs, output_hidden_states=True)
    assert out.tokens_per_layer[:, 0].tolist() == ref["lpcomp_hidden_states_lengths"].tolist()
    assert [i for i in schedule.drop_layers()] == ref["lpcomp_llm_compress_layer_list"].tolist()
    torch.testing.assert_close(out.hidden_states[-1][0], ref["lpcomp_final_hidden"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits[0, -1], ref["lpcomp_logits_last"], atol=1e-4, rtol=0)
    ids, scores = _greedy(model, inputs)
    assert ids.tolist() == ref["lpcomp_generated_ids"].tolist()
    top = scores.topk(8, dim=-1)
    assert torch.equal(top.indices, ref["lpcomp_generate_step_top8_ids"])
    torch.testing.assert_close(top.values, ref["lpcomp_generate_step_top8_logits"], atol=1e-4, rtol=0)
