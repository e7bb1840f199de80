"""Token compressors: which visual tokens of each frame enter each decoder layer, one class per method.

A `TokenCompressor` is a small dataclass registered by its `name`; the name (and the method's own parameters, in
`XCompConfig.compression_args`) is what a model's config.json records, so a checkpoint says how it was trained
and loads the same way. `XCompModel` calls only this interface and names no method. Adding a method = a subclass
with a new `name` (it registers itself) plus a YAML under conf/compress/.

The schedule (tokens per frame entering each layer) is shared: every in-LLM method drops to the same counts, so
methods are compared at equal token budgets; a method decides only *which* tokens survive.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from xcomp.compression.schedule import CompressionSchedule
from xcomp.compression.token_drop import pool_frame_tokens, suffix_slots, top_slots_by_score, uniform_slots
from xcomp.errors import ConfigError

if TYPE_CHECKING:
    from xcomp.model.configuration import XCompConfig

COMPRESSORS: dict[str, type[TokenCompressor]] = {}
"""Registered methods by name (filled by subclassing `TokenCompressor`)."""


@dataclass
class TokenCompressor:
    """Base class: keeps every token (subclasses override what they change)."""

    name: ClassVar[str] = ""
    """Registry name, stored as `XCompConfig.compression`."""
    needs_attention: ClassVar[bool] = False
    """Whether `keep_visual` needs the last prompt token's attention from the layer before each drop."""
    drops_in_llm: ClassVar[bool] = True
    """Whether the schedule applies between decoder layers (False: every layer sees the same tokens)."""

    @property
    def reads_question(self) -> bool:
        """Whether the visual tokens it keeps depend on the prompt after the video (then the K/V of the prompt
        before the question cannot be shared by a video's questions). Methods that read the last prompt token's
        attention do; a subclass that reads the question otherwise says so here."""
        return self.needs_attention

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            COMPRESSORS[cls.name] = cls

    # ------------------------------------------------------------------ config round trip
    @classmethod
    def from_config(cls, config: XCompConfig) -> TokenCompressor:
        """The compressor a model config describes (its `compression_args` are this class's fields)."""
        try:
            return cls(**(config.compression_args or {}))
        except TypeError as error:
            raise ConfigError(f"compression_args for {cls.name!r}: {error}") from error

    def config_fields(self) -> dict:
        """The `XCompConfig` fields that record this compressor (inverse of `from_config`)."""
        return {"compression": self.name, "compression_args": dataclasses.asdict(self) or None}

    # ------------------------------------------------------------------ behaviour
    def llm_tokens_per_frame(self, tokens_per_frame: int) -> int:
        """Tokens per frame entering the LLM's first layer."""
        return tokens_per_frame

    def schedule(self, config: XCompConfig) -> CompressionSchedule:
        """Tokens per frame entering each layer: the config's schedule (default cosine) or dense."""
        L, T = config.num_layers, self.llm_tokens_per_frame(config.tokens_per_frame)
        if not self.drops_in_llm:
            return CompressionSchedule.dense(L, T)
        if config.schedule is None:
            return CompressionSchedule.cosine(L, T)
        return CompressionSchedule.from_list(config.schedule, T, num_layers=L)

    def validate(self, config: XCompConfig) -> None:
        """Raise `ConfigError` when this method cannot run with ``config`` (checked when the config is built)."""
        self.schedule(config)

    def before_llm(self, tokens: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
        """Projector tokens of one video [F*T, D] -> what enters the LLM (pre-LLM methods change this)."""
        return tokens

    def slot_masks(self, schedule: CompressionSchedule) -> list[torch.Tensor] | None:
        """Per-layer [T] bool masks of kept slots for input-independent methods; None when the choice depends
        on the tokens (then `keep_visual` is given the tokens' scores)."""
        return None

    def keep_visual(
        self, slot: torch.Tensor, visual: torch.Tensor, index: torch.Tensor, per_frame: int, k: int,
        scores: torch.Tensor | None,
    ) -> torch.Tensor:
        """[B, S] bool: which valid visual tokens (``visual``) keep going, ``k`` of each frame's ``per_frame``.

        Called only for methods without `slot_masks`. ``slot``: position of each token in its frame group;
        ``index``: its column in the expanded input (stable across drops); ``scores``: the last prompt token's
        attention when `needs_attention`.
        """
        raise NotImplementedError


def compressor_for(config: XCompConfig) -> TokenCompressor:
    """The registered compressor named by ``config.compression``."""
    cls = COMPRESSORS.get(config.compression)
    if cls is None:
        raise ConfigError(f"unknown compression {config.compression!r} (registered: {', '.join(sorted(COMPRESSORS))})")
    return cls.from_config(config)


@dataclass
class Dense(TokenCompressor):
    """No compression: every layer sees all tokens."""

    name: ClassVar[str] = "dense"
    drops_in_llm: ClassVar[bool] = False


@dataclass
class LPComp(TokenCompressor):
    """XComp's learnable progressive compression: keep each frame's suffix (causal attention lets the last slots
    read the earlier ones, so SCT moves a frame's content there)."""

    name: ClassVar[str] = "lp_comp"

    def slot_masks(self, schedule):
        return suffix_slots(list(schedule.kept), schedule.tokens_per_frame)


@dataclass
class UniformDrop(TokenCompressor):
    """Keep evenly spaced slots, each layer's set nested in the previous one (the heuristic baseline)."""

    name: ClassVar[str] = "uniform_drop"

    def slot_masks(self, schedule):
        return uniform_slots(list(schedule.kept), schedule.tokens_per_frame)


@dataclass
class AttnPrune(TokenCompressor):
    """FastV / PyramidDrop style: keep the tokens the last prompt token attends to most."""

    name: ClassVar[str] = "attn_prune"
    needs_attention: ClassVar[bool] = True

    def validate(self, config):
        if self.schedule(config).kept[0] < config.tokens_per_frame:
            raise ConfigError("attn_prune needs a dense first layer to score tokens (schedule[0] must be full)")

    def keep_visual(self, slot, visual, index, per_frame, k, scores):
        return top_slots_by_score(scores, visual, per_frame, k)


@dataclass
class RandomDrop(TokenCompressor):
    """Keep a seeded random subset of each frame's tokens, nested across layers (a strong training-free baseline).

    Every token gets a fixed pseudo-random priority from its input column and the seed, and each layer keeps
    the ``k`` highest of a frame's survivors, so the kept sets are nested and the same for the same input.
    """

    name: ClassVar[str] = "random_drop"
    seed: int = 0
    """Seed of the token priorities."""

    def keep_visual(self, slot, visual, index, per_frame, k, scores):
        generator = torch.Generator().manual_seed(self.seed)
        width = int(index.max()) + 1
        priority = torch.rand(width, generator=generator).to(index.device)[index]
        return top_slots_by_score(priority, visual, per_frame, k)


@dataclass
class PrePool(TokenCompressor):
    """Average-pool each frame to `pool_tokens_per_frame` tokens before the LLM (the pre-LLM baseline).

    Its parameter is the published `XCompConfig.pool_tokens_per_frame` field rather than `compression_args`.
    """

    name: ClassVar[str] = "pre_pool"
    drops_in_llm: ClassVar[bool] = False
    tokens: int = 1
    """Tokens per frame left after pooling (must divide the projector's tokens per frame)."""

    @classmethod
    def from_config(cls, config):
        return cls(tokens=config.pool_tokens_per_frame)

    def config_fields(self):
        return {"compression": self.name, "compression_args": None, "pool_tokens_per_frame": self.tokens}

    def llm_tokens_per_frame(self, tokens_per_frame):
        return self.tokens

    def validate(self, config):
        if self.tokens < 1 or config.tokens_per_frame % self.tokens:
            raise ConfigError(
                f"pool_tokens_per_frame={self.tokens} must divide tokens_per_frame={config.tokens_per_frame}"
            )

    def before_llm(self, tokens, tokens_per_frame):
        return pool_frame_tokens(tokens, tokens_per_frame, self.tokens)
