"""Which visual tokens of each frame survive, for every method that drops tokens.

Tokens are addressed by their *slot*: the index (0..tokens_per_frame-1) of a visual token inside its frame's
group. LP-Comp keeps the last slots (the suffix: causal attention lets them read the earlier ones, so training
moves the frame's content there); uniform drop keeps evenly spaced slots; attention pruning keeps the slots the
last prompt token attends to most. Every method drops to the same per-layer counts, so they are compared at
equal token budgets. Pre-LLM pooling averages groups of slots before the LLM instead.
"""

from __future__ import annotations

import torch


def suffix_slots(kept: list[int], tokens_per_frame: int) -> list[torch.Tensor]:
    """[T] bool per layer: the last ``kept[i]`` slots (LP-Comp)."""
    slots = torch.arange(tokens_per_frame)
    return [slots >= tokens_per_frame - k for k in kept]


def uniform_slots(kept: list[int], tokens_per_frame: int) -> list[torch.Tensor]:
    """[T] bool per layer: evenly spaced slots, each layer's set nested in the previous one.

    Nesting matters: a dropped token cannot come back, so layer i+1 picks evenly among layer i's survivors.
    The last survivor is always kept, so at 1 token/frame uniform drop and LP-Comp keep the same slot and
    differ only in the intermediate layers.
    """
    current = torch.arange(tokens_per_frame)
    out = []
    for k in kept:
        if k < len(current):
            pick = torch.linspace(len(current) - 1, 0, k).round().long().flip(0)
            current = current[pick]
        mask = torch.zeros(tokens_per_frame, dtype=torch.bool)
        mask[current] = True
        out.append(mask)
    return out


def top_slots_by_score(scores: torch.Tensor, is_visual: torch.Tensor, per_frame: int, k: int) -> torch.Tensor:
    """Keep the ``k`` highest-scoring visual tokens of every frame (attention pruning).

    Every frame currently holds ``per_frame`` consecutive tokens (all frames are cut to the same count), so a
    sample's visual block reshapes to [frames, per_frame] and the choice is a per-row top-k.

    Args:
        scores: [B, S] score per token (ignored for non-visual tokens).
        is_visual: [B, S] bool, True for visual tokens.
        per_frame: tokens per frame before this drop.
        k: tokens to keep per frame.

    Returns:
        [B, S] bool, True for the visual tokens to keep.
    """
    keep = torch.zeros_like(is_visual)
    for b in range(scores.shape[0]):
        idx = is_visual[b].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        top = scores[b, idx].view(-1, per_frame).topk(k, dim=1).indices
        rows = torch.arange(top.shape[0], device=top.device)[:, None] * per_frame
        keep[b, idx[(rows + top).flatten()]] = True
    return keep


def pool_frame_tokens(tokens: torch.Tensor, tokens_per_frame: int, out_per_frame: int) -> torch.Tensor:
    """Average consecutive slots: [F*T, D] -> [F*k, D] (the pre-LLM pooling baseline)."""
    group = tokens_per_frame // out_per_frame
    n, d = tokens.shape
    return tokens.view(n // group, group, d).mean(dim=1)
