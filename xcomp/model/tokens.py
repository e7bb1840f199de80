"""The sequence as it flows through the decoder layers (`Tokens`: hidden states with per-token bookkeeping), the
attention masks over it, and the probes the layer loops call (`xcomp.model.decoder`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

IGNORE_INDEX = -100
"""Label of positions without loss."""


@dataclass
class Tokens:
    """The sequence as it flows through the decoder layers, with per-token bookkeeping."""

    hidden: torch.Tensor
    """[B, S, D] hidden states."""
    position: torch.Tensor
    """[B, S] rotary position ids."""
    valid: torch.Tensor
    """[B, S] False for padding."""
    slot: torch.Tensor
    """[B, S] index of a visual token inside its frame group; -1 for text and padding."""
    index: torch.Tensor
    """[B, S] column of this token in the expanded input layout (to align labels after drops)."""
    group: torch.Tensor | None = None
    """[B, S] a visual token's `merge_video` group (by default its frame); -1 for text and padding."""
    dense_visual: torch.Tensor | None = None
    """[B] visual tokens each sample's frames had before `merge_video` (what dense would have kept)."""
    answer_tokens: torch.Tensor | None = None
    """[B] labelled tokens after the prompt (training); the last prompt token sits that far before the end."""

    def select(self, keep: torch.Tensor) -> Tokens:
        """Keep the tokens where ``keep`` is True, right-aligned (left padding), order preserved."""
        keep = keep & self.valid
        width = int(keep.sum(dim=1).max())
        if keep.shape[0] == 1:
            idx = keep[0].nonzero().squeeze(1)[None]
        else:
            idx = keep.to(torch.int8).argsort(dim=1, stable=True)[:, -width:]
        return Tokens(
            hidden=self.hidden.gather(1, idx[..., None].expand(-1, -1, self.hidden.shape[-1])),
            position=self.position.gather(1, idx),
            valid=keep.gather(1, idx),
            slot=self.slot.gather(1, idx),
            index=self.index.gather(1, idx),
            group=self.group.gather(1, idx) if self.group is not None else None,
            dense_visual=self.dense_visual,
            answer_tokens=self.answer_tokens,
        )


LayerCallback = Callable[[int, nn.Module, Tokens, tuple[torch.Tensor, torch.Tensor]], None]
"""``(layer index, decoder layer, tokens entering it, rotary (cos, sin))`` — a probe called by `run_prefill`."""
DecodeCallback = Callable[[int, nn.Module, torch.Tensor, tuple[torch.Tensor, torch.Tensor]], None]
"""``(layer index, decoder layer, hidden states [B, Q, D] entering it, rotary (cos, sin))`` — a probe called by
`run_decode` before the layer appends the new tokens' keys to the cache."""


def renumbered_positions(valid: torch.Tensor) -> torch.Tensor:
    """Positions 0..n-1 over the valid tokens (the published code's numbering after a drop)."""
    return (valid.long().cumsum(dim=1) - 1).clamp_min(0)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool [B, Q, K] -> additive float [B, 1, Q, K] usable by both SDPA and eager attention."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def prefill_mask(valid: torch.Tensor, dtype: torch.dtype, implementation: str) -> torch.Tensor | None:
    """Causal mask over a left-padded sequence for attention kernel ``implementation``.

    None (the kernel's own causal path) when nothing is padded, except for eager attention, which applies
    only the mask it is given; flash-attn takes the [B, S] padding mask (it unpads and applies causality)."""
    if implementation != "eager" and bool(valid.all()):
        return None
    if implementation == "flash_attention_2":
        return valid.long()
    S = valid.shape[1]
    causal = torch.ones(S, S, dtype=torch.bool, device=valid.device).tril()
    allowed = causal[None] & valid[:, None, :]
    allowed |= torch.eye(S, dtype=torch.bool, device=valid.device)[None]  # padding rows attend to themselves
    return additive_mask(allowed, dtype)
