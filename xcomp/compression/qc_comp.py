"""QC-Comp: score every frame by the attention the question pays to it inside the LLM, keep the top frames.

A frame's score is the attention that the question's query rows give to the frame's visual tokens, averaged
over heads and question rows (a fraction of the question's attention) and summed over a band of middle layers.

With the whole video in one sequence, long-context attention favours tokens near the start and the end, so
"global" scores are position-biased. The "local" scorer therefore scores short windows of ``segment_frames``
frames, each as its own sequence ``prefix text + window's visual tokens + question``: a window's frames attend
only to each other and the prefix, the question attends only to that window, and every window sits at the same
rotary positions. Windows all have the same length (windows at the ends are moved inwards rather than cut), so
raw attention mass is comparable across windows without renormalising: a window with nothing relevant keeps its
attention on the text (the attention sink) and scores low, instead of being forced to share out a fixed budget.
Several passes with shifted window boundaries run, and a frame's score is the mean over the windows that
contained it, so no boundary decides the result.

Only the question rows' attention is recomputed (`query_attention`) from each scored layer's input; the layers
themselves run with their normal SDPA/flash kernels, and nothing above the band is run. Windows are processed
``segment_batch`` at a time, so memory does not depend on the number of frames beyond the O(N) inputs and scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from xcomp.compression.attention_probe import cached_query_attention, query_attention
from xcomp.compression.compressors import compressor_for
from xcomp.compression.selectors import FrameSelector
from xcomp.errors import ConfigError, XCompError
from xcomp.model.cache import XCompCache


@dataclass(frozen=True)
class QCComp(FrameSelector):
    """QC-Comp's settings and frame selector: frames ranked by the attention the question pays them inside the LLM.

    The one place its settings live: conf/select/qc_*.yaml, `XCompPipeline`, a model folder's pipeline_config.json,
    `xcomp ask --set qc.FIELD=VALUE` and `xcomp bench --set qc.FIELD=VALUE` all build this class.
    """

    name: ClassVar[str] = "qc"
    keep: float = 0.25
    """Fraction of the sampled frames to keep when `keep_frames` is None (the reference keeps 256 of 1,024)."""
    scorer: str = "local"
    """'local': segment windows (QC-Comp); 'global': the whole video in one sequence (the position-biased baseline)."""
    segment_frames: int = 8
    """Frames per local-attention window (the reference scores 8-frame groups)."""
    shifts: tuple[int, ...] | None = None
    """Window offsets (in frames) of the scoring passes (a list is stored as a tuple); None = (0, W // 2)."""
    layers: tuple[int, ...] | None = None
    """0-based decoder layers whose attention is summed; None = `default_layers` (6..23 of 28)."""
    segment_batch: int = 16
    """Windows per forward pass: bounds activation memory independently of the number of frames."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.segment_frames < 1 or self.segment_batch < 1:
            raise ConfigError("segment_frames and segment_batch must be >= 1")
        if self.scorer not in ("local", "global"):
            raise ConfigError(f"scorer must be 'local' or 'global', got {self.scorer!r}")
        if self.shifts is not None:
            if not self.shifts:
                raise ConfigError("shifts needs at least one offset")
            object.__setattr__(self, "shifts", tuple(int(s) for s in self.shifts))  # lists from JSON / YAML
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))

    @property
    def pass_offsets(self) -> tuple[int, ...]:
        """Window offsets of the scoring passes (`shifts`, or 0 and half a window)."""
        if self.shifts is not None:
            return self.shifts
        return (0, self.segment_frames // 2) if self.segment_frames > 1 else (0,)

    def select(self, model, prefix_ids, question_ids, visual, num_frames, k, shared=None):
        scores = score_frames(model, prefix_ids, question_ids, visual, self, shared)
        return scores.top_k(k), scores


def default_layers(num_layers: int) -> tuple[int, ...]:
    """The middle band ``[3L // 14, 6L // 7)``: layers 6..23 for the 28-layer LLM, as in the reference.

    Early layers have not yet mixed the question with the video, and the last layers attend mostly to what
    the next token needs, so neither ranks frames well.
    """
    return tuple(range(3 * num_layers // 14, max(6 * num_layers // 7, 1)))


def segment_windows(num_frames: int, segment_frames: int, shifts: tuple[int, ...]) -> list[int]:
    """Start frames of the scoring windows, each ``min(segment_frames, num_frames)`` frames long.

    A pass with offset ``s`` cuts the video at ``s, s + W, s + 2W, …``; its first and last windows would be
    partial, so they are moved inwards to full length instead (overlapping a neighbour). Every pass therefore
    covers every frame. Windows that several passes share are scored once.
    """
    W = min(segment_frames, num_frames)
    starts = set()
    for shift in shifts:
        first = shift % W - (W if shift % W else 0)
        starts.update(min(max(s, 0), num_frames - W) for s in range(first, num_frames, W))
    return sorted(starts)


@dataclass
class FrameScores:
    """Per-frame QC-Comp scores of one video and question."""

    scores: torch.Tensor
    """[N] float32: the frame's score summed over `layers` (higher = more relevant to the question)."""
    layer_scores: torch.Tensor
    """[len(layers), N] float32: mean over the windows that saw the frame, per scored layer."""
    layers: tuple[int, ...]
    """Decoder layers of `layer_scores`' rows."""
    passes: torch.Tensor
    """[N] int64: number of windows that scored the frame."""
    scorer: str
    """'local' or 'global'."""
    windows: int
    """Sequences (windows) run through the LLM."""
    tokens_per_layer: list[int]
    """Tokens entering layers 0..max(layers), summed over windows (the last is only probed, not run)."""

    def top_k(self, k: int) -> torch.Tensor:
        """Indices of the ``k`` highest-scoring frames, in temporal order (ties go to the earlier frame)."""
        order = torch.sort(self.scores, descending=True, stable=True).indices
        return order[: min(k, len(order))].sort().values


def split_prompt(input_ids: torch.Tensor, video_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A single prompt's ids [S] (or [1, S]) -> (ids before the video placeholder, ids after it)."""
    ids = input_ids.reshape(-1)
    where = (ids == video_token_id).nonzero().flatten()
    if len(where) != 1:
        raise XCompError(f"expected exactly one video placeholder in the prompt, found {len(where)}")
    p = int(where[0])
    return ids[:p], ids[p + 1 :]


@torch.no_grad()
def score_frames(
    model,
    prefix_ids: torch.Tensor,
    question_ids: torch.Tensor,
    visual: torch.Tensor,
    config: QCComp | None = None,
    shared: dict | None = None,
) -> FrameScores:
    """Score every frame of one video for one question (see the module docstring).

    Args:
        model: `XCompForCausalLM` or `XCompModel`; its configured compression applies during scoring (an
            LP-Comp model sees its compressed frames, and a frame's score sums over its surviving tokens).
        prefix_ids: [P] prompt ids before the video placeholder (system prompt, user header).
        question_ids: [Q] prompt ids after the placeholder, to the end of the prompt. All of them are the
            "question" rows: the question text and options, plus the template tokens that close the user turn
            and open the assistant turn (the last of which predicts the answer).
        visual: [N * tokens_per_frame, D] projector outputs of the video (`encode_video`); every consecutive
            group of `visual_tokens_per_frame` tokens is one frame.
        config: scoring settings (default `QCComp()`); how many frames to keep is not used here.
        shared: a dict kept per video: each window's ``prefix + frames`` does not depend on the question (causal
            attention), so its K/V through the scored band is computed once, stored here, and each question then
            runs only its own rows against it (`_prefill_windows`). None, or a model whose compressor reads the
            question, scores every window whole.
    """
    config = config or QCComp()
    inner = model.base_model
    T = inner.visual_tokens_per_frame
    num_layers = inner.config.num_layers
    if visual.dim() != 2 or visual.shape[0] % T or visual.shape[0] == 0:
        raise XCompError(f"visual tokens must be [frames * {T}, D], got {tuple(visual.shape)}")
    if question_ids.numel() == 0:
        raise XCompError("the prompt has no tokens after the video to score frames with")
    layers = tuple(config.layers) if config.layers is not None else default_layers(num_layers)
    if not layers or any(not 0 <= i < num_layers for i in layers) or len(set(layers)) != len(layers):
        raise ConfigError(f"scored layers must be distinct indices in [0, {num_layers}), got {layers}")

    N = visual.shape[0] // T
    if config.scorer == "local":
        W = min(config.segment_frames, N)
        starts = segment_windows(N, config.segment_frames, config.pass_offsets)
    else:
        W, starts = N, [0]
    device = visual.device
    video_id = torch.tensor([inner.config.video_token_id], device=device)
    ids = torch.cat([prefix_ids.to(device), video_id, question_ids.to(device)])[None]
    P, Q = prefix_ids.numel(), question_ids.numel()

    totals = torch.zeros(len(layers), N, device=device)
    passes = torch.zeros(N, dtype=torch.long, device=device)
    tokens_per_layer = [0] * (max(layers) + 1)
    if shared is not None and not compressor_for(inner.config).reads_question:
        key = (tuple(prefix_ids.tolist()), W, tuple(starts), max(layers), config.segment_batch)
        if key not in shared:
            shared[key] = _prefill_windows(inner, prefix_ids.to(device), visual, starts, W, config, max(layers))
        scored = (
            (batch, *_score_prefilled(inner, cache, key_frames, question_ids.to(device), layers, W))
            for batch, cache, key_frames in shared[key]
        )
    else:
        scored = (
            (batch, *_score_windows(inner, ids, visual, batch, layers, video_start=P, question_len=Q, frames=W))
            for batch in _batches(starts, config.segment_batch)
        )
    for batch, window_scores, counts in scored:
        tokens_per_layer = [t + int(c.sum()) for t, c in zip(tokens_per_layer, counts)]
        for j, s in enumerate(batch):
            totals[:, s : s + W] += window_scores[:, j]
            passes[s : s + W] += 1
    layer_scores = totals / passes
    return FrameScores(
        scores=layer_scores.sum(dim=0),
        layer_scores=layer_scores,
        layers=layers,
        passes=passes,
        scorer=config.scorer,
        windows=len(starts),
        tokens_per_layer=tokens_per_layer,
    )


def _batches(starts: list[int], size: int) -> list[list[int]]:
    """Window starts in batches of ``size`` (what one forward pass takes)."""
    return [starts[b : b + size] for b in range(0, len(starts), size)]


def _window_videos(inner, visual: torch.Tensor, batch: list[int], frames: int) -> list[torch.Tensor]:
    """The visual tokens of each window of ``batch`` (``frames`` frames from each start)."""
    T = inner.visual_tokens_per_frame
    return [visual[s * T : (s + frames) * T] for s in batch]


def _score_windows(
    inner, ids, visual, batch: list[int], layers: tuple[int, ...], video_start: int, question_len: int, frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a batch of equal-layout windows (starting at frames ``batch``) up to the last scored layer, probing
    the question's attention.

    Returns [len(layers), windows, frames] attention mass per frame and the tokens entering each layer run.
    """
    T = inner.visual_tokens_per_frame
    row_of = {layer: r for r, layer in enumerate(layers)}
    B, device = len(batch), visual.device
    scores = torch.zeros(len(layers), B, frames, device=device)

    def probe(i, layer, tokens, position_embeddings):
        if i not in row_of:
            return
        S = tokens.hidden.shape[1]
        query = torch.arange(S - question_len, S, device=device)
        causal = torch.arange(S, device=device)[None, :] <= query[:, None]
        probs = query_attention(
            layer, tokens.hidden, position_embeddings, query.expand(B, -1), key_mask=causal.expand(B, -1, -1)
        )
        mass = probs.mean(dim=(1, 2))
        frame = ((tokens.index - video_start) // T).clamp(0, frames - 1)
        scores[row_of[i]].scatter_add_(1, frame, mass * (tokens.slot >= 0))

    counts = inner.probe_prefill(ids.expand(B, -1), _window_videos(inner, visual, batch, frames), probe, max(layers))
    return scores, counts


def _prefill_windows(
    inner, prefix_ids: torch.Tensor, visual: torch.Tensor, starts: list[int], W: int, config: QCComp, last: int
) -> list[tuple[list[int], XCompCache, list[torch.Tensor]]]:
    """Per batch of windows: their start frames, the K/V of ``prefix + window frames`` through layer ``last``
    (with the compressor's drops), and per layer the window frame of each cached key (-1 for text)."""
    T, P = inner.visual_tokens_per_frame, prefix_ids.numel()
    ids = torch.cat([prefix_ids, torch.tensor([inner.config.video_token_id], device=prefix_ids.device)])[None]
    stop = last + 1 if last + 1 < inner.config.num_layers else None
    out = []
    for batch in _batches(starts, config.segment_batch):
        cache = XCompCache(config=inner.config.text_config)
        key_frames: list[torch.Tensor] = []

        def record(i, layer, tokens, position_embeddings, key_frames=key_frames):
            key_frames.append(torch.where(tokens.slot >= 0, (tokens.index - P) // T, -1))

        inner.probe_prefill(ids.expand(len(batch), -1), _window_videos(inner, visual, batch, W), record, stop, cache)
        out.append((batch, cache, key_frames[: last + 1]))
    return out


def _score_prefilled(
    inner, prefilled: XCompCache, key_frames: list[torch.Tensor], question_ids: torch.Tensor, layers, frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The question's rows run against a batch of prefilled windows (a copy of their cache) up to the last scored
    layer; returns what `_score_windows` returns for the same windows."""
    cache = prefilled.copy()
    row_of = {layer: r for r, layer in enumerate(layers)}
    B, Q = key_frames[0].shape[0], question_ids.numel()
    scores = torch.zeros(len(layers), B, frames, device=question_ids.device)

    def probe(i, layer, hidden, position_embeddings):
        if i not in row_of:
            return
        keys, valid = cache.layers[i].keys, cache.key_valid[i]
        probs = cached_query_attention(layer, hidden, position_embeddings, keys, valid)
        mass = probs.mean(dim=(1, 2))[:, : keys.shape[2]]
        frame = key_frames[i]
        scores[row_of[i]].scatter_add_(1, frame.clamp(0, frames - 1), mass * (frame >= 0))

    inner.probe_decode(question_ids.expand(B, -1), cache, probe, max(layers))
    counts = torch.stack([prefilled.key_valid[i].sum(dim=1) + Q for i in range(max(layers) + 1)])
    return scores, counts
