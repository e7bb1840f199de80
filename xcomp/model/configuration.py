"""`XCompConfig`: the whole video-LLM (UMT encoder, ToMe projector, Qwen2 LLM) plus its compression setting."""

from __future__ import annotations

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, Qwen2Config
from transformers.configuration_utils import SubConfigSpec

from xcomp.compression.compressors import compressor_for
from xcomp.compression.schedule import CompressionSchedule
from xcomp.errors import ConfigError
from xcomp.vision.config import UMTVisionConfig

QWEN2_5_VIDEO_PAD_ID = 151656
"""`<|video_pad|>` in the Qwen2.5 vocabulary: the single placeholder that expands into all visual tokens."""


@strict
class XCompConfig(PreTrainedConfig):
    """Configuration of `XCompForCausalLM`.

    The two sub-configs describe the LLM (transformers' `Qwen2Config`) and the vision tower; the flat fields
    describe how they are joined and how visual tokens are compressed inside the LLM.
    """

    model_type = "xcomp"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=Qwen2Config),
        "vision_config": SubConfigSpec(config_class=UMTVisionConfig),
    }

    text_config: dict | PreTrainedConfig | None = None
    """The LLM (Qwen2.5-1.5B for VideoChat-Flash-2B)."""
    vision_config: dict | PreTrainedConfig | None = None
    """The UMT video ViT."""
    tokens_per_frame: int = 16
    """Visual tokens per frame after ToMe merging (16 in VideoChat-Flash)."""
    video_token_id: int = QWEN2_5_VIDEO_PAD_ID
    """Token id in `input_ids` that is replaced by the whole video's visual tokens."""
    newline_position: Literal["nothing", "one_token"] = "nothing"
    """'one_token' appends a learned `image_newline` embedding after the video (published `mm_newline_position`)."""
    compression: str = "lp_comp"
    """Token compression method inside/before the LLM: a name registered in `xcomp.compression.compressors`
    (dense, lp_comp, uniform_drop, attn_prune, random_drop, pre_pool, or one a user registers)."""
    compression_args: dict | None = None
    """The compression method's own parameters (its dataclass fields), e.g. random_drop's seed."""
    schedule: list[int] | None = None
    """Tokens per frame entering each decoder layer; None = the paper's cosine schedule 16 -> 1."""
    position_ids_after_drop: Literal["original", "renumbered"] = "original"
    """'original': kept tokens keep their rotary positions (the paper); 'renumbered': positions are re-indexed
    0..n-1 after every drop, as the published XComp code does (needed to reproduce its checkpoints exactly)."""
    pool_tokens_per_frame: int = 1
    """Tokens per frame left by the `pre_pool` baseline (must divide `tokens_per_frame`)."""
    tie_word_embeddings: bool = True
    """Qwen2.5-1.5B ties the LM head to the input embedding."""
    vocab_subset: list[int] | None = None
    """Token ids the model can read and write (row i+1 of a compact embedding; row 0 = any other id). Keeps
    tiny models a few MB while they still use the real Qwen2.5 tokenizer; None = the full vocabulary."""
    tokenizer_vocab_size: int = 151936
    """Size of the tokenizer's id space (the range `vocab_subset` ids live in)."""

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.tie_word_embeddings = bool(self.text_config.tie_word_embeddings)
        if self.vocab_subset is not None:
            if len(set(self.vocab_subset)) != len(self.vocab_subset):
                raise ConfigError("vocab_subset has duplicate ids")
            if not all(0 <= i < self.tokenizer_vocab_size for i in self.vocab_subset):
                raise ConfigError(f"vocab_subset ids must lie in [0, {self.tokenizer_vocab_size})")
            if self.text_config.vocab_size != len(self.vocab_subset) + 1:
                raise ConfigError("with vocab_subset, text_config.vocab_size must be len(vocab_subset) + 1")
        self.validate_compression()

    def validate_compression(self) -> None:
        """Raise `ConfigError` for an inconsistent compression setting."""
        compressor_for(self).validate(self)

    @property
    def num_layers(self) -> int:
        return self.text_config.num_hidden_layers

    @property
    def local_num_frames(self) -> int:
        """Frames that the vision tower encodes jointly and ToMe merges together (a clip)."""
        return self.vision_config.num_frames

    def compression_schedule(self) -> CompressionSchedule:
        """The per-layer token counts this config runs with (dense for methods that do not drop in the LLM)."""
        return compressor_for(self).schedule(self)

    def with_compression(self, **fields) -> XCompConfig:
        """A copy with other compression fields (`compression`, `schedule`, …); weights are unaffected."""
        data = self.to_dict()
        if fields.get("compression", self.compression) != self.compression:
            data["compression_args"] = None  # the old method's parameters mean nothing to the new one
        data.update(fields)
        return XCompConfig.from_dict(data)

    @classmethod
    def tiny(
        cls,
        num_layers: int = 4,
        vocab_size: int = 151936,
        vocab_subset: list[int] | None = None,
        hidden_size: int = 64,
        patch_size: int = 8,
        **fields,
    ) -> XCompConfig:
        """A small model with the real code path (tests, synthetic training); a `vocab_subset` makes it a few MB.

        Frames are 64 px; `patch_size` 16 gives exactly 16 patches per frame, so ToMe has nothing to merge.
        """
        text = Qwen2Config(
            vocab_size=len(vocab_subset) + 1 if vocab_subset else vocab_size,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
            tie_word_embeddings=True,
            bos_token_id=151643,
            eos_token_id=151645,
        )
        vision = UMTVisionConfig(
            hidden_size=hidden_size,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=64,
            patch_size=patch_size,
            num_frames=4,
        )
        return cls(text_config=text, vision_config=vision, vocab_subset=vocab_subset, **fields)
