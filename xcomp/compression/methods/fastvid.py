"""FastVID (Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large Language Models", 2025,
arXiv 2503.11187): before the LLM, the video is cut into segments where consecutive frames stop resembling each
other, and each segment keeps salient tokens per frame plus density-peak "context" tokens into which the rest are
merged.

Read from LunarShen/FastVID ``fastvid_llavavideo/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py`` (the
``### FastVID`` block of ``Qwen2Model.forward``) and ``fastvid_qwen25vl/.../modeling_qwen2_5_vl.py`` (@ea8b57e4),
and ModelTC/llmc ``llmc/compression/token_reduction/fastvid.py`` (@68e00c58):

- DySeg: s_t = cos(g_t, g_t+1) of frame features g; cuts after the c - 1 lowest s_t and after every s_t < tau
  (at least c segments). Defaults c = 8, tau = 0.9.
- STPrune per segment of S frames: ``int(N x R)`` tokens per frame, a share d = 0.4 of them contextual. Salient
  tokens: per frame the top of the token salience, the segment's salient count spread evenly over its frames.
  Anchor frames: every p = 4th frame counting back from the segment's last; the contextual count spread evenly
  over them; each anchor's contextual tokens are the density peaks (DPC-KNN, k = 4) of its non-salient tokens.
  Every other token of the segment that is neither salient nor that anchor's context is assigned to its most
  similar (cosine) context token, which becomes ``w x c + (1 - w) x mean(assigned)``, ``w = max(1 / (n + 1),
  beta)``, beta = 0.6. Output: the kept tokens in their original order.

Adapted to VideoChat-Flash: frame features are the mean of a frame's tokens (the authors' Qwen2.5-VL path, for an
encoder without a pooling head); salience is the attention a token receives in the tower's last block
(`video_tokens.tower_attention`; the Qwen2.5-VL path averages the frame's queries likewise); R is `budget` (FastVID
reduces only before the LLM, so every layer sees that share), the count per frame rounded rather than floored.
It runs on the frames given to the LLM (after QC-Comp's selection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from xcomp.compression.compressors import BudgetedCompressor
from xcomp.compression.video_tokens import dpc_knn, merge_into


def segments(frames: torch.Tensor, count: int, tau: float) -> list[tuple[int, int]]:
    """DySeg over [F, T, D] frames: [start, end) segments cut after the ``count - 1`` least similar consecutive
    pairs of frame means and after every pair less similar than ``tau``."""
    means = frames.float().mean(dim=1)
    if len(frames) < 2:
        return [(0, len(frames))]
    similarity = F.cosine_similarity(means[:-1], means[1:], dim=-1)
    cuts = set(similarity.topk(min(count - 1, len(similarity)), largest=False).indices.tolist())
    cuts |= set((similarity < tau).nonzero().flatten().tolist())
    bounds = [0, *sorted(c + 1 for c in cuts), len(frames)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def spread(total: int, parts: int) -> list[int]:
    """``total`` split over ``parts`` as evenly as possible, the remainder to the first ones."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


@dataclass
class FastVID(BudgetedCompressor):
    """Dynamic temporal segments, then salient plus density-peak context tokens per segment, before the LLM."""

    name: ClassVar[str] = "fastvid"
    input_dependent: ClassVar[bool] = True
    needs_saliency: ClassVar[bool] = True
    segments: int = 8
    """Fewest segments (DySeg's c)."""
    tau: float = 0.9
    """Consecutive frames less similar than this are cut apart (DySeg's tau)."""
    context_share: float = 0.4
    """Share of a segment's kept tokens that are context tokens (STPrune's d)."""
    anchor_every: int = 4
    """Anchor frames: every this many frames back from a segment's last (p)."""
    beta: float = 0.6
    """Least weight a context token keeps when tokens merge into it."""
    knn: int = 4
    """Neighbours of the density estimate."""

    def per_frame(self, tokens_per_frame: int) -> int:
        return min(max(1, round(self.budget * tokens_per_frame)), tokens_per_frame)

    def visual_per_layer(self, config, num_frames):
        return [num_frames * self.per_frame(config.tokens_per_frame)] * config.num_layers

    def merge_video(self, tokens, tokens_per_frame, saliency, config):
        T = tokens_per_frame
        frames = tokens.view(-1, T, tokens.shape[-1])
        scores = saliency.view(-1, T)
        kept_index, kept = [], []
        for a, b in segments(frames, self.segments, self.tau):
            index, values = self._segment(frames[a:b], scores[a:b])
            kept_index.append(index + a * T)
            kept.append(values)
        order = torch.cat(kept_index).argsort()
        return torch.cat(kept)[order], None

    def _segment(self, frames: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept tokens of one segment [S, T, D]: (their indices in the segment's S x T tokens, their values)."""
        S, T, _ = frames.shape
        retain = self.per_frame(T) * S
        context = int(retain * self.context_share)
        salient = torch.zeros(S, T, dtype=torch.bool, device=frames.device)
        for f, n in enumerate(spread(retain - context, S)):
            salient[f, scores[f].topk(min(n, T)).indices] = True
        anchors = list(range(S - 1, -1, -self.anchor_every))[::-1]
        flat = frames.reshape(S * T, -1)
        chosen, values = [salient.flatten().nonzero().squeeze(1)], [flat[salient.flatten()]]
        for anchor, n in zip(anchors, spread(context, len(anchors))):
            candidates = (~salient[anchor]).nonzero().squeeze(1)
            if n == 0 or len(candidates) == 0:
                continue
            centres, _ = dpc_knn(frames[anchor, candidates], n, self.knn)
            own = anchor * T + candidates[centres]
            pool = torch.ones(S * T, dtype=torch.bool, device=frames.device)
            pool[salient.flatten()] = False
            pool[own] = False
            members = flat[pool]
            assign = (F.normalize(members.float(), dim=-1) @ F.normalize(flat[own].float(), dim=-1).T).argmax(dim=1)
            chosen.append(own)
            values.append(merge_into(flat[own], members, assign, self.beta))
        return torch.cat(chosen), torch.cat(values)
