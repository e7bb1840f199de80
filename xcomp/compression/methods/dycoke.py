"""DyCoke (Tao et al., "DyCoke: Dynamic Compression of Tokens for Fast Video Large Language Models", CVPR 2025,
arXiv 2411.15024): temporal token merging before the LLM, then dynamic pruning of the visual KV cache while
decoding.

Read from KD-TAO/DyCoke ``llava/model/llava_arch.py`` (``dycole_ttm``, @26dc6f4f) and
``llava/model/language_model/modeling_qwen2.py`` (``PrunableDynamicCache``, ``dycoke_pruning``, @2325b63d):

- TTM, in windows of 4 frames: frame 1 is compared with frame 0 and frame 3 with frame 2, then frame 2 with frame
  0; each compared frame keeps its ``int((1 - k) * N)`` tokens least similar (cosine) to the frame it is compared
  with — the others are dropped as duplicates of it. Defaults k = 0.7.
- Decoding: at layer ``l`` (3 of Qwen2-7B's 28), the new token's attention to the visual tokens at the layer
  before (heads averaged); when it is less similar than 0.9 (cosine) to the previous step's, the ``1 - p`` most
  attended visual keys are chosen; layers from ``l`` on attend only to them. Defaults p = 0.8 (0.7 in the README).

Adapted to VideoChat-Flash: ToMe merges each clip across its frames, so token i of two frames need not be the
same place; a token's similarity to the compared frame is that of its best match there (`best_match`). k comes
from `budget` (the share a window keeps, (1 + 3 x kept / 16) / 4, is the budget; below 1/4 it cannot be reached).
Kept tokens stay in their order (the original leaves them in similarity order). Where the original applies the
second pass to every window but the last (``range(0, T - 4, 4)``), every window is pruned here; and a step whose
attention is similar to the previous one's reuses the previous selection (the original then attends to the whole
cache, which is what the paper's dynamic pruning avoids); the selection is compared with the attention it was made
from, per sample. TTM runs on the frames given to the LLM (after QC-Comp's selection); the KV pruning changes
generation only (not the first answer token, teacher-forced option scoring or training), and the accounting's
decode cost assumes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from xcomp.compression.compressors import BudgetedCompressor
from xcomp.compression.video_tokens import best_match
from xcomp.errors import ConfigError

PAIRS = ((1, 0), (3, 2), (2, 0))
"""(pruned frame, frame it is compared with) within a window of 4, in the order TTM compares them."""


def temporal_merge(frames: torch.Tensor, kept: int) -> list[torch.Tensor]:
    """TTM over [F, T, D] frames: per frame, the indices of the tokens it keeps (`PAIRS` in windows of 4)."""
    keep = [torch.arange(frames.shape[1], device=frames.device) for _ in range(len(frames))]
    for start in range(0, len(frames), 4):
        for pruned, reference in PAIRS:
            if start + pruned < len(frames):
                similarity = best_match(frames[start + pruned], frames[start + reference])[0]
                keep[start + pruned] = similarity.topk(kept, largest=False).indices.sort().values
    return keep


@dataclass
class DyCoke(BudgetedCompressor):
    """Temporal merging of near-duplicate tokens of adjacent frames, then KV pruning while decoding."""

    name: ClassVar[str] = "dycoke"
    prune: float = 0.7
    """Share of the cached visual keys a decoded token skips from `layer` on (the authors' p)."""
    layer: int | None = None
    """First layer that skips them (None: 3/28 of the layers, the authors' 3 of 28)."""
    gate: float = 0.9
    """A step whose attention to the visual keys is at least this similar (cosine) to the previous step's keeps
    the previous selection."""

    def kept(self, tokens_per_frame: int) -> int:
        """Tokens each compared frame keeps: a window then holds (1 + 3 x kept / T) / 4 = budget of its tokens."""
        return max(1, min(tokens_per_frame, round(tokens_per_frame * (4 * self.budget - 1) / 3)))

    def validate(self, config):
        super().validate(config)
        if self.budget < 0.25:
            raise ConfigError(f"dycoke cannot reach budget {self.budget:.3f}: TTM keeps every window's first frame (1/4)")
        if not 0 <= self.prune < 1 or not 0 <= self.gate <= 1:
            raise ConfigError("dycoke: prune must be in [0, 1) and gate in [0, 1]")
        if not 1 <= self.decode_prune_layer(config) < config.num_layers:
            raise ConfigError(f"dycoke: layer must be in [1, {config.num_layers}) (it reads the layer before)")

    def merge_video(self, tokens, tokens_per_frame, saliency, config):
        frames = tokens.view(-1, tokens_per_frame, tokens.shape[-1])
        keep = temporal_merge(frames, self.kept(tokens_per_frame))
        return torch.cat([frame[k] for frame, k in zip(frames, keep)]), None

    def visual_per_layer(self, config, num_frames):
        T, windows, rest = config.tokens_per_frame, *divmod(num_frames, 4)
        kept = self.kept(T)
        visual = windows * (T + 3 * kept) + (T + (rest - 1) * kept if rest else 0)
        return [visual] * config.num_layers

    def decode_prune_layer(self, config):
        return self.layer if self.layer is not None else self.scaled_layer(3, 28, config)

    def decode_keys(self, config, tokens_per_layer, visual_per_layer):
        start = self.decode_prune_layer(config)
        return [
            n - v + math.ceil(v * (1 - self.prune)) if i >= start else n
            for i, (n, v) in enumerate(zip(tokens_per_layer, visual_per_layer))
        ]

    def decode_keep(self, attention, visual, state):
        """Per sample: the previous selection while the attention stays as similar as `gate` to the attention it
        was made from, else the ``1 - prune`` most attended visual keys (and this attention is remembered)."""
        attention = attention.masked_fill(~visual, 0)
        if state is None:
            reference, keep = attention.clone(), torch.zeros_like(visual)
            again = torch.ones(len(visual), dtype=torch.bool, device=visual.device)
        else:
            reference, keep = state[0].clone(), state[1].clone()
            again = F.cosine_similarity(attention, reference, dim=1) < self.gate
        for b in again.nonzero().flatten().tolist():
            n = math.ceil(int(visual[b].sum()) * (1 - self.prune))
            keep[b] = False
            keep[b, attention[b].masked_fill(~visual[b], -1).topk(n).indices] = True
            reference[b] = attention[b]
        return keep, (reference, keep)
