"""Analytic cost of a run: tokens per layer, FLOPs and KV-cache bytes, from the config alone.

Counts multiply-adds as 2 FLOPs and count only matrix products (projections, MLPs, attention scores and
values); norms, rotary and softmax are ignored, as is usual. Attention is causal, so a layer with n tokens does
n(n+1)/2 query-key pairs. Nothing is allocated: this runs for the 2B shape and 4,096 frames instantly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xcomp.model.configuration import XCompConfig


@dataclass
class RunCost:
    """Cost of one prefill (+ one decoded token) for a given config, frame count and text length."""

    method: str
    num_frames: int
    text_tokens: int
    tokens_per_layer: list[int]
    """Tokens entering each decoder layer (text + visual)."""
    llm_prefill_flops: float
    decode_flops_per_token: float
    """FLOPs for one new token attending to the (compressed) cache, LM head included."""
    kv_cache_bytes: int
    vision_flops: float
    """UMT encoder + projector MLP over all frames (identical for every in-LLM method)."""
    extra: dict = field(default_factory=dict)

    def ratio_to(self, other: RunCost) -> dict[str, float]:
        """This run's cost relative to `other` (usually dense)."""
        return {
            "token_layers": sum(self.tokens_per_layer) / sum(other.tokens_per_layer),
            "prefill_flops": self.llm_prefill_flops / other.llm_prefill_flops,
            "kv_cache_bytes": self.kv_cache_bytes / other.kv_cache_bytes,
            "decode_flops": self.decode_flops_per_token / other.decode_flops_per_token,
        }


def layer_flops(config: XCompConfig, n: int, n_keys: int | None = None) -> float:
    """FLOPs of one decoder layer for n new tokens (prefill when n_keys is None, else n tokens vs n_keys)."""
    t = config.text_config
    d, f = t.hidden_size, t.intermediate_size
    hd = d // t.num_attention_heads
    kv = t.num_key_value_heads * hd
    proj = 2 * n * d * (d + 2 * kv + d)
    mlp = 2 * n * 3 * d * f
    pairs = n * (n + 1) / 2 if n_keys is None else n * n_keys
    attn = 2 * 2 * pairs * t.num_attention_heads * hd
    return proj + mlp + attn


def vision_flops(config: XCompConfig, num_frames: int) -> float:
    """UMT blocks over clips of `local_num_frames` frames plus the projector MLP (ToMe matching ignored)."""
    v = config.vision_config
    clips = num_frames // v.num_frames
    n = v.num_frames * v.patches_per_frame
    c = v.hidden_size
    per_block = 2 * n * 4 * c * c + 2 * n * 2 * c * int(v.mlp_ratio * c) + 2 * 2 * n * n * c
    patch = 2 * n * c * v.num_channels * v.patch_size**2
    d = config.text_config.hidden_size
    mlp = 2 * num_frames * config.tokens_per_frame * (c * d + d * d)
    return clips * (v.num_blocks * per_block + patch) + mlp


def run_cost(
    config: XCompConfig,
    num_frames: int,
    text_tokens: int = 64,
    dtype_bytes: int = 2,
    visual_per_layer: list[int] | None = None,
) -> RunCost:
    """Cost of answering with `num_frames` frames and `text_tokens` prompt tokens under `config`'s method: the
    visual tokens entering each layer as measured (``visual_per_layer``, what a prefill kept) or as the method
    expects them (`TokenCompressor.visual_per_layer`)."""
    from xcomp.compression.compressors import compressor_for

    compressor = compressor_for(config)
    visual = visual_per_layer if visual_per_layer is not None else compressor.visual_per_layer(config, num_frames)
    tokens = [text_tokens + v for v in visual]
    decode_keys = compressor.decode_keys(config, tokens, visual)
    t = config.text_config
    hd = t.hidden_size // t.num_attention_heads
    kv_bytes = sum(2 * n * t.num_key_value_heads * hd * dtype_bytes for n in tokens)
    head = 2 * t.hidden_size * t.vocab_size
    return RunCost(
        method=config.compression,
        num_frames=num_frames,
        text_tokens=text_tokens,
        tokens_per_layer=tokens,
        llm_prefill_flops=sum(layer_flops(config, n) for n in tokens) + head,
        decode_flops_per_token=sum(layer_flops(config, 1, n + 1) for n in decode_keys) + head,
        kv_cache_bytes=kv_bytes,
        vision_flops=vision_flops(config, num_frames),
    )


def parameter_counts(config: XCompConfig) -> dict[str, int]:
    """Parameters per part, counted on the meta device (no memory is allocated)."""
    import torch

    from xcomp.model.modeling import XCompForCausalLM

    with torch.device("meta"):
        model = XCompForCausalLM(config)
    inner = model.model
    lm = inner.language_model
    counts = {
        "vision_tower": sum(p.numel() for p in inner.vision_tower.parameters()),
        "projector": sum(p.numel() for p in inner.mm_projector.parameters()),
        "llm": sum(p.numel() for p in lm.parameters()),
    }
    if not config.tie_word_embeddings:
        counts["lm_head"] = model.lm_head.weight.numel()
    counts["total"] = sum(counts.values()) + (inner.image_newline.numel() if inner.image_newline is not None else 0)
    return counts
