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
    needs_saliency: ClassVar[bool] = False
    """Whether `merge_video` reads each token's saliency in the vision tower (`video_tokens.tower_attention`)."""
    reduces_in_llm: ClassVar[bool] = False
    """Whether `reduce_in_llm` runs before the layers of `reduce_layers`."""
    input_dependent: ClassVar[bool] = False
    """Whether how many tokens it keeps depends on the video (then `visual_per_layer` is an expectation, and an
    answer counts what its prefill kept)."""

    @property
    def reads_question(self) -> bool:
        """Whether the visual tokens it keeps depend on the prompt after the video (then the K/V of the prompt
        before the question cannot be shared by a video's questions). Methods that read the question's attention
        (a schedule's `keep_visual` or `reduce_in_llm`) do; a subclass that reads the question otherwise says so."""
        return self.needs_attention or self.reduces_in_llm

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

    def visual_per_layer(self, config: XCompConfig, num_frames: int) -> list[int]:
        """Visual tokens entering each decoder layer for ``num_frames`` frames, as the method expects them (what
        `xcomp info` and the benchmark count; an answer counts what its prefill actually kept)."""
        return [num_frames * k for k in self.schedule(config).kept]

    def decode_keys(self, config: XCompConfig, tokens_per_layer: list[int], visual_per_layer: list[int]) -> list[int]:
        """Cached keys a decoded token attends to in each layer (methods that prune the cache while decoding
        attend to fewer)."""
        return tokens_per_layer

    def validate(self, config: XCompConfig) -> None:
        """Raise `ConfigError` when this method cannot run with ``config`` (checked when the config is built)."""
        self.schedule(config)

    def before_llm(
        self, tokens: torch.Tensor, tokens_per_frame: int, features: torch.Tensor | None = None, tower=None
    ) -> torch.Tensor:
        """Projector tokens of one video [F*T, D] -> [F*T', D], `llm_tokens_per_frame` per frame, before frames
        are selected (pre-LLM methods with a fixed count per frame change this); ``features`` [F*T, C] are the
        same tokens before the projector's MLP and ``tower`` the vision tower, for methods that read them."""
        return tokens

    def merge_video(
        self, tokens: torch.Tensor, tokens_per_frame: int, saliency: torch.Tensor | None, config: XCompConfig
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frames given to the LLM, [F*T, D] -> [N, D] tokens in any number per frame (merged within or across
        frames), and a group id per token that `reduce_in_llm` reads (None: none). ``saliency`` [F*T]: the tower's
        (`needs_saliency`). Identity by default."""
        return tokens, None

    def reduce_layers(self, config: XCompConfig) -> tuple[int, ...]:
        """Decoder layers before which `reduce_in_llm` runs."""
        return ()

    def reduce_in_llm(
        self, config: XCompConfig, hidden: torch.Tensor, visual: torch.Tensor, groups: torch.Tensor,
        dense: torch.Tensor, attention: torch.Tensor, queries: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep [B, S] bool, hidden [B, S, D]) before a layer of `reduce_layers`: which visual tokens go on, and the
        hidden states (a method that merges dropped tokens into kept ones changes them). ``visual`` [B, S]: valid
        visual tokens; ``groups`` [B, S] their `merge_video` group (-1 for text); ``dense`` [B] the visual tokens
        the sample's frames had before `merge_video`; ``attention`` [B, H, Q, S] of the question's tokens at the
        previous layer, ``queries`` [B, Q] which of its rows are real (padding repeats the last)."""
        raise NotImplementedError

    def decode_prune_layer(self, config: XCompConfig) -> int | None:
        """First decoder layer whose attention to the cached visual keys `decode_keep` narrows while decoding."""
        return None

    def decode_keep(
        self, attention: torch.Tensor, visual: torch.Tensor, state: tuple | None
    ) -> tuple[torch.Tensor, tuple]:
        """(keep [B, K] bool, state): which of the prefill's cached keys that are ``visual`` [B, K] a decoded token
        attends to from `decode_prune_layer` on, given its head-averaged ``attention`` [B, K] to them at the layer
        before; ``state`` is what the previous decoding step returned (None at the first)."""
        raise NotImplementedError

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


def all_compressors() -> dict[str, type[TokenCompressor]]:
    """Every registered method: those here and one per module of `xcomp.compression.methods` (imported first)."""
    import importlib
    import pkgutil

    import xcomp.compression.methods

    for module in pkgutil.iter_modules(xcomp.compression.methods.__path__):
        importlib.import_module(f"xcomp.compression.methods.{module.name}")
    return dict(COMPRESSORS)


def compressor_for(config: XCompConfig) -> TokenCompressor:
    """The registered compressor named by ``config.compression``."""
    cls = COMPRESSORS.get(config.compression) or all_compressors().get(config.compression)
    if cls is None:
        raise ConfigError(f"unknown compression {config.compression!r} (registered: {', '.join(sorted(COMPRESSORS))})")
    return cls.from_config(config)


def lp_share(config: XCompConfig) -> float:
    """The share of the dense model's visual token-layers LP-Comp keeps with ``config``'s schedule, or the
    cosine schedule at its layer count when it has none (0.549 at VideoChat-Flash-2B's 28 layers; the shipped tiny
    models' 16, 9, 3, 1 keep 0.453): the default `budget`."""
    schedule = LPComp().schedule(config)
    return sum(schedule.kept) / (config.num_layers * config.tokens_per_frame)


@dataclass
class BudgetedCompressor(TokenCompressor):
    """A method set by one cost, `budget`, which it turns into its own hyper-parameters (tokens kept per frame,
    merge ratio, pruning layer and ratio, ...), so that methods are compared at equal cost (the run's ``budget``)."""

    drops_in_llm: ClassVar[bool] = False
    budget: float | None = None
    """Share of the dense model's visual token-layers to spend (None: `lp_share`, LP-Comp's)."""

    @classmethod
    def from_config(cls, config):
        compressor = super().from_config(config)
        if compressor.budget is None:
            compressor.budget = lp_share(config)
        return compressor

    def share(self, config: XCompConfig) -> float:
        """The budget in effect."""
        return lp_share(config) if self.budget is None else self.budget

    @staticmethod
    def scaled_layer(layer: int, of: int, config: XCompConfig) -> int:
        """The authors' decoder ``layer`` of ``of`` placed at the same depth of ``config``'s LLM (at least 1)."""
        return min(max(1, round(layer / of * config.num_layers)), config.num_layers - 1)

    def validate(self, config):
        share = self.share(config)
        if not 0 < share <= 1:
            raise ConfigError(f"{self.name}: budget must be in (0, 1], got {share}")


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

    def before_llm(self, tokens, tokens_per_frame, features=None, tower=None):
        return pool_frame_tokens(tokens, tokens_per_frame, self.tokens)
