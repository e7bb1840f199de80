"""UMT-L video ViT, the vision encoder of VideoChat-Flash.

A plain pre-norm ViT that encodes a clip of `num_frames` frames as one sequence, so attention mixes space and time.
Parameter names follow the published checkpoint after stripping `model.vision_tower.vision_tower.`.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward

from xcomp.vision.config import UMTVisionConfig


def sincos_pos_embed(dim: int, num_frames: int, grid: int, base_frames: int = 4, base_grid: int = 14) -> torch.Tensor:
    """Fixed position embedding [1, num_frames * grid**2, dim], as the published UMT builds it.

    The table is a *1-D* transformer sinusoid over the base_frames * base_grid**2 token positions UMT was
    pretrained with (4 frames at 224 px), viewed as (time, row, col), then resized: bicubic in space (14 -> 28
    at 448 px) and linear in time. Always built on the CPU in float64 -> float32 so that a tower constructed on
    the meta device still holds real values.
    """
    pos = np.arange(base_frames * base_grid**2, dtype=np.float64)[:, None]
    angles = pos / np.power(10000, 2 * (np.arange(dim) // 2) / dim)
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    table = torch.tensor(angles, dtype=torch.float32, device="cpu")
    if grid != base_grid:
        table = table.reshape(base_frames, base_grid, base_grid, dim).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(grid, grid), mode="bicubic", align_corners=False)
        table = table.permute(0, 2, 3, 1).reshape(-1, dim)
    if num_frames != base_frames:
        table = table.reshape(base_frames, grid * grid, dim).permute(1, 2, 0)
        table = F.interpolate(table, size=num_frames, mode="linear", align_corners=False)
        table = table.permute(2, 0, 1).reshape(-1, dim)
    return table.unsqueeze(0)


class FixedPositionEmbedding(nn.Module):
    """Holds the sin-cos table as a non-persistent buffer.

    A module of its own (with no parameters) so that Hugging Face loading, which builds the model on the meta
    device and re-initialises only modules not fully covered by the checkpoint, recomputes the table via
    `reset_table` instead of leaving it uninitialised.
    """

    def __init__(self, config: UMTVisionConfig):
        super().__init__()
        self.config = config
        self.register_buffer("table", self.compute_table(), persistent=False)

    def compute_table(self) -> torch.Tensor:
        c = self.config
        return sincos_pos_embed(
            c.hidden_size,
            c.num_frames // c.tubelet_size,
            c.grid_size,
            c.pos_embed_base_frames,
            c.pos_embed_base_grid,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table.to(x.dtype)


class PatchEmbed(nn.Module):
    def __init__(self, config: UMTVisionConfig):
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.num_channels, config.hidden_size, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, T*h*w, hidden], tokens ordered time, row, column."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention; the qkv projection has q and v biases but no k bias (BEiT style).

    The kernel is transformers' attention interface named by ``config._attn_implementation`` (``sdpa`` when
    unset; ``eager``, ``flash_attention_2``), as in the LLM's layers."""

    is_causal = False
    num_key_value_groups = 1

    def __init__(self, config: UMTVisionConfig):
        super().__init__()
        dim = config.hidden_size
        self.config = config
        self.num_heads = config.num_attention_heads
        self.scaling = (dim // self.num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        implementation = self.config._attn_implementation or "sdpa"
        attend = eager_attention_forward if implementation == "eager" else ALL_ATTENTION_FUNCTIONS[implementation]
        x, _ = attend(self, q, k, v, None, scaling=self.scaling, dropout=0.0)
        return self.proj(x.reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, config: UMTVisionConfig):
        super().__init__()
        hidden = int(config.hidden_size * config.mlp_ratio)
        self.fc1 = nn.Linear(config.hidden_size, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config: UMTVisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = Mlp(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UMTEncoder(nn.Module):
    def __init__(self, config: UMTVisionConfig):
        super().__init__()
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = FixedPositionEmbedding(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_blocks))
        self.vision_layernorm = nn.LayerNorm(config.hidden_size, eps=config.vision_layernorm_eps)

    def forward(self, clips: torch.Tensor, use_checkpoint: bool = False) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, T*h*w, hidden] after the last kept block and `vision_layernorm`."""
        x = self.patch_embed(clips)
        x = self.pos_embed(x)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        return self.vision_layernorm(x)


class UMTVisionTower(nn.Module):
    """Encodes a video clip by clip and returns per-frame patch features.

    `gradient_checkpointing` (off by default) recomputes block activations in the backward pass while training.
    """

    def __init__(self, config: UMTVisionConfig):
        super().__init__()
        self.config = config
        self.encoder = UMTEncoder(config)
        self.gradient_checkpointing = False

    def forward(self, pixel_values: torch.Tensor, clip_batch_size: int | None = None) -> torch.Tensor:
        """[T, 3, H, W] -> [T, patches_per_frame, hidden].

        The T frames are cut into T / num_frames consecutive clips; each clip is one ViT sequence, so a frame's
        features depend on the other frames of its clip. Clips are encoded `clip_batch_size` at a time (all at
        once by default).
        """
        cfg = self.config
        t, c, h, w = pixel_values.shape
        if t % cfg.num_frames != 0:
            raise ValueError(f"number of frames ({t}) must be a multiple of num_frames ({cfg.num_frames})")
        if (c, h, w) != (cfg.num_channels, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"expected frames of shape {(cfg.num_channels, cfg.image_size, cfg.image_size)}, got {(c, h, w)}"
            )
        weight = self.encoder.patch_embed.proj.weight
        clips = pixel_values.to(weight.dtype).reshape(t // cfg.num_frames, cfg.num_frames, c, h, w).transpose(1, 2)
        use_checkpoint = self.gradient_checkpointing and self.training
        chunks = clips.split(clip_batch_size or clips.shape[0])
        features = torch.cat([self.encoder(chunk, use_checkpoint) for chunk in chunks])
        return features.reshape(t, cfg.patches_per_frame, cfg.hidden_size)


__all__ = ["FixedPositionEmbedding", "UMTVisionTower", "sincos_pos_embed"]
