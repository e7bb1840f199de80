"""PruneVid (Huang et al., "PruneVid: Visual Token Pruning for Efficient Video Large Language Models", ACL 2025,
arXiv 2412.16117): static tokens merged over temporal segments before the LLM, then the tokens the question
attends to kept inside it.

Read from Visual-AI/PruneVid ``models/pllava/modeling_pllava.py`` (``cluster_dpc_knn``, ``refine_clusters``,
``merge_frames_dynamic``, @8e90af02) and ``models/pllava/llama.py`` (``LlamaModelVTP``, @a7fd7118):

- Segments: the frames' mean features clustered by DPC-KNN (k = 7) into ``int(F x 0.25)`` clusters, made
  contiguous (a run of one frame joins its neighbour). In a segment, a token position is static when its mean
  cosine similarity over the segment's frame pairs exceeds tau = 0.8; static tokens are averaged over the frames;
  a set of more than 14 tokens (static, or a frame's dynamic ones) is clustered (DPC-KNN, ``int(n x 0.5)``
  clusters) into cluster means.
- In the LLM at layer 10 (of LLaMA-7B's 32), each visual token's score is its attention from the text after the
  video, max over heads then over those queries; each segment's static group and each frame's dynamic group keep
  ``int(alpha x size)`` of their tokens, alpha = 0.4.

Adapted to VideoChat-Flash: ToMe merges each clip across its frames, so a "position" is a token of the segment's
first frame followed through its best match in each other frame (`best_match`), static when its mean similarity
over them exceeds tau (the original averages over all frame pairs of one position). At 16 tokens per frame nearly
every frame's dynamic set has more than 14 tokens, so the cluster ratio sets stage one's share: by default it is
derived from `budget` (the share for which the authors' alpha = 0.4 at layer K spends the budget). Stage one's
share still depends on the video, so alpha is then set per answer from `budget`: with n1 tokens entering the LLM of dense d, layers before K
see n1 and the rest alpha x n1, so alpha = (budget x d x L - n1 x K) / (n1 x (L - K)), clamped to (0, 1] (a video
that stage one already compresses past the budget spends less). It runs on the frames given to the LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from xcomp.compression.compressors import BudgetedCompressor
from xcomp.compression.video_tokens import best_match, cluster, dpc_knn
from xcomp.errors import ConfigError


def contiguous(assign: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of equal cluster ids, a run of one frame joined to the run before it (or after, first)."""
    runs = []
    for f, group in enumerate(assign):
        if runs and assign[runs[-1][0]] == group:
            runs[-1][1] = f + 1
        else:
            runs.append([f, f + 1])
    merged = []
    for run in runs:
        if merged and (run[1] - run[0] == 1 or merged[-1][1] - merged[-1][0] == 1):
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [tuple(r) for r in merged]


def cluster_means(tokens: torch.Tensor, ratio: float, knn: int, above: int) -> torch.Tensor:
    """``tokens`` [n, D] as they are when there are at most ``above``, else the means of their DPC-KNN clusters."""
    if len(tokens) <= above:
        return tokens
    return cluster(tokens, int(len(tokens) * ratio), knn, beta=0.0)


@dataclass
class PruneVid(BudgetedCompressor):
    """Static tokens merged per segment before the LLM, question-attended tokens kept inside it."""

    name: ClassVar[str] = "prunevid"
    input_dependent: ClassVar[bool] = True
    reduces_in_llm: ClassVar[bool] = True
    tau: float = 0.8
    """A token is static in a segment when its mean similarity to its matches exceeds this."""
    segment_ratio: float = 0.25
    """Temporal clusters per frame."""
    cluster_ratio: float | None = None
    """Clusters per token of a set that is clustered (the authors' 0.5; None: from the budget, the share stage one
    must keep for the authors' alpha at the pruning layer to spend it)."""
    alpha: float = 0.4
    """The authors' share kept at the pruning layer, from which a None cluster_ratio is derived."""
    cluster_above: int = 14
    """Sets of more tokens than this are clustered."""
    knn: int = 7
    """Neighbours of the density estimates."""
    layer: int | None = None
    """Layer before which the LLM prunes (None: 10/32 of the layers, the authors' 10 of 32)."""

    def prune_layer(self, config) -> int:
        return self.layer if self.layer is not None else self.scaled_layer(10, 32, config)

    def validate(self, config):
        super().validate(config)
        if not 1 <= self.prune_layer(config) < config.num_layers:
            raise ConfigError(f"prunevid: layer must be in [1, {config.num_layers}) (it reads the layer before)")

    def reduce_layers(self, config):
        return (self.prune_layer(config),)

    def clusters(self, config) -> float:
        """The cluster ratio in effect: stage one's target share b x L / (K + alpha x (L - K)), at most 1."""
        if self.cluster_ratio is not None:
            return self.cluster_ratio
        L, K = config.num_layers, self.prune_layer(config)
        return min(self.budget * L / (K + self.alpha * (L - K)), 1.0)

    def merge_video(self, tokens, tokens_per_frame, saliency, config):
        ratio = self.clusters(config)
        T = tokens_per_frame
        frames = tokens.view(-1, T, tokens.shape[-1])
        means = frames.float().mean(dim=1)
        k = max(1, int(len(frames) * self.segment_ratio))
        assign = dpc_knn(means, k, min(self.knn, len(frames)))[1].tolist()
        out, groups, group = [], [], 0
        for a, b in contiguous(assign):
            static, dynamic = self._segment(frames[a:b], ratio)
            for block in ([static] if len(static) else []) + dynamic:
                out.append(block)
                groups.append(torch.full((len(block),), group, dtype=torch.long, device=tokens.device))
                group += 1
        return torch.cat(out), torch.cat(groups)

    def _segment(self, frames: torch.Tensor, ratio: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A segment's merged static tokens and each frame's (clustered) dynamic tokens."""
        S, T, D = frames.shape
        if S == 1:
            return frames.new_zeros(0, D), [cluster_means(frames[0], ratio, self.knn, self.cluster_above)]
        pairs = [best_match(frames[0], frames[t]) for t in range(1, S)]
        similarity = torch.stack([p[0] for p in pairs]).mean(dim=0)
        static = similarity > self.tau
        dynamic = [torch.ones(T, dtype=torch.bool, device=frames.device) for _ in range(S)]
        dynamic[0] = ~static
        chain = [frames[0, static]]
        for t, (_, match) in enumerate(pairs, 1):
            chain.append(frames[t, match[static]])
            dynamic[t][match[static]] = False
        merged = cluster_means(torch.stack(chain).mean(dim=0), ratio, self.knn, self.cluster_above)
        return merged, [cluster_means(frames[t, dynamic[t]], ratio, self.knn, self.cluster_above) for t in range(S)]

    def alpha_for(self, entering: int, dense: int, layers: int, at: int) -> float:
        """The share each group keeps at the pruning layer so that the answer's token-layers are the budget."""
        alpha = (self.budget * dense * layers - entering * at) / max(entering * (layers - at), 1)
        return min(max(alpha, 1e-6), 1.0)

    def reduce_in_llm(self, config, hidden, visual, groups, dense, attention, queries):
        score = attention.amax(dim=1).masked_fill(~queries[:, :, None], 0).amax(dim=1)
        keep = torch.zeros_like(visual)
        layers, at = config.num_layers, self.prune_layer(config)
        for b in range(len(hidden)):
            alpha = self.alpha_for(int(visual[b].sum()), int(dense[b]), layers, at)
            for g in groups[b][visual[b]].unique().tolist():
                members = (visual[b] & (groups[b] == g)).nonzero().squeeze(1)
                n = max(1, round(alpha * len(members)))
                keep[b, members[score[b, members].topk(n).indices]] = True
        return keep, hidden

    def visual_per_layer(self, config, num_frames):
        """Stage one expected to keep the cluster ratio's share (static merging, which depends on the video, aside),
        and the pruning layer the rest of the budget."""
        n = num_frames * config.tokens_per_frame
        K, L = self.prune_layer(config), config.num_layers
        entering = round(n * self.clusters(config))
        after = round(self.alpha_for(entering, n, L, K) * entering)
        return [entering if i < K else after for i in range(L)]
