"""Configuration of the UMT-L video encoder used by VideoChat-Flash.

Defaults are the published `umt-hd-large` tower (`build_vit` in VideoChat-Flash's `vision_tower_builder.py`,
called with image_size 448 because the tower name contains "umt-hd").
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class UMTVisionConfig(PreTrainedConfig):
    model_type = "xcomp_umt"

    hidden_size: int = 1024
    """Token width of the ViT (`encoder_embed_dim`); equals the projector's `mm_hidden_size`."""
    num_hidden_layers: int = 24
    """Depth of the published tower; only `num_blocks` of them are instantiated."""
    num_attention_heads: int = 16
    """Attention heads per block."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of `hidden_size`."""
    num_channels: int = 3
    """Input image channels (RGB)."""
    patch_size: int = 16
    """Side of the square patch cut by the Conv3d patch embedding."""
    image_size: int = 448
    """Side of the (square) input frames; fixes the position-embedding grid (448/16 = 28)."""
    tubelet_size: int = 1
    """Frames per patch along time (Conv3d temporal kernel); 1 so every frame keeps its own tokens."""
    num_frames: int = 4
    """Frames encoded jointly as one ViT sequence (= `mm_local_num_frames`)."""
    select_layer: int = -2
    """Which block's output is used (`mm_vision_select_layer`): depth + select_layer + 1 blocks are built."""
    layer_norm_eps: float = 1e-6
    """Epsilon of the pre-norm LayerNorms inside each block."""
    vision_layernorm_eps: float = 1e-12
    """Epsilon of the LayerNorm applied after the last kept block (`vision_layernorm`)."""
    pos_embed_base_grid: int = 14
    """Spatial side of the sin-cos table before bicubic resizing (UMT was pretrained at 224/16 = 14)."""
    pos_embed_base_frames: int = 4
    """Temporal length of the sin-cos table before linear resizing (`ckpt_num_frame`: pretrained on 4 frames)."""

    @property
    def num_blocks(self) -> int:
        """Blocks that actually run: those after the selected layer are never built."""
        return self.num_hidden_layers + self.select_layer + 1

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    @property
    def patches_per_frame(self) -> int:
        return self.grid_size**2

    @classmethod
    def tiny(cls, **kwargs) -> "UMTVisionConfig":
        """The tower of the shared parity fixture: width 128, depth 4 (3 built), 16 heads, patch 16, 448 px."""
        return cls(**{"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 16, **kwargs})

    def validate_architecture(self):
        """Part of `@strict`-powered validation."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.tubelet_size != 1:
            raise ValueError("only tubelet_size 1 is supported: the tower returns one feature map per frame")
        if not -self.num_hidden_layers <= self.select_layer < 0:
            raise ValueError(
                f"select_layer ({self.select_layer}) must be in [-{self.num_hidden_layers}, -1] "
                "(negative, counted from the last block)"
            )


__all__ = ["UMTVisionConfig"]
