"""A compact vocabulary: a small model's embedding rows for a subset of the real tokenizer's ids."""

from __future__ import annotations

import torch
from torch import nn


class CompactVocab(nn.Module):
    """Maps tokenizer ids to rows of a small embedding and row logits back to the tokenizer's id space."""

    def __init__(self, subset: list[int], tokenizer_vocab_size: int):
        super().__init__()
        self.subset = list(subset)
        self.tokenizer_vocab_size = tokenizer_vocab_size
        ids, rows = self.tables()
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("rows", rows, persistent=False)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(subset ids, row of every tokenizer id); derived from the config, so never stored in checkpoints."""
        ids = torch.tensor(self.subset, dtype=torch.long)
        rows = torch.zeros(self.tokenizer_vocab_size, dtype=torch.long)
        rows[ids] = torch.arange(1, len(ids) + 1)
        return ids, rows

    def to_rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rows[ids.clamp(0, self.tokenizer_vocab_size - 1)]

    def to_full_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., 1 + len(subset)] -> [..., tokenizer_vocab_size]; ids outside the subset get -inf."""
        full = logits.new_full((*logits.shape[:-1], self.tokenizer_vocab_size), float("-inf"))
        return full.index_copy_(-1, self.ids, logits[..., 1:])
