"""VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models", CVPR 2025,
arXiv 2412.04467): before the LLM, each frame keeps its *dominant* tokens — those the vision encoder attends to
most — and merges the rest into a few *contextual* tokens.

Read from dvlab-research/VisionZip ``llava/model/multimodal_encoder/clip_encoder.py`` (``forward_select``,
@ccb20fe1) and ModelTC/llmc ``llmc/compression/token_reduction/visionzip.py`` (@14ae8413): dominant = top-k of the
[CLS] attention of the encoder's second-to-last layer; contextual = ``contextual`` targets evenly spaced among the
other tokens, every other token assigned to its most similar target by the same layer's keys (heads averaged,
cosine), each contextual token the target plus the mean of its assigned tokens (the authors' sum, kept here);
output dominant tokens, then contextual ones. Defaults 191 dominant + 30 contextual of 576.

Adapted to VideoChat-Flash: UMT-L has no [CLS] token, so a token's score is the attention it receives, averaged
over heads and queries (VisionZip's rule for SigLIP); and the ToMe projector has already merged each clip to 16
tokens per frame, whose patch-level attention is not kept, so the scores and keys are those of the tower's last
block over the clip's merged tokens (`video_tokens.tower_attention`). The count per frame comes from `budget`
(kept = round(budget x 16), 30/221 of them contextual, at least one dominant); being per frame, it runs before
frames are selected, like pooling, and QC-Comp selects among the zipped frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from xcomp.compression.compressors import BudgetedCompressor
from xcomp.compression.video_tokens import tower_attention
from xcomp.errors import ConfigError


def zip_frame(tokens: torch.Tensor, saliency: torch.Tensor, keys: torch.Tensor, dominant: int, contextual: int) -> torch.Tensor:
    """One frame's [T, D] tokens -> [dominant + contextual, D]: the ``dominant`` most salient (in their order), then
    ``contextual`` targets evenly spaced among the rest, each plus the mean of the rest assigned to it by key
    cosine similarity."""
    top = saliency.topk(dominant).indices.sort().values
    rest = torch.ones(len(tokens), dtype=torch.bool, device=tokens.device)
    rest[top] = False
    rest = rest.nonzero().squeeze(1)
    if contextual == 0 or len(rest) == 0:
        return tokens[top]
    step = max(len(rest) // contextual, 1)
    is_target = torch.zeros(len(rest), dtype=torch.bool, device=tokens.device)
    is_target[torch.arange(0, len(rest), step, device=tokens.device)[:contextual]] = True
    targets, others = rest[is_target], rest[~is_target]
    merged = tokens[targets].clone()
    if len(others):
        sim = F.normalize(keys[others].float(), dim=-1) @ F.normalize(keys[targets].float(), dim=-1).T
        assign = sim.argmax(dim=1)
        sums = torch.zeros_like(merged).index_add_(0, assign, tokens[others])
        counts = torch.zeros(len(targets), device=tokens.device).index_add_(0, assign, torch.ones(len(others), device=tokens.device))
        merged = merged + sums / counts.clamp_min(1)[:, None].to(merged.dtype)
    return torch.cat([tokens[top], merged])


@dataclass
class VisionZip(BudgetedCompressor):
    """Dominant tokens by the tower's attention plus merged contextual tokens, per frame, before the LLM."""

    name: ClassVar[str] = "visionzip"
    contextual_share: float = 30 / 221
    """Share of a frame's kept tokens that are contextual (the authors' 30 of 191 + 30)."""

    def kept(self, tokens_per_frame: int) -> tuple[int, int]:
        """(dominant, contextual) tokens per frame at the budget."""
        n = min(max(1, round(self.budget * tokens_per_frame)), tokens_per_frame)
        contextual = min(round(n * self.contextual_share), n - 1)
        return n - contextual, contextual

    def llm_tokens_per_frame(self, tokens_per_frame: int) -> int:
        return sum(self.kept(tokens_per_frame))

    def validate(self, config):
        super().validate(config)
        if not 0 <= self.contextual_share < 1:
            raise ConfigError(f"visionzip: contextual_share must be in [0, 1), got {self.contextual_share}")

    def before_llm(self, tokens, tokens_per_frame, features=None, tower=None):
        if features is None or tower is None:
            raise ConfigError("visionzip reads the vision tower's attention: it needs the tower's features")
        dominant, contextual = self.kept(tokens_per_frame)
        saliency, keys = tower_attention(tower, features, tower.config.num_frames * tokens_per_frame)
        T = tokens_per_frame
        frames = [
            zip_frame(tokens[f : f + T], saliency[f : f + T], keys[f : f + T], dominant, contextual)
            for f in range(0, len(tokens), T)
        ]
        return torch.cat(frames)
