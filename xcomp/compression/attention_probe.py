"""Attention of a few query rows, recomputed outside the fused attention kernel.

Attention-score pruning (FastV / PyramidDrop) and QC-Comp frame scoring need the attention that a handful of
query tokens (the last prompt token, the question) pay to the visual tokens. Asking the model for full attention
matrices would force eager attention everywhere and materialise [heads, S, S]; instead we recompute only
``q(query rows) · k(all keys)`` of one decoder layer from that layer's input, which costs O(Q·S) and leaves the
SDPA/flash kernels of the real forward untouched.
"""

from __future__ import annotations

import torch
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, apply_rotary_pos_emb


def query_attention(
    layer: Qwen2DecoderLayer,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    query_index: torch.Tensor,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention probabilities of selected query rows at one decoder layer.

    Args:
        layer: the decoder layer whose attention is probed.
        hidden_states: [B, S, D] input of that layer (before its input layernorm).
        position_embeddings: (cos, sin), each [B, S, head_dim], as passed to the layer.
        query_index: [B, Q] sequence indices of the query rows.
        key_mask: optional [B, Q, S] or [B, S] bool, True where a key may be attended. Causality is not added
            here: callers pass query rows that come after the keys they score, or an explicit mask.

    Returns:
        [B, H, Q, S] float32 attention probabilities (rows sum to 1 over the allowed keys).
    """
    attn = layer.self_attn
    x = layer.input_layernorm(hidden_states)
    B, S, _ = x.shape
    hd = attn.head_dim
    cos, sin = position_embeddings
    gather = query_index[..., None].expand(-1, -1, x.shape[-1])
    xq = x.gather(1, gather)
    q = attn.q_proj(xq).view(B, -1, attn.config.num_attention_heads, hd).transpose(1, 2)
    k = attn.k_proj(x).view(B, S, -1, hd).transpose(1, 2)
    qcos = cos.gather(1, query_index[..., None].expand(-1, -1, hd))
    qsin = sin.gather(1, query_index[..., None].expand(-1, -1, hd))
    q, _ = apply_rotary_pos_emb(q, q, qcos, qsin)
    k, _ = apply_rotary_pos_emb(k, k, cos, sin)
    k = k.repeat_interleave(attn.num_key_value_groups, dim=1)
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scaling
    if key_mask is not None:
        mask = key_mask[:, None, None, :] if key_mask.dim() == 2 else key_mask[:, None]
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return logits.softmax(dim=-1)


def cached_query_attention(
    layer: Qwen2DecoderLayer,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    cached_keys: torch.Tensor,
    cached_valid: torch.Tensor,
) -> torch.Tensor:
    """Softmax attention probabilities of new rows over a layer's cached keys and their own, causally.

    Args:
        hidden_states: [B, Q, D] input of the layer for the new rows (before its input layernorm).
        position_embeddings: (cos, sin), each [B, Q, head_dim], of the new rows.
        cached_keys: [B, KV heads, K, head_dim] the layer's cached keys (rotary applied, as the cache stores them).
        cached_valid: [B, K] bool, False for padding keys.

    Returns:
        [B, H, Q, K + Q] float32 probabilities: the cached keys first, then the new rows' own keys.
    """
    attn = layer.self_attn
    x = layer.input_layernorm(hidden_states)
    B, Q, _ = x.shape
    hd = attn.head_dim
    cos, sin = position_embeddings
    q = attn.q_proj(x).view(B, Q, -1, hd).transpose(1, 2)
    k = attn.k_proj(x).view(B, Q, -1, hd).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    keys = torch.cat([cached_keys.to(k.dtype), k], dim=2).repeat_interleave(attn.num_key_value_groups, dim=1)
    logits = torch.matmul(q.float(), keys.float().transpose(-1, -2)) * attn.scaling
    causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
    allowed = torch.cat([cached_valid[:, None, :].expand(B, Q, -1), causal[None].expand(B, Q, Q)], dim=2)
    return logits.masked_fill(~allowed[:, None], torch.finfo(logits.dtype).min).softmax(dim=-1)
