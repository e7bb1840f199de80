"""How many visual tokens of each frame enter each decoder layer.

A schedule is a non-increasing list with one entry per decoder layer: ``kept[i]`` tokens of every frame's
``tokens_per_frame``-token group enter layer ``i`` (0-based). The last layer's count is also what leaves the
model. Which tokens survive (suffix, evenly spaced, highest attention) is decided by the compression method, not
by the schedule, so every method can be compared at the same token budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from xcomp.errors import ConfigError


@dataclass(frozen=True)
class CompressionSchedule:
    """Per-layer visual-token counts per frame (see module docstring)."""

    kept: tuple[int, ...]
    """Tokens per frame entering each decoder layer (0-based), non-increasing."""
    tokens_per_frame: int = 16
    """Tokens per frame produced by the projector (the schedule's starting width)."""

    def __post_init__(self) -> None:
        kept = tuple(int(k) for k in self.kept)
        object.__setattr__(self, "kept", kept)
        if not kept:
            raise ConfigError("a compression schedule needs at least one layer")
        if any(k < 1 or k > self.tokens_per_frame for k in kept):
            raise ConfigError(f"schedule entries must lie in [1, {self.tokens_per_frame}], got {list(kept)}")
        if any(b > a for a, b in zip(kept, kept[1:])):
            raise ConfigError(f"schedule must be non-increasing (tokens are only dropped), got {list(kept)}")

    @classmethod
    def dense(cls, num_layers: int, tokens_per_frame: int = 16) -> CompressionSchedule:
        """No compression: every layer sees all tokens."""
        return cls((tokens_per_frame,) * num_layers, tokens_per_frame)

    @classmethod
    def cosine(
        cls, num_layers: int, tokens_per_frame: int = 16, final: int = 1, shift: int = 0
    ) -> CompressionSchedule:
        """The paper's cosine decay from ``tokens_per_frame`` to ``final``.

        ``kept[i] = final + round((tokens_per_frame - final) / 2 * (1 + cos(pi * (i + shift) / L)))``.
        ``shift=0`` gives the schedule stated in the paper and design doc (16,16,16,16,15,15,14,… for L=28);
        ``shift=1`` is the published XComp code, which drops one layer earlier (16,16,16,15,15,14,…).
        """
        span = tokens_per_frame - final
        kept = [
            final + round(span * 0.5 * (1 + math.cos(math.pi * (i + shift) / num_layers)))
            for i in range(num_layers)
        ]
        return cls(tuple(kept), tokens_per_frame)

    @classmethod
    def linear(cls, num_layers: int, tokens_per_frame: int = 16, final: int = 1) -> CompressionSchedule:
        """A straight line from ``tokens_per_frame`` at layer 0 to ``final`` at the last layer (rounded)."""
        span = tokens_per_frame - final
        last = max(num_layers - 1, 1)
        return cls(tuple(final + round(span * (1 - i / last)) for i in range(num_layers)), tokens_per_frame)

    @classmethod
    def parametric(
        cls,
        num_layers: int,
        tokens_per_frame: int = 16,
        start: int = 0,
        end: int | None = None,
        final: int = 1,
        shape: str = "cosine",
        exponent: float = 1.0,
    ) -> CompressionSchedule:
        """A schedule family for searches: every token up to and including layer ``start``, ``final`` from layer
        ``end`` on (``None``: no layer, the decay ends past the last), and in between a decay of the given ``shape``.

        With ``t = (i - start) / (end - start)`` in ``[0, 1)``, layer ``i`` keeps ``final + round(span * f(t))``
        tokens, ``f`` = ``(1 + cos(pi t)) / 2`` (cosine), ``1 - t`` (linear) or ``(1 - t) ** exponent`` (power).
        ``start=0, end=num_layers, shape="cosine"`` is the paper's cosine exactly; ``end=num_layers - 1,
        shape="linear"`` is `linear`.
        """
        end = num_layers if end is None else end
        if not 0 <= start < end <= num_layers:
            raise ConfigError(f"parametric schedule needs 0 <= start < end <= {num_layers} layers, got {start}, {end}")
        if not 1 <= final <= tokens_per_frame:
            raise ConfigError(f"parametric schedule's final must lie in [1, {tokens_per_frame}], got {final}")
        decays = {"cosine": lambda t: 0.5 * (1 + math.cos(math.pi * t)), "linear": lambda t: 1 - t}
        if shape == "power":
            if not exponent > 0:
                raise ConfigError(f"a power schedule's exponent must be > 0, got {exponent}")
            decays["power"] = lambda t: (1 - t) ** exponent
        if shape not in decays:
            raise ConfigError(f"parametric schedule's shape must be cosine, linear or power, got {shape!r}")
        span, decay = tokens_per_frame - final, decays[shape]
        kept = [
            tokens_per_frame if i < start else final if i >= end else final + round(span * decay((i - start) / (end - start)))
            for i in range(num_layers)
        ]
        return cls(tuple(kept), tokens_per_frame)

    @classmethod
    def from_list(
        cls, kept: Sequence[int], tokens_per_frame: int = 16, num_layers: int | None = None
    ) -> CompressionSchedule:
        """Any monotone schedule, e.g. a step schedule ``[16]*8 + [4]*8 + [1]*12``; ``num_layers``, when given,
        must equal its length."""
        if num_layers is not None and len(kept) != num_layers:
            raise ConfigError(f"schedule has {len(kept)} entries but the LLM has {num_layers} layers")
        return cls(tuple(kept), tokens_per_frame)

    @property
    def num_layers(self) -> int:
        return len(self.kept)

    @property
    def output_tokens(self) -> int:
        """Tokens per frame leaving the last layer."""
        return self.kept[-1]

    def token_layer_ratio(self) -> float:
        """Visual token-layers kept relative to dense (0.549 for the 28-layer cosine schedule)."""
        return sum(self.kept) / (self.tokens_per_frame * self.num_layers)

    def drop_layers(self) -> list[int]:
        """0-based layers whose input has fewer tokens than the previous layer's (where drops happen)."""
        prev = self.tokens_per_frame
        out = []
        for i, k in enumerate(self.kept):
            if k < prev:
                out.append(i)
            prev = k
        return out
