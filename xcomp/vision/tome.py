"""ToMe token merging + MLP: the `tome16_mlp_hd64` projector of VideoChat-Flash.

All tokens of a clip (num_frames x patches) are merged together, across frames, so "16 tokens per frame" holds
only on average over the clip; a merged token can mix patches of several frames.
"""

import torch
from torch import nn


def merge_schedule(num_tokens: int, target: int) -> list[int]:
    """Tokens removed at each step: halve while that stays above `target`, then remove the remainder.

    3136 -> 64 gives [1568, 784, 392, 196, 98, 34]; equal counts give [] (nothing to merge).
    """
    if num_tokens < target:
        raise ValueError(f"cannot merge {num_tokens} tokens down to {target}")
    if num_tokens == target:
        return []
    schedule = []
    while num_tokens - target > num_tokens // 2:
        schedule.append(num_tokens // 2)
        num_tokens -= num_tokens // 2
    schedule.append(num_tokens - target)
    return schedule


def bipartite_soft_matching(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ToMe step: merge r of the even tokens (a) into their most similar odd token (b).

    x [B, N, C] features, size [B, N, 1] tokens already merged into each, metric [B, N, D]. Merging is a
    size-weighted average. The output is [unmerged a tokens, most similar first; then every b token in order].
    Returns (x, size, edge_idx, node_idx): edge_idx [B, N_a] sorts a by best similarity (descending),
    node_idx [B, N_a] is each a token's best b.
    """
    r = min(r, x.shape[1] // 2)
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)
    unm_idx = edge_idx[:, r:, None]
    src_idx = edge_idx[:, :r, None]
    dst_idx = node_idx[:, :, None].gather(dim=1, index=src_idx)

    def merge(t: torch.Tensor) -> torch.Tensor:
        src, dst = t[:, ::2], t[:, 1::2]
        n, n_a, c = src.shape
        unm = src.gather(dim=1, index=unm_idx.expand(n, n_a - r, c))
        src = src.gather(dim=1, index=src_idx.expand(n, r, c))
        dst = dst.scatter_add(1, dst_idx.expand(n, r, c), src)
        return torch.cat([unm, dst], dim=1)

    x = merge(x * size)
    size = merge(size)
    return x / size, size, edge_idx, node_idx


def merge_tokens(
    x: torch.Tensor, target: int, num_heads: int = 16, trace: list | None = None
) -> torch.Tensor:
    """Merge [B, N, C] down to [B, target, C] by repeated bipartite soft matching.

    The matching metric is the features split into `num_heads` chunks and averaged over chunks (a cheap stand-in
    for attention keys). If `trace` is a list, each step's (edge_idx, node_idx) is appended to it.
    """
    b, _, c = x.shape
    size = torch.ones_like(x[..., :1])
    for r in merge_schedule(x.shape[1], target):
        metric = x.reshape(b, x.shape[1], num_heads, c // num_heads).mean(2)
        x, size, edge_idx, node_idx = bipartite_soft_matching(x, size, metric, r)
        if trace is not None:
            trace.append((edge_idx, node_idx))
    return x


class ToMeProjector(nn.Module):
    """Per-frame vision features -> `tokens_per_frame * num_frames` LLM tokens per clip."""

    def __init__(
        self,
        mm_hidden_size: int,
        hidden_size: int,
        tokens_per_frame: int = 16,
        num_frames: int = 4,
        num_heads_metric: int = 16,
    ):
        super().__init__()
        if mm_hidden_size % num_heads_metric != 0:
            raise ValueError(f"mm_hidden_size ({mm_hidden_size}) must be a multiple of {num_heads_metric}")
        self.tokens_per_frame = tokens_per_frame
        self.num_frames = num_frames
        self.num_heads_metric = num_heads_metric
        self.mlp = nn.Sequential(
            nn.Linear(mm_hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, features: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        """[T, P, C] -> [T / num_frames, num_frames * tokens_per_frame, hidden]; `trace` as in `merge_tokens`."""
        return self.mlp(self.merge(features, trace))

    def merge(self, features: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        """The weight-free part: [T, P, C] -> [T / num_frames, num_frames * tokens_per_frame, C] merged tokens."""
        t, p, c = features.shape
        if t % self.num_frames != 0:
            raise ValueError(f"number of frames ({t}) must be a multiple of num_frames ({self.num_frames})")
        clips = features.reshape(t // self.num_frames, self.num_frames * p, c)
        return merge_tokens(clips, self.num_frames * self.tokens_per_frame, self.num_heads_metric, trace)


__all__ = ["ToMeProjector", "bipartite_soft_matching", "merge_schedule", "merge_tokens"]
