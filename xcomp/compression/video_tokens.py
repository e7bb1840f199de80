"""Operations on a video's visual tokens that the training-free video compressors share: cosine similarity and
best-match pairing between frames, density-peak clustering (DPC-KNN), merging into cluster centres, and the
saliency of each merged token as the vision tower's last block sees it.

VideoChat-Flash-specific: the ToMe projector merges each 4-frame clip to 16 tokens per frame *across* its frames,
so token i of one frame and token i of the next need not cover the same place. The methods below that compare
"the same token" over time (DyCoke, HoliTom, PruneVid) pair each token with its best match in the other frame
instead (`best_match`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def best_match(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``a`` [n, D], the cosine similarity of its most similar row of ``b`` [m, D] and its index."""
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T
    return sim.max(dim=1)


def dpc_knn(x: torch.Tensor, centres: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Density-peak clustering with k nearest neighbours (Du et al. 2016; as FastVID, HoliTom and PruneVid use it):
    distance ``cdist / sqrt(D)``, density ``exp(-mean squared distance to the k nearest, itself included)``, delta the
    distance to the nearest denser token (the largest distance for the densest), centres the ``centres`` largest
    ``density * delta``. Returns (centre indices [c], nearest centre of every row [n])."""
    n, d = x.shape
    centres = max(1, min(centres, n))
    dist = torch.cdist(x.float(), x.float()) / d**0.5
    knn = dist.topk(min(k, n), dim=1, largest=False).values
    density = (-(knn**2).mean(dim=1)).exp()
    density = density + torch.arange(n, device=x.device) * 1e-6 / n  # a fixed tie-break, not the original's noise
    denser = density[None, :] > density[:, None]
    delta = dist.masked_fill(~denser, float("inf")).min(dim=1).values
    delta = torch.where(torch.isinf(delta), dist.max(), delta)
    chosen = (density * delta).topk(centres).indices
    assign = dist[:, chosen].argmin(dim=1)
    assign[chosen] = torch.arange(len(chosen), device=x.device)
    return chosen, assign


def merge_into(centres: torch.Tensor, members: torch.Tensor, assign: torch.Tensor, beta: float) -> torch.Tensor:
    """Centres [c, D] updated with their assigned ``members`` [m, D] (``assign`` [m] in 0..c-1): ``w * centre +
    (1 - w) * mean(members)`` with ``w = max(1 / (count + 1), beta)`` (FastVID's and HoliTom's update); a centre
    with no member is unchanged."""
    if members.numel() == 0:
        return centres
    sums = torch.zeros_like(centres).index_add_(0, assign, members.to(centres.dtype))
    counts = torch.zeros(len(centres), device=centres.device).index_add_(0, assign, torch.ones_like(assign, dtype=torch.float))
    mean = sums / counts.clamp_min(1)[:, None]
    w = torch.maximum(1 / (counts + 1), torch.tensor(beta, device=centres.device))[:, None].to(centres.dtype)
    return torch.where(counts[:, None] > 0, w * centres + (1 - w) * mean, centres)


def cluster(tokens: torch.Tensor, count: int, knn: int, beta: float) -> torch.Tensor:
    """``tokens`` [n, D] reduced to the ``count`` DPC-KNN centres, every other token merged into its nearest one
    (`merge_into`; with beta 0 each centre becomes its cluster's mean)."""
    centres, assign = dpc_knn(tokens, count, min(knn, len(tokens)))
    members = torch.ones(len(tokens), dtype=torch.bool, device=tokens.device)
    members[centres] = False
    return merge_into(tokens[centres], tokens[members], assign[members], beta)


def tower_attention(tower: torch.nn.Module, features: torch.Tensor, clip_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(saliency [N], keys [N, C]) of merged vision tokens ``features`` [N, C], clip by clip (``clip_tokens`` tokens
    each): the tower's last block's attention among a clip's merged tokens, each token's saliency the attention it
    receives averaged over heads and queries (the rule VisionZip and HoliTom use for an encoder without [CLS]), its
    key the block's key averaged over heads (VisionZip's merge metric). The tower's patch-level attention is not
    kept after ToMe, so it is read again from the merged tokens."""
    block = tower.encoder.blocks[-1]
    attn = block.attn
    clips = features.reshape(-1, clip_tokens, features.shape[-1]).to(attn.qkv.weight.dtype)
    b, n, c = clips.shape
    x = block.norm1(clips)
    bias = torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias))
    q, k, _ = F.linear(x, attn.qkv.weight, bias).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    probs = ((q @ k.transpose(-1, -2)) * attn.scaling).float().softmax(dim=-1)
    saliency = probs.mean(dim=(1, 2)).reshape(-1)
    keys = k.mean(dim=1).reshape(-1, c // attn.num_heads)
    return saliency, keys
