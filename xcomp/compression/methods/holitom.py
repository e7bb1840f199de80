"""HoliTom (Shao et al., "HoliTom: Holistic Token Merging for Fast Video Large Language Models", 2025,
arXiv 2505.21334): global temporal merging before the LLM (tokens that stay the same over a window become one),
spatial merging of what remains, then merging inside the LLM.

Read from cokeshao/HoliTom ``holitom/llava_arch.py`` (``select_static_windows``, ``get_static_dynamic_features``,
``holitom``, ``cluster_dpc_knn``, ``merge_tokens_by_clustering``, @b1d1412d) and ``holitom/modeling_qwen2.py``
(``Qwen2Model_holitom.forward``, @e5f7da28):

- Windows: a token is static over frames s..e when its similarity to itself in the next frame stays above tau;
  a window saves (static tokens) x (frames - 1); dynamic programming over the video picks the windows that save
  the most (window at most 1,024 frames). Defaults tau = 0.8.
- The retention ratio R is spread over what temporal merging leaves: R' = min(R / ((F N - saved) / (F N)), 1).
  Per window, static tokens are averaged over its frames and clustered (DPC-KNN, k = 7) to round(n x R') centres,
  the others merged into their nearest centre (``beta x centre + (1 - beta) x mean``, beta = 0.6), placed at the
  window's first frame; each frame keeps ceil(n_dynamic x R') of its dynamic tokens by salience (the default D = 0:
  the rest are dropped).
- Inside the LLM at layer K (18 of 28 in the authors' scripts), the last prompt token's attention at layer K - 1
  (heads averaged) keeps round(N x (1 - r)) visual tokens, r = 0.5; each dropped token is averaged into its most
  similar kept token, pairwise in order (h = (h + x) / 2), as the original does.

Adapted to VideoChat-Flash: ToMe merges each clip across its frames, so "itself in the next frame" is its best match
there (`best_match`), followed frame to frame; salience is the attention a token receives in the tower's last block
(`video_tokens.tower_attention`, the authors' rule for an encoder without [CLS]). R comes from `budget`: the
token-layers are R x (K / L) + R x (1 - r) x (L - K) / L of dense. Temporal merging runs on the frames given to the
LLM (after QC-Comp's selection). R' is R over the tokens actually left once static tokens are merged (best matches
are not one to one, so a window can leave more than its static count says), and counts are rounded rather than
ceiled: at 16 tokens per frame the ceiling alone would add up to 1/16 of the frames' tokens to the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from xcomp.compression.compressors import BudgetedCompressor
from xcomp.compression.video_tokens import best_match, cluster
from xcomp.errors import ConfigError


def matches(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For [F, T, D] frames: (match [F-1, T], similarity [F-1, T]): each token's best match in the next frame."""
    pairs = [best_match(frames[t], frames[t + 1]) for t in range(len(frames) - 1)]
    return torch.stack([p[1] for p in pairs]), torch.stack([p[0] for p in pairs])


def static_from(match: torch.Tensor, similarity: torch.Tensor, start: int, tau: float, longest: int):
    """Yield (end, alive [T] bool) for end = start + 1, ...: the tokens of frame ``start`` whose chain of best
    matches stays above ``tau`` through frame ``end``."""
    T = similarity.shape[1]
    alive = torch.ones(T, dtype=torch.bool, device=similarity.device)
    index = torch.arange(T, device=similarity.device)
    for t in range(start, min(len(similarity), start + longest - 1)):
        alive = alive & (similarity[t, index] > tau)
        index = match[t, index]
        yield t + 1, alive


def windows(match: torch.Tensor, similarity: torch.Tensor, frames: int, tau: float, longest: int) -> list[tuple[int, int]]:
    """The [start, end] windows (inclusive) that save the most tokens (static tokens x (frames - 1)), by dynamic
    programming over the video."""
    saving = {}
    for s in range(frames - 1):  # one device sync per start frame
        ends, counts = zip(*((e, alive.sum()) for e, alive in static_from(match, similarity, s, tau, longest)))
        for e, count in zip(ends, torch.stack(counts).tolist()):
            saving[s, e] = count * (e - s)
    best, choice = [0] * (frames + 1), [1] * (frames + 1)
    for i in range(1, frames + 1):
        best[i] = best[i - 1]
        for w in range(2, min(i, longest) + 1):
            saved = saving[i - w, i - 1] + best[i - w]
            if saved > best[i]:
                best[i], choice[i] = saved, w
    out, i = [], frames
    while i > 0:
        out.append((i - choice[i], i - 1))
        i -= choice[i]
    return out[::-1]


@dataclass
class HoliTom(BudgetedCompressor):
    """Global temporal windows, static tokens merged over each, then merging inside the LLM."""

    name: ClassVar[str] = "holitom"
    input_dependent: ClassVar[bool] = True
    needs_saliency: ClassVar[bool] = True
    reduces_in_llm: ClassVar[bool] = True
    tau: float = 0.8
    """A token is static while its similarity to its match in the next frame stays above this."""
    beta: float = 0.6
    """Least weight a centre keeps when tokens merge into it."""
    knn: int = 7
    """Neighbours of the density estimate."""
    longest: int = 1024
    """Longest window in frames."""
    layer: int | None = None
    """Layer before which the LLM merges (None: 18/28 of the layers, the authors' scripts)."""
    merge_ratio: float = 0.5
    """Share of the visual tokens merged away there (r)."""

    def merge_layer(self, config) -> int:
        return self.layer if self.layer is not None else self.scaled_layer(18, 28, config)

    def retention(self, config) -> float:
        """R: the share kept before the LLM, so that the token-layers over all layers are the budget."""
        L, K = config.num_layers, self.merge_layer(config)
        return self.budget / (K / L + (1 - self.merge_ratio) * (L - K) / L)

    def validate(self, config):
        super().validate(config)
        if not 1 <= self.merge_layer(config) < config.num_layers:
            raise ConfigError(f"holitom: layer must be in [1, {config.num_layers}) (it reads the layer before)")
        if not 0 < self.merge_ratio < 1:
            raise ConfigError(f"holitom: merge_ratio must be in (0, 1), got {self.merge_ratio}")
        if self.retention(config) > 1:
            raise ConfigError(f"holitom cannot reach budget {self.budget:.3f}: it merges {self.merge_ratio} of the "
                              f"tokens from layer {self.merge_layer(config)} on")  # fmt: skip

    def visual_per_layer(self, config, num_frames):
        n = round(self.retention(config) * num_frames * config.tokens_per_frame)
        K = self.merge_layer(config)
        return [n if i < K else round(n * (1 - self.merge_ratio)) for i in range(config.num_layers)]

    def reduce_layers(self, config):
        return (self.merge_layer(config),)

    def merge_video(self, tokens, tokens_per_frame, saliency, config):
        T = tokens_per_frame
        frames = tokens.view(-1, T, tokens.shape[-1])
        scores = saliency.view(-1, T)
        match, similarity = matches(frames) if len(frames) > 1 else (None, None)
        spans = windows(match, similarity, len(frames), self.tau, self.longest) if len(frames) > 1 else [(0, 0)]
        parts = [self._split(frames, match, similarity, s, e) for s, e in spans]
        left = sum(len(static) + sum(int(d.sum()) for d in dynamic) for static, dynamic in parts)
        share = min(self.retention(config) * frames.shape[0] * T / max(left, 1), 1.0)
        out = []
        for (s, _), (static, dynamic) in zip(spans, parts):
            if len(static):
                out.append(cluster(static, round(len(static) * share), self.knn, self.beta))
            for t, candidates in enumerate(d.nonzero().squeeze(1) for d in dynamic):
                n = min(round(len(candidates) * share), len(candidates))
                out.append(frames[s + t, candidates[scores[s + t, candidates].topk(n).indices.sort().values]])
        return torch.cat(out), None

    def _split(self, frames, match, similarity, s: int, e: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A window's static tokens (each averaged along its chain of matches) and, per frame, which tokens are
        dynamic (in no chain)."""
        T, D = frames.shape[1:]
        dynamic = [torch.ones(T, dtype=torch.bool, device=frames.device) for _ in range(s, e + 1)]
        if e == s:
            return frames.new_zeros(0, D), dynamic
        alive = next(alive for end, alive in static_from(match, similarity, s, self.tau, self.longest) if end == e)
        index, chain = alive.nonzero().squeeze(1), []
        for t in range(s, e + 1):
            chain.append(frames[t, index])
            dynamic[t - s][index] = False
            if t < e:
                index = match[t, index]
        return torch.stack(chain).mean(dim=0), dynamic

    def reduce_in_llm(self, config, hidden, visual, groups, dense, attention, queries):
        keep = torch.zeros_like(visual)
        hidden = hidden.clone()
        score = attention[:, :, -1].mean(dim=1)
        for b in range(len(hidden)):
            index = visual[b].nonzero().squeeze(1)
            n = max(1, round(len(index) * (1 - self.merge_ratio)))
            top = score[b, index].topk(n).indices.sort().values
            kept, dropped = index[top], index[~torch.isin(index, index[top])]
            keep[b, kept] = True
            if len(dropped):
                sim = F.normalize(hidden[b, dropped].float(), dim=-1) @ F.normalize(hidden[b, kept].float(), dim=-1).T
                for token, target in zip(dropped.tolist(), sim.argmax(dim=1).tolist()):
                    hidden[b, kept[target]] = (hidden[b, kept[target]] + hidden[b, token]) / 2
        return keep, hidden
