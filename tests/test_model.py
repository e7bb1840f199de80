"""Semantics of the XComp model: dense parity with Qwen2, LP-Comp, caching, padding, training."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2ForCausalLM

from tests.conftest import VIDEO_ID, frames, prompt_ids, tiny_model
from xcomp.compression.token_drop import suffix_slots, top_slots_by_score

METHODS = ["dense", "lp_comp", "uniform_drop", "pre_pool", "attn_prune"]


def _spliced_embeds(model, ids, visual):
    """Prompt embeddings with the video's visual tokens at the placeholder (built independently of the model)."""
    embed = model.get_input_embeddings()
    p = int((ids[0] == VIDEO_ID).nonzero())
    return torch.cat([embed(ids[0, :p]), visual, embed(ids[0, p + 1 :])])[None], p


def test_dense_logits_equal_plain_qwen2():
    model = tiny_model("dense")
    ids, pix = prompt_ids(), frames(8)
    with torch.no_grad():
        visual = model.model.encode_video(pix, [8])[0]
        embeds, _ = _spliced_embeds(model, ids, visual)
        qwen = Qwen2ForCausalLM(model.config.text_config).eval()
        qwen.model.load_state_dict(model.model.language_model.state_dict())
        qwen.lm_head.weight = model.lm_head.weight
        expected = qwen(inputs_embeds=embeds).logits
        got = model(ids, pixel_values=pix).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _masked_reference(model, embeds, video_start, n_frames, renumber=False):
    """LP-Comp written as masking: layer i's keys exclude visual tokens outside each frame's last kept[i] slots.

    Queries of dropped tokens do not matter (nothing reads them later), so the last position's output equals
    the dropping implementation exactly when positions are kept and the suffix is selected.
    """
    lm = model.model.language_model
    schedule = model.config.compression_schedule()
    S = embeds.shape[1]
    T = model.config.tokens_per_frame
    slots = torch.full((S,), -1)
    slots[video_start : video_start + n_frames * T] = torch.arange(n_frames * T) % T
    masks = suffix_slots(list(schedule.kept), T)
    hidden = embeds
    positions = torch.arange(S)[None]
    for i, layer in enumerate(lm.layers):
        alive = (slots < 0) | masks[i][slots.clamp_min(0)]
        allowed = torch.ones(S, S, dtype=torch.bool).tril() & alive[None, :]
        allowed |= torch.eye(S, dtype=torch.bool)
        mask = torch.zeros(S, S).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
        pos = (alive.long().cumsum(0) - 1)[None] if renumber else positions
        hidden = layer(hidden, attention_mask=mask, position_embeddings=lm.rotary_emb(hidden, pos))
    return model.lm_head(lm.norm(hidden))[:, -1]


def test_lpcomp_keeps_suffix_at_original_positions():
    model = tiny_model("lp_comp")
    ids, pix = prompt_ids(), frames(8)
    with torch.no_grad():
        visual = model.model.encode_video(pix, [8])[0]
        embeds, start = _spliced_embeds(model, ids, visual)
        out = model(ids, pixel_values=pix)
        expected = _masked_reference(model, embeds, start, 8)
        renumbered = _masked_reference(model, embeds, start, 8, renumber=True)
    torch.testing.assert_close(out.logits[:, -1], expected, atol=1e-5, rtol=0)
    assert not torch.allclose(out.logits[:, -1], renumbered, atol=1e-3), "test cannot tell position schemes apart"
    # Output tokens: all text plus the last k slots of every frame, in order, at their original indices.
    T, S, k = 16, embeds.shape[1], model.config.compression_schedule().output_tokens
    visual_kept = [start + f * T + j for f in range(8) for j in range(T - k, T)]
    expected_index = list(range(start)) + visual_kept + list(range(start + 8 * T, S))
    assert out.kept_index[0].tolist() == expected_index


def test_tokens_per_layer_follow_schedule():
    model = tiny_model("lp_comp")
    ids, pix = prompt_ids(), frames(8)
    with torch.no_grad():
        out = model(ids, pixel_values=pix)
    text = ids.shape[1] - 1
    kept = list(model.config.compression_schedule().kept)
    assert out.tokens_per_layer[:, 0].tolist() == [text + 8 * k for k in kept] + [text + 8 * kept[-1]]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "attn_prune"])
def test_cached_greedy_equals_recomputation(method):
    """attn_prune is excluded by design: it prunes once from the prompt's last token (FastV), whereas an
    uncached recomputation re-scores from the newest generated token and may keep other tokens."""
    model = tiny_model(method)
    ids, pix = prompt_ids(), frames(8)
    kwargs = dict(pixel_values=pix, num_frames=[8], max_new_tokens=8, do_sample=False)
    cached = model.generate(ids, use_cache=True, **kwargs)
    recomputed = model.generate(ids, use_cache=False, **kwargs)
    assert cached.tolist() == recomputed.tolist()
    assert len(set(cached[0, ids.shape[1] :].tolist())) > 1, "degenerate output makes the test weak"


def test_kv_cache_shrinks_with_schedule():
    model = tiny_model("lp_comp")
    dense = tiny_model("dense")
    ids, pix = prompt_ids(), frames(8)
    with torch.no_grad():
        out = model(ids, pixel_values=pix, use_cache=True)
        ref = dense(ids, pixel_values=pix, use_cache=True)
    kept = model.config.compression_schedule().kept
    text = ids.shape[1] - 1
    assert out.cache.layer_lengths() == [text + 8 * k for k in kept]
    assert out.cache.nbytes() < ref.cache.nbytes()
    assert out.cache.nbytes() / ref.cache.nbytes() == pytest.approx(
        sum(text + 8 * k for k in kept) / (len(kept) * (text + 8 * 16))
    )


def _batch(prompts, videos):
    width = max(p.shape[1] for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, width - p.shape[1] :] = p[0]
        mask[b, width - p.shape[1] :] = 1
    return ids, mask, torch.cat(videos), [v.shape[0] for v in videos]


@pytest.mark.parametrize("method", METHODS)
def test_padded_batch_equals_unbatched(method):
    model = tiny_model(method)
    prompts = [prompt_ids(3, 4, seed=1), prompt_ids(5, 9, seed=2)]
    videos = [frames(8, seed=1), frames(4, seed=2)]
    ids, mask, pix, counts = _batch(prompts, videos)
    kwargs = dict(max_new_tokens=6, do_sample=False)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, pixel_values=pix, num_frames=counts).logits[:, -1]
    batched_gen = model.generate(ids, attention_mask=mask, pixel_values=pix, num_frames=counts, **kwargs)
    for b in range(2):
        with torch.no_grad():
            single = model(prompts[b], pixel_values=videos[b], num_frames=[counts[b]]).logits[:, -1]
        torch.testing.assert_close(batched[b], single[0], atol=1e-5, rtol=1e-5)
        gen = model.generate(prompts[b], pixel_values=videos[b], num_frames=[counts[b]], **kwargs)
        assert batched_gen[b, ids.shape[1] :].tolist() == gen[0, prompts[b].shape[1] :].tolist()


def test_training_gradients_flow_and_checkpointing_matches():
    model = tiny_model("lp_comp").train()
    ids, pix = prompt_ids(3, 6), frames(8)
    labels = torch.full_like(ids, -100)
    labels[0, -3:] = ids[0, -3:]
    visual = model.model.encode_video(pix, [8])[0].detach().requires_grad_(True)
    loss = model(ids, visual_embeds=[visual], labels=labels).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert torch.isfinite(loss) and loss > 0
    assert grads["model.language_model.layers.0.self_attn.q_proj.weight"].abs().sum() > 0
    # Every visual token (dropped later or not) influences the answer through the layers it reached.
    assert (visual.grad.abs().sum(-1) > 0).all()
    model.zero_grad()
    model.activation_checkpointing_enable()
    visual2 = visual.detach().clone().requires_grad_(True)
    loss2 = model(ids, visual_embeds=[visual2], labels=labels).loss
    loss2.backward()
    torch.testing.assert_close(loss2, loss)
    for name, g in grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, g, atol=1e-5, rtol=1e-4)


def test_loss_counts_only_labelled_tokens():
    model = tiny_model("lp_comp")
    ids, pix = prompt_ids(3, 6), frames(4)
    labels = torch.full_like(ids, -100)
    labels[0, -1] = ids[0, -1]
    labels[0, -3] = ids[0, -3]
    with torch.no_grad():
        out = model(ids, pixel_values=pix, labels=labels)
        full = model(ids, pixel_values=pix).logits[0]
    manual = torch.nn.functional.cross_entropy(full[[-4, -2]], ids[0, [-3, -1]])
    torch.testing.assert_close(out.loss, manual)
    torch.testing.assert_close(out.logits, full[[-4, -2]])


def test_pre_pool_and_uniform_drop_budgets():
    ids, pix = prompt_ids(), frames(8)
    text = ids.shape[1] - 1
    pooled = tiny_model("pre_pool", pool_tokens_per_frame=2)
    with torch.no_grad():
        out = pooled(ids, pixel_values=pix)
    assert out.tokens_per_layer[:, 0].tolist() == [text + 8 * 2] * 5
    uniform = tiny_model("uniform_drop")
    with torch.no_grad():
        out = uniform(ids, pixel_values=pix)
    kept = list(uniform.config.compression_schedule().kept)
    assert out.tokens_per_layer[:-1, 0].tolist() == [text + 8 * k for k in kept]


def test_top_slots_by_score_picks_highest_per_frame():
    scores = torch.tensor([[9.0, 0.1, 0.5, 0.2, 0.9, 0.3, 0.8, 7.0]])
    visual = torch.tensor([[False, True, True, True, True, True, True, False]])
    keep = top_slots_by_score(scores, visual, per_frame=3, k=1)
    assert keep[0].nonzero().flatten().tolist() == [2, 4]


def test_text_only_prompt():
    model = tiny_model("lp_comp")
    ids = torch.randint(0, VIDEO_ID, (1, 9))
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 12)


def test_compact_vocabulary_reads_and_writes_tokenizer_ids(tmp_path):
    from xcomp import XCompConfig, XCompForCausalLM

    subset = [5, 17, 42, 300, VIDEO_ID - 1]
    cfg = XCompConfig.tiny(num_layers=2, vocab_subset=subset, tokenizer_vocab_size=VIDEO_ID + 1, video_token_id=VIDEO_ID)
    cfg.text_config.initializer_range = 0.5
    torch.manual_seed(0)
    model = XCompForCausalLM(cfg).eval()
    assert model.model.language_model.embed_tokens.weight.shape[0] == len(subset) + 1
    ids = torch.tensor([[5, 17, VIDEO_ID, 42, 7]])  # 7 is outside the subset: read as the shared "other" row
    out = model.generate(ids, pixel_values=frames(4), num_frames=[4], max_new_tokens=6, do_sample=False)
    assert set(out[0, ids.shape[1] :].tolist()) <= set(subset)
    labels = torch.full_like(ids, -100)
    labels[0, -1] = 42
    assert torch.isfinite(model(ids, pixel_values=frames(4), labels=labels).loss)
    model.save_pretrained(tmp_path)
    loaded = XCompForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, pixel_values=frames(4)).logits, model(ids, pixel_values=frames(4)).logits)


def test_attn_prune_training_scores_from_the_last_prompt_token_not_the_answer():
    """With labels, the pruning query is the prompt's last token: the kept visual tokens must be those chosen
    for the prompt alone, so the answer cannot leak into the selection."""
    model = tiny_model("attn_prune")
    prompt = prompt_ids()
    answer = torch.randint(0, VIDEO_ID, (1, 3), generator=torch.Generator().manual_seed(5))
    ids = torch.cat([prompt, answer], dim=1)
    labels = torch.cat([torch.full_like(prompt, -100), answer], dim=1)
    pixels = frames(8)
    with torch.no_grad():
        alone = model(input_ids=prompt, pixel_values=pixels).kept_index
        trained = model(input_ids=ids, pixel_values=pixels, labels=labels).kept_index
    assert torch.equal(trained[:, : alone.shape[1]], alone)
