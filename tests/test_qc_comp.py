"""QC-Comp: segment-local frame scoring, shifted passes, bounded memory, top-k selection and the answer API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from tests.conftest import VIDEO_ID, VOCAB, prompt_ids, tiny_model
from xcomp.compression.qc_comp import (
    FrameScores,
    QCComp,
    default_layers,
    score_frames,
    segment_windows,
    split_prompt,
)
from xcomp.model.processing import XCompProcessor, build_prompt, parse_choice
from xcomp.pipeline import XCompPipeline

T, D = 16, 64  # tiny model: tokens per frame, hidden width


def _visual(n: int, seed: int = 0) -> torch.Tensor:
    """Random projector outputs for n frames (scoring needs no vision tower)."""
    return torch.randn(n * T, D, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    return tiny_model("lp_comp")


@pytest.fixture(scope="module")
def prompt():
    return split_prompt(prompt_ids(3, 6), VIDEO_ID)


def test_default_band_is_the_reference_middle_layers():
    assert default_layers(28) == tuple(range(6, 24))
    assert default_layers(4) == (0, 1, 2)


def test_shifts_given_as_a_list_are_stored_as_a_tuple():
    config = QCComp(segment_frames=16, shifts=[0, 8])  # as TOML files and argparse give them
    assert config.shifts == config.pass_offsets == (0, 8) and hash(config)


@pytest.mark.parametrize("shifts", [(0, 4), (0, 3, 6), (2,)])
@pytest.mark.parametrize("n", [1, 5, 8, 20, 37])
def test_shifted_passes_cover_every_frame(n, shifts):
    starts = segment_windows(n, 8, shifts)
    W = min(8, n)
    assert all(0 <= s <= n - W for s in starts)
    covered = torch.zeros(n, dtype=torch.long)
    for s in starts:
        covered[s : s + W] += 1
    assert (covered >= 1).all()
    if len(shifts) > 1 and n >= 16:
        # Every boundary of one pass lies inside a window of another: neighbours always compete together.
        assert all(any(s <= f < f + 1 < s + W for s in starts) for f in range(n - 1))
        assert (covered[W // 2 : n - W // 2] >= 2).all()


def test_single_pass_leaves_boundaries():
    starts = segment_windows(20, 8, (0,))
    assert not any(s <= 7 < 8 < s + 8 for s in starts)  # frames 7 and 8 never share a window


def test_scores_average_over_the_windows_that_saw_each_frame(model, prompt):
    visual = _visual(20)
    scores = score_frames(model, *prompt, visual, QCComp(segment_batch=3))
    starts = segment_windows(20, 8, (0, 4))
    total, passes = torch.zeros(3, 20), torch.zeros(20, dtype=torch.long)
    for s in starts:  # each window scored on its own, as an 8-frame video
        total[:, s : s + 8] += score_frames(model, *prompt, visual[s * T : (s + 8) * T]).layer_scores
        passes[s : s + 8] += 1
    assert scores.passes.tolist() == passes.tolist() and scores.windows == len(starts)
    torch.testing.assert_close(scores.layer_scores, total / passes, atol=1e-5, rtol=1e-5)
    assert scores.layer_scores.shape == (3, 20) and scores.layers == (0, 1, 2)
    torch.testing.assert_close(scores.scores, scores.layer_scores.sum(0))
    # The scoring pass runs the model's LP-Comp schedule on every window, up to the last scored layer.
    kept = model.config.compression_schedule().kept
    text = prompt[0].numel() + prompt[1].numel()
    assert scores.tokens_per_layer == [len(starts) * (text + 8 * k) for k in kept[:3]]


def test_local_scores_ignore_frames_in_other_segments(model, prompt):
    visual = _visual(16)
    changed = visual.clone()
    changed[8 * T :] = _visual(8, seed=1)
    one_pass = QCComp(shifts=(0,))
    a, b = score_frames(model, *prompt, visual, one_pass), score_frames(model, *prompt, changed, one_pass)
    torch.testing.assert_close(a.scores[:8], b.scores[:8], rtol=0, atol=0)
    assert not torch.allclose(a.scores[8:], b.scores[8:])

    # With shifted passes, frames 0-3 share windows only with frames 0-7.
    changed = visual.clone()
    changed[15 * T :] = _visual(1, seed=2)
    a, b = score_frames(model, *prompt, visual), score_frames(model, *prompt, changed)
    torch.testing.assert_close(a.scores[:4], b.scores[:4], rtol=0, atol=0)
    assert not torch.allclose(a.scores[8:], b.scores[8:])

    # The global scorer is not local: the far frame changes the first frame's share of attention.
    glob = QCComp(scorer="global")
    a, b = score_frames(model, *prompt, visual, glob), score_frames(model, *prompt, changed, glob)
    assert a.windows == 1 and not torch.allclose(a.scores[:4], b.scores[:4])


def _align_question_with(model, direction: torch.Tensor, layers) -> None:
    """Make every query of the scored layers equal to u and every key proportional to (x · direction) u.

    u is the lowest-frequency rotary pair (dimension head_dim/2 - 1), which rotates by ~1e-5 rad per position,
    so the logit barely depends on where the tokens sit: a frame whose tokens point along ``direction`` gets
    the question's attention wherever it is.
    """
    lm = model.model.language_model
    with torch.no_grad():
        for i in layers:
            attn, norm = lm.layers[i].self_attn, lm.layers[i].input_layernorm
            hd = attn.head_dim
            for proj in (attn.q_proj, attn.k_proj):
                proj.weight.zero_()
                proj.bias.zero_()
            for h in range(attn.q_proj.out_features // hd):
                attn.q_proj.bias[h * hd + hd // 2 - 1] = 4.0
            for h in range(attn.k_proj.out_features // hd):
                attn.k_proj.weight[h * hd + hd // 2 - 1] = 4.0 * direction / norm.weight


@pytest.mark.parametrize("where", [0, 11, 23])
def test_aligned_frame_ranks_first_wherever_it_sits(prompt, where):
    model = tiny_model("lp_comp")
    direction = torch.zeros(D)
    direction[5] = 1.0
    _align_question_with(model, direction, default_layers(4))
    visual = _visual(24)
    visual[where * T : (where + 1) * T] += 20 * direction
    scores = score_frames(model, *prompt, visual)
    assert int(scores.scores.argmax()) == where
    assert scores.top_k(1).tolist() == [where]
    # Without the planted frame another frame ranks first: the ranking is the content's doing, not the position's.
    plain = score_frames(model, *prompt, _visual(24))
    assert int(plain.scores.argmax()) != where


def test_top_k_keeps_temporal_order():
    s = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.5, 0.5])
    scores = FrameScores(s, s[None], (0,), torch.ones(6, dtype=torch.long), "local", 1, [0])
    assert scores.top_k(3).tolist() == [1, 3, 4]
    assert scores.top_k(4).tolist() == [1, 3, 4, 5]
    assert scores.top_k(10).tolist() == list(range(6))
    assert QCComp(keep=0.25).num_kept(1024) == 256 and QCComp(keep_frames=9).num_kept(4) == 4


class _Allocations(TorchDispatchMode):
    """Largest and total bytes of the fresh (non-view) tensors created by every aten op."""

    def __init__(self):
        super().__init__()
        self.largest = self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t._is_view():
                self.largest = max(self.largest, t.numel() * t.element_size())
                self.total += t.numel() * t.element_size()
        return out


def test_scoring_memory_is_bounded(model, prompt):
    allocations = {}
    for n in (512, 2048):
        visual = _visual(n)
        with _Allocations() as alloc:
            scores = score_frames(model, *prompt, visual)
        assert scores.scores.shape == (n,) and torch.isfinite(scores.scores).all()
        allocations[n] = alloc
    # The largest tensor is one batch of windows: independent of the video length, far below N^2 frames
    # (16 MiB in float32 at 2,048 frames), let alone attention over all N*T visual tokens.
    assert allocations[2048].largest == allocations[512].largest < 2 * 2**20
    # Work (and so all bytes ever allocated) grows linearly: 4x the frames, ~4x the bytes.
    assert allocations[2048].total / allocations[512].total < 4.5


def test_run_prefill_hook_sees_layer_inputs_and_stops(model):
    ids, visual = prompt_ids(), _visual(4)
    tokens, _ = model.model.embed_inputs(ids, None, [visual])
    with torch.no_grad():
        _, _, hidden = model.model.run_prefill(tokens, None, output_hidden_states=True)
        seen = []
        _, counts, _ = model.model.run_prefill(
            tokens, None, layer_callback=lambda i, layer, t, pe: seen.append((i, t.hidden)), stop_at_layer=2
        )
    assert [i for i, _ in seen] == [0, 1, 2] and len(counts) == 3
    for i, h in seen:
        torch.testing.assert_close(h, hidden[i])


def _tiny_processor() -> XCompProcessor:
    """A word-level tokenizer over the tiny model's 512 ids, with the chat-template special tokens."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|im_start|>", "<|im_end|>", "<|video_pad|>"]
    sample = build_prompt("What colour is the ball?", ["red", "green", "blue", "yellow"], 10.0, 12)
    words = [w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(sample) if w not in "<|>"]
    words = ["[UNK]", *specials[:2], *dict.fromkeys(list("ABCD") + words)]
    words += [f"w{i}" for i in range(VOCAB - 1 - len(words))]
    vocab = {w: i for i, w in enumerate([*words, "<|video_pad|>"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    processor = XCompProcessor(PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]"), image_size=64)
    assert processor.video_token_id == VIDEO_ID
    return processor


def test_answer_returns_consistent_accounting(model):
    processor = _tiny_processor()
    pipe = XCompPipeline(model, processor, selector=QCComp(segment_frames=4))
    video = np.random.default_rng(0).integers(0, 256, (10, 48, 48, 3), dtype=np.uint8)  # 10: not whole clips
    options = ["red", "green", "blue", "yellow"]
    ans = pipe.answer(video, "What colour is the ball?", options=options, keep=4, fps=2.0, max_new_tokens=4)

    assert ans.num_frames == 10 and ans.kept_frames == ans.scores.top_k(4).tolist()
    assert ans.kept_frames == sorted(ans.kept_frames) and len(ans.kept_frames) == 4
    assert ans.kept_timestamps == [f / 2.0 for f in ans.kept_frames]
    parsed = parse_choice(ans.text, 4, options)
    assert ans.choice_scored == (parsed is None) and ans.choice == (parsed or ans.choice) and ans.choice in "ABCD"

    # The analytic accounting matches what the model does with the kept frames.
    ids = processor.tokenize([build_prompt("What colour is the ball?", options, 5.0, 10)])["input_ids"]
    with torch.no_grad():
        visual = pipe.encode(video).visual.view(10, T, D)[ans.kept_frames].flatten(0, 1)
        out = model(ids, visual_embeds=[visual], use_cache=True)
    acc = ans.accounting
    text = ids.shape[1] - 1
    assert acc["text_tokens"] == text and acc["kept_frames"] == 4 and acc["num_frames"] == 10
    assert acc["tokens_per_layer"] == out.tokens_per_layer[:-1, 0].tolist()
    assert acc["kv_cache_bytes"] == out.cache.nbytes()
    assert acc["dense"]["tokens_per_layer"] == [text + 10 * T] * 4
    assert acc["ratio_to_dense"]["token_layers"] == pytest.approx(
        sum(acc["tokens_per_layer"]) / sum(acc["dense"]["tokens_per_layer"])
    )
    assert acc["scoring_tokens_per_layer"] == ans.scores.tokens_per_layer and acc["scoring_flops"] > 0
    assert set(acc["seconds"]) == {"load", "vision", "scoring", "generate", "option_scoring"}
    assert (acc["option_scoring_flops"] > 0) == ans.choice_scored
    # The answer is what generate gives for exactly the kept frames.
    gen = model.generate(ids, visual_embeds=[visual], max_new_tokens=4, do_sample=False)
    assert ans.text == processor.decode(gen[0, ids.shape[1] :])

    everything = pipe.answer(video, "What colour is the ball?", keep=1.0, fps=2.0, max_new_tokens=2)
    assert everything.scores is None and everything.kept_frames == list(range(10))
    assert everything.accounting["scoring_flops"] == 0
