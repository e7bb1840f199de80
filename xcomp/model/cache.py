"""KV cache whose layers hold different numbers of tokens.

Under LP-Comp, layer i only ever sees the tokens that survived to it, so its cache holds exactly those: the KV
memory shrinks with the schedule. transformers' `DynamicCache` already keeps one growing tensor per layer; this
subclass adds what attention needs to stay correct once layers differ: which cached keys are padding, and the
rotary position that the next token gets (per layer when positions are renumbered after drops).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class XCompCache(DynamicCache):
    """`DynamicCache` plus per-layer key validity and the next token's position."""

    def __init__(self, config=None):
        super().__init__(config=config)
        self.key_valid: list[torch.Tensor | None] = []
        """Per layer, [batch, cached_len] bool: False marks padding keys that must never be attended."""
        self.next_position: torch.Tensor | None = None
        """[batch] rotary position of the next token in the original (uncompressed) numbering."""
        self.consumed = 0
        """Prompt ids the cache holds (a video placeholder counts as one): generation feeds the ids after them."""
        self.visual_per_layer: torch.Tensor | None = None
        """[num_layers, batch] visual tokens that entered each layer in the prefill (what the compressor kept)."""
        self.key_visual: list[torch.Tensor] = []
        """Per layer, [batch, prefill length] bool: which of the prefill's cached keys are visual tokens."""
        self.decode_state: tuple | None = None
        """What a compressor that prunes the cache while decoding keeps between steps (`decode_keep`)."""
        self.prompt_complete = False
        """Whether the whole prompt is in the cache, so that what is fed next is generated (the model's prefill of
        a prompt sets it; a shared prefix and QC-Comp's windows leave it False: their question comes next)."""

    @property
    def is_prefilled(self) -> bool:
        return self.next_position is not None

    def set_key_valid(self, layer_idx: int, valid: torch.Tensor) -> None:
        """Record validity of the keys this layer just appended (prefill) or extend it (decode)."""
        while len(self.key_valid) <= layer_idx:
            self.key_valid.append(None)
        old = self.key_valid[layer_idx]
        self.key_valid[layer_idx] = valid if old is None else torch.cat([old, valid], dim=1)

    def begin_prefill(self, valid: torch.Tensor, prompt_ids: int) -> None:
        """Before a prefill whose embedded sequence has ``valid`` [batch, S] tokens, of ``prompt_ids`` prompt ids:
        where generation goes on (the next position, the ids already fed)."""
        self.next_position = valid.sum(dim=1)
        self.consumed = prompt_ids

    def copy(self) -> XCompCache:
        """An independent copy (a video's shared prefix, continued by one question without altering it)."""
        import copy

        return copy.deepcopy(self)

    def layer_lengths(self) -> list[int]:
        """Cached tokens per layer (including padding slots)."""
        return [layer.get_seq_length() for layer in self.layers]

    def nbytes(self) -> int:
        """Bytes held by keys and values across layers."""
        total = 0
        for layer in self.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                total += layer.keys.numel() * layer.keys.element_size()
                total += layer.values.numel() * layer.values.element_size()
        return total

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self.key_valid = [v.index_select(0, beam_idx) if v is not None else None for v in self.key_valid]
        self.key_visual = [v.index_select(0, beam_idx) for v in self.key_visual]
        self.decode_state = None  # the beams' selections are made again
        if self.next_position is not None:
            self.next_position = self.next_position.index_select(0, beam_idx)
