"""`XCompForCausalLM`: UMT video encoder -> ToMe projector -> Qwen2 with visual tokens dropped between layers.

The LLM is transformers' `Qwen2Model`; we only own the loop over its decoder layers, because LP-Comp changes the
sequence between layers: before layer i every frame keeps ``schedule.kept[i]`` of its visual tokens, text tokens
are never dropped, and kept tokens keep their rotary positions. Each layer writes to the KV cache only the tokens
that reached it, so cached decoding attends to the same keys as a full recomputation.

Sequences are left-padded. Padding is tracked by a per-token ``valid`` mask rather than by position, so a batch
of videos of different lengths (which shrink by different amounts) stays exact; when nothing is padded the mask
is dropped and SDPA runs its causal fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel, Qwen2Model
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast

from xcomp.compression.attention_probe import cached_query_attention, query_attention
from xcomp.compression.compressors import TokenCompressor, compressor_for
from xcomp.compression.video_tokens import tower_attention
from xcomp.errors import XCompError
from xcomp.model.cache import XCompCache
from xcomp.model.configuration import XCompConfig
from xcomp.vision.tome import ToMeProjector
from xcomp.vision.umt import FixedPositionEmbedding, UMTVisionTower

IGNORE_INDEX = -100
LEGACY_IMAGE_TOKEN_INDEX = -200
"""The published LLaVA-style code marks the video with -200 in `input_ids`; we accept it as an alias."""


@dataclass
class XCompCausalLMOutput(CausalLMOutputWithPast):
    """`CausalLMOutputWithPast` plus how many tokens each layer saw."""

    tokens_per_layer: torch.Tensor | None = None
    """[num_layers + 1, batch] valid tokens entering each decoder layer (last row: leaving the last layer)."""
    kept_index: torch.Tensor | None = None
    """[batch, S_out] index into the expanded (text + all visual tokens) sequence of each output position."""


@dataclass
class _Tokens:
    """The sequence as it flows through the decoder layers, with per-token bookkeeping."""

    hidden: torch.Tensor
    """[B, S, D] hidden states."""
    position: torch.Tensor
    """[B, S] rotary position ids."""
    valid: torch.Tensor
    """[B, S] False for padding."""
    slot: torch.Tensor
    """[B, S] index of a visual token inside its frame group; -1 for text and padding."""
    index: torch.Tensor
    """[B, S] column of this token in the expanded input layout (to align labels after drops)."""
    group: torch.Tensor | None = None
    """[B, S] a visual token's `merge_video` group (by default its frame); -1 for text and padding."""
    dense_visual: torch.Tensor | None = None
    """[B] visual tokens each sample's frames had before `merge_video` (what dense would have kept)."""
    answer_tokens: torch.Tensor | None = None
    """[B] labelled tokens after the prompt (training); the last prompt token sits that far before the end."""

    def select(self, keep: torch.Tensor) -> _Tokens:
        """Keep the tokens where ``keep`` is True, right-aligned (left padding), order preserved."""
        keep = keep & self.valid
        width = int(keep.sum(dim=1).max())
        if keep.shape[0] == 1:
            idx = keep[0].nonzero().squeeze(1)[None]
        else:
            idx = keep.to(torch.int8).argsort(dim=1, stable=True)[:, -width:]
        return _Tokens(
            hidden=self.hidden.gather(1, idx[..., None].expand(-1, -1, self.hidden.shape[-1])),
            position=self.position.gather(1, idx),
            valid=keep.gather(1, idx),
            slot=self.slot.gather(1, idx),
            index=self.index.gather(1, idx),
            group=self.group.gather(1, idx) if self.group is not None else None,
            dense_visual=self.dense_visual,
            answer_tokens=self.answer_tokens,
        )


LayerCallback = Callable[[int, nn.Module, _Tokens, tuple[torch.Tensor, torch.Tensor]], None]
"""``(layer index, decoder layer, tokens entering it, rotary (cos, sin))`` — a probe called by `run_prefill`."""
DecodeCallback = Callable[[int, nn.Module, torch.Tensor, tuple[torch.Tensor, torch.Tensor]], None]
"""``(layer index, decoder layer, hidden states [B, Q, D] entering it, rotary (cos, sin))`` — a probe called by
`run_decode` before the layer appends the new tokens' keys to the cache."""


def renumbered_positions(valid: torch.Tensor) -> torch.Tensor:
    """Positions 0..n-1 over the valid tokens (the published code's numbering after a drop)."""
    return (valid.long().cumsum(dim=1) - 1).clamp_min(0)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool [B, Q, K] -> additive float [B, 1, Q, K] usable by both SDPA and eager attention."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def prefill_mask(valid: torch.Tensor, dtype: torch.dtype, implementation: str) -> torch.Tensor | None:
    """Causal mask over a left-padded sequence for attention kernel ``implementation``.

    None (the kernel's own causal path) when nothing is padded, except for eager attention, which applies
    only the mask it is given; flash-attn takes the [B, S] padding mask (it unpads and applies causality)."""
    if implementation != "eager" and bool(valid.all()):
        return None
    if implementation == "flash_attention_2":
        return valid.long()
    S = valid.shape[1]
    causal = torch.ones(S, S, dtype=torch.bool, device=valid.device).tril()
    allowed = causal[None] & valid[:, None, :]
    allowed |= torch.eye(S, dtype=torch.bool, device=valid.device)[None]  # padding rows attend to themselves
    return additive_mask(allowed, dtype)


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


class XCompPreTrainedModel(PreTrainedModel):
    config_class = XCompConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer", "UMTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, FixedPositionEmbedding):
            init.copy_(module.table, module.compute_table())
        if isinstance(module, CompactVocab):
            ids, rows = module.tables()
            init.copy_(module.ids, ids)
            init.copy_(module.rows, rows)
        if isinstance(module, XCompModel) and module.image_newline is not None:
            init.normal_(module.image_newline, std=self.config.text_config.initializer_range)
        for name, param in module.named_parameters(recurse=False):
            if name in ("q_bias", "v_bias"):
                init.zeros_(param)


class XCompModel(XCompPreTrainedModel):
    """Vision tower + projector + Qwen2 decoder (without the LM head)."""

    def __init__(self, config: XCompConfig):
        super().__init__(config)
        self.vision_tower = UMTVisionTower(config.vision_config)
        self.mm_projector = ToMeProjector(
            mm_hidden_size=config.vision_config.hidden_size,
            hidden_size=config.text_config.hidden_size,
            tokens_per_frame=config.tokens_per_frame,
            num_frames=config.local_num_frames,
        )
        self.language_model = Qwen2Model(config.text_config)
        self.image_newline = (
            nn.Parameter(torch.zeros(config.text_config.hidden_size))
            if config.newline_position == "one_token"
            else None
        )
        self.vocab = CompactVocab(config.vocab_subset, config.tokenizer_vocab_size) if config.vocab_subset else None
        self.post_init()

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings of tokenizer ids (through the compact vocabulary when the model has one)."""
        return self.language_model.embed_tokens(self.vocab.to_rows(ids) if self.vocab is not None else ids)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.language_model.embed_tokens = value

    # ------------------------------------------------------------------ vision
    def encode_video(self, pixel_values: torch.Tensor, num_frames: list[int]) -> list[torch.Tensor]:
        """Pixels of all videos, concatenated [N, 3, H, W] -> per video [frames * tokens_per_frame, D].

        Clips of `local_num_frames` frames are encoded and merged independently, so all videos of a batch go
        through the tower together. A pre-LLM compressor (the pooling baseline) is applied here.
        """
        return self.project(self.vision_features(self.check_frames(pixel_values, num_frames)), num_frames)

    def check_frames(self, pixel_values: torch.Tensor, num_frames: list[int]) -> torch.Tensor:
        """``pixel_values``, once their count is checked against ``num_frames`` and the clip length."""
        clip = self.config.local_num_frames
        if sum(num_frames) != pixel_values.shape[0]:
            raise XCompError(f"num_frames sums to {sum(num_frames)} but {pixel_values.shape[0]} frames were given")
        if any(n % clip for n in num_frames):
            raise XCompError(f"frames per video must be a multiple of local_num_frames={clip}, got {num_frames}")
        return pixel_values

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The part SCT does not train: [N, 3, H, W] whole clips -> [N * tokens_per_frame, mm_hidden] tokens of the
        vision tower after ToMe merging (what the evaluation's feature cache stores)."""
        return self.mm_projector.merge(self.vision_tower(pixel_values)).flatten(0, 1)

    def project(self, features: torch.Tensor, num_frames: list[int]) -> list[torch.Tensor]:
        """`vision_features` of several videos -> per video [frames * visual_tokens_per_frame, D] LLM tokens: the
        projector's MLP, then a pre-LLM compressor (the pooling baseline)."""
        tokens = self.mm_projector.mlp(features)
        sizes = [n * self.config.tokens_per_frame for n in num_frames]
        compressor = compressor_for(self.config)
        T, tower = self.config.tokens_per_frame, self.vision_tower
        return [compressor.before_llm(t, T, f, tower) for t, f in zip(tokens.split(sizes), features.split(sizes))]

    def saliency(self, features: torch.Tensor, num_frames: list[int]) -> list[torch.Tensor] | None:
        """Per video [frames * tokens_per_frame], each token's saliency in the vision tower, for a compressor that
        reads it (`TokenCompressor.needs_saliency`); else None."""
        if not compressor_for(self.config).needs_saliency:
            return None
        clip = self.config.local_num_frames * self.config.tokens_per_frame
        scores = tower_attention(self.vision_tower, features, clip)[0]
        return list(scores.split([n * self.config.tokens_per_frame for n in num_frames]))

    def merge_videos(
        self, visual: list[torch.Tensor], saliency: list[torch.Tensor] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """The compressor's `merge_video` of each video given to the LLM: its tokens and their groups."""
        compressor = compressor_for(self.config)
        T = self.visual_tokens_per_frame
        out = [compressor.merge_video(v, T, saliency[b] if saliency else None, self.config) for b, v in enumerate(visual)]
        return [t for t, _ in out], [g for _, g in out]

    @property
    def visual_tokens_per_frame(self) -> int:
        """Tokens per frame entering the LLM."""
        return compressor_for(self.config).llm_tokens_per_frame(self.config.tokens_per_frame)

    # ------------------------------------------------------------------ inputs
    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        visual: list[torch.Tensor] | None,
        labels: torch.Tensor | None = None,
        groups: list[torch.Tensor | None] | None = None,
    ) -> tuple[_Tokens, torch.Tensor | None]:
        """Splice each video's visual tokens into its prompt at the video placeholder; left-pad the batch. A video
        whose ``groups`` are given (`merge_videos`) has any number of tokens per frame: its slots count its tokens,
        its groups are those; otherwise every `visual_tokens_per_frame` tokens are a frame (slot and group)."""
        video_id = self.config.video_token_id
        ids = torch.where(input_ids == LEGACY_IMAGE_TOKEN_INDEX, video_id, input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(ids)
        T = self.visual_tokens_per_frame
        rows, slots, group_rows, label_rows = [], [], [], []
        for b in range(ids.shape[0]):
            keep = attention_mask[b].bool()
            row_ids = ids[b][keep]
            where = (row_ids == video_id).nonzero().squeeze(1)
            vis = visual[b] if visual is not None else None
            n_vis = 0 if vis is None else vis.shape[0]
            if len(where) > 1:
                raise XCompError(f"sample {b} has {len(where)} video placeholders; expected at most one")
            if n_vis and len(where) == 0:
                raise XCompError(f"sample {b} has a video but no video placeholder token in its prompt")
            text = self.embed_text(row_ids.masked_fill(row_ids == video_id, 0))
            row_labels = labels[b][keep] if labels is not None else None
            if len(where) == 0:
                rows.append(text)
                slots.append(torch.full((len(row_ids),), -1, dtype=torch.long, device=ids.device))
                group_rows.append(slots[-1])
                label_rows.append(row_labels)
                continue
            p = int(where[0])
            parts = [text[:p]]
            slot_parts = [torch.full((p,), -1, dtype=torch.long, device=ids.device)]
            group = groups[b] if groups is not None else None
            if n_vis:
                parts.append(vis.to(text.dtype))
                slot_parts.append(torch.arange(n_vis, device=ids.device) % (n_vis if group is not None else T))
            if self.image_newline is not None:
                parts.append(self.image_newline[None].to(text.dtype))
                slot_parts.append(torch.full((1,), -1, dtype=torch.long, device=ids.device))
            parts.append(text[p + 1 :])
            slot_parts.append(torch.full((len(row_ids) - p - 1,), -1, dtype=torch.long, device=ids.device))
            rows.append(torch.cat(parts))
            slots.append(torch.cat(slot_parts))
            video_group = group.to(ids.device) if group is not None else torch.arange(n_vis, device=ids.device) // T
            group_rows.append(torch.full_like(slots[-1], -1))
            group_rows[-1][p : p + n_vis] = video_group
            if row_labels is not None:
                n_new = rows[-1].shape[0] - len(row_ids)
                fill = torch.full((n_new + 1,), IGNORE_INDEX, dtype=row_labels.dtype, device=ids.device)
                label_rows.append(torch.cat([row_labels[:p], fill, row_labels[p + 1 :]]))
        return self._left_pad(rows, slots, group_rows, label_rows if labels is not None else None)

    @staticmethod
    def _left_pad(
        rows: list[torch.Tensor], slots: list[torch.Tensor], groups: list[torch.Tensor],
        labels: list[torch.Tensor] | None,
    ) -> tuple[_Tokens, torch.Tensor | None]:
        B, S, D = len(rows), max(r.shape[0] for r in rows), rows[0].shape[-1]
        ref = rows[0]
        hidden = ref.new_zeros(B, S, D)
        valid = torch.zeros(B, S, dtype=torch.bool, device=ref.device)
        slot = torch.full((B, S), -1, dtype=torch.long, device=ref.device)
        group = torch.full((B, S), -1, dtype=torch.long, device=ref.device)
        out_labels = torch.full((B, S), IGNORE_INDEX, dtype=torch.long, device=ref.device) if labels else None
        for b, (r, s) in enumerate(zip(rows, slots)):
            n = r.shape[0]
            hidden[b, S - n :] = r
            valid[b, S - n :] = True
            slot[b, S - n :] = s
            group[b, S - n :] = groups[b]
            if out_labels is not None:
                out_labels[b, S - n :] = labels[b]
        index = torch.arange(S, device=ref.device).expand(B, S)
        answer_tokens = None
        if out_labels is not None:
            labelled = out_labels != IGNORE_INDEX
            first = labelled.int().argmax(dim=1).masked_fill(~labelled.any(dim=1), S)
            answer_tokens = S - first
        dense = ((slot >= 0) & valid).sum(dim=1)  # the forward replaces it with the count before `merge_video`
        tokens = _Tokens(hidden, renumbered_positions(valid), valid, slot, index, group, dense, answer_tokens)
        return tokens, out_labels

    # ------------------------------------------------------------------ decoder
    def run_prefill(
        self,
        tokens: _Tokens,
        cache: XCompCache | None,
        output_hidden_states: bool = False,
        layer_callback: LayerCallback | None = None,
        stop_at_layer: int | None = None,
    ) -> tuple[_Tokens, torch.Tensor, list[torch.Tensor] | None]:
        """Run all decoder layers over the full prompt, dropping visual tokens per the schedule.

        Probes (QC-Comp frame scoring) pass ``layer_callback(i, layer, tokens, position_embeddings)``, called
        with each layer's input after that layer's drops, and ``stop_at_layer`` to return right after the
        callback of that layer, without running it or the layers above (the final norm is then not applied).
        """
        cfg = self.config
        lm = self.language_model
        compressor = compressor_for(cfg)
        schedule = compressor.schedule(cfg)
        slot_masks = compressor.slot_masks(schedule)
        if slot_masks is not None:
            slot_masks = [m.to(tokens.slot.device) for m in slot_masks]
        renumber = cfg.position_ids_after_drop == "renumbered"
        drop_after = set(i - 1 for i in schedule.drop_layers())
        reduce_at = set(compressor.reduce_layers(cfg))
        question = None
        per_frame = schedule.tokens_per_frame
        counts, visual_counts = [], []
        hidden_states = [] if output_hidden_states else None
        scores = None
        pos_emb = lm.rotary_emb(tokens.hidden, tokens.position)
        attention = cfg._attn_implementation
        mask = prefill_mask(tokens.valid, tokens.hidden.dtype, attention)  # rebuilt only when a drop changes the tokens
        for i, layer in enumerate(lm.layers):
            k = schedule.kept[i]
            if k < per_frame:
                keep = self._keep_mask(compressor, tokens, i, k, per_frame, slot_masks, scores)
                tokens = tokens.select(keep)
                if renumber:
                    tokens = replace(tokens, position=renumbered_positions(tokens.valid))
                pos_emb = lm.rotary_emb(tokens.hidden, tokens.position)
                mask = prefill_mask(tokens.valid, tokens.hidden.dtype, attention)
                per_frame = k
            if i in reduce_at:
                visual = (tokens.slot >= 0) & tokens.valid
                keep, hidden = compressor.reduce_in_llm(cfg, tokens.hidden, visual, tokens.group, tokens.dense_visual, *question)
                tokens = replace(tokens, hidden=hidden).select(tokens.valid & (~visual | keep))
                if renumber:
                    tokens = replace(tokens, position=renumbered_positions(tokens.valid))
                pos_emb = lm.rotary_emb(tokens.hidden, tokens.position)
                mask = prefill_mask(tokens.valid, tokens.hidden.dtype, attention)
            counts.append(tokens.valid.sum(dim=1))
            visual_counts.append(((tokens.slot >= 0) & tokens.valid).sum(dim=1))
            if hidden_states is not None:
                hidden_states.append(tokens.hidden)
            if layer_callback is not None:
                layer_callback(i, layer, tokens, pos_emb)
            if i == stop_at_layer:
                return tokens, torch.stack(counts), hidden_states
            layer_input = tokens.hidden
            out = layer(
                layer_input,
                attention_mask=mask,
                position_embeddings=pos_emb,
                cache=cache,
                use_cache=cache is not None,
            )
            if cache is not None:
                cache.set_key_valid(i, tokens.valid)
                cache.key_visual.append((tokens.slot >= 0) & tokens.valid)
            if compressor.needs_attention and i in drop_after:
                scores = self._last_token_attention(layer, layer_input, pos_emb, tokens.valid, tokens.answer_tokens)
            if i + 1 in reduce_at:
                question = self._question_attention(layer, layer_input, pos_emb, tokens)
            tokens = replace(tokens, hidden=out)
        counts.append(counts[-1])
        if cache is not None:
            cache.visual_per_layer = torch.stack(visual_counts)
        tokens = replace(tokens, hidden=lm.norm(tokens.hidden))
        if hidden_states is not None:
            hidden_states.append(tokens.hidden)
        return tokens, torch.stack(counts), hidden_states

    @staticmethod
    def _keep_mask(
        compressor: TokenCompressor,
        tokens: _Tokens,
        layer_idx: int,
        k: int,
        per_frame: int,
        slot_masks: list[torch.Tensor] | None,
        scores: torch.Tensor | None,
    ) -> torch.Tensor:
        visual = tokens.slot >= 0
        if slot_masks is not None:
            keep_visual = slot_masks[layer_idx][tokens.slot.clamp_min(0)]
        else:
            keep_visual = compressor.keep_visual(tokens.slot, visual & tokens.valid, tokens.index, per_frame, k, scores)
        return tokens.valid & (~visual | keep_visual)

    @staticmethod
    def _last_token_attention(layer, hidden, pos_emb, valid, answer_tokens=None) -> torch.Tensor:
        """Head-averaged attention of the last prompt token to every token ([B, S]).

        Left padding puts it last at inference; in training the answer follows it, and scoring from a token
        that has read the answer would leak it into the selection.
        """
        last = torch.full((hidden.shape[0], 1), hidden.shape[1] - 1, dtype=torch.long, device=hidden.device)
        if answer_tokens is not None:
            last = last - answer_tokens[:, None].to(hidden.device)
        causal = torch.arange(hidden.shape[1], device=hidden.device)[None, None, :] <= last[:, :, None]
        probs = query_attention(layer, hidden, pos_emb, last, key_mask=valid[:, None, :] & causal)
        return probs.mean(dim=1)[:, 0]

    @staticmethod
    def _question_attention(layer, hidden, pos_emb, tokens: _Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention [B, H, Q, S] of the question's tokens (the text after the video up to the last prompt token;
        in training the answer is excluded) and [B, Q] which rows are real (rows are padded with the last one)."""
        B, S = tokens.valid.shape
        column = torch.arange(S, device=hidden.device).expand(B, S)
        visual = (tokens.slot >= 0) & tokens.valid
        after_video = column > torch.where(visual, column, -1).max(dim=1, keepdim=True).values
        last = S - 1 - (tokens.answer_tokens if tokens.answer_tokens is not None else torch.zeros(B, dtype=torch.long))
        rows = after_video & tokens.valid & (column <= last.to(hidden.device)[:, None])
        Q = max(int(rows.sum(dim=1).max()), 1)
        index = torch.where(rows, column, S).sort(dim=1).values[:, :Q]
        queries = index < S
        index = torch.where(queries, index, last.to(hidden.device)[:, None])
        causal = column[:, None, :] <= index[:, :, None]
        probs = query_attention(layer, hidden, pos_emb, index, key_mask=tokens.valid[:, None, :] & causal)
        return probs, queries

    def run_decode(
        self,
        input_ids: torch.Tensor,
        cache: XCompCache,
        layer_callback: DecodeCallback | None = None,
        stop_at_layer: int | None = None,
    ) -> torch.Tensor | None:
        """Run new text tokens [B, Q] against a filled cache; each layer attends to its own surviving keys.

        Probes (QC-Comp scoring from a shared window prefix) pass ``layer_callback(i, layer, hidden,
        position_embeddings)``, called with each layer's input before the layer adds its keys to the cache, and
        ``stop_at_layer`` to return None right after that layer's callback (the cache is then partly extended).
        """
        lm = self.language_model
        hidden = self.embed_text(input_ids)
        B, Q = input_ids.shape
        step = torch.arange(Q, device=hidden.device)
        renumber = self.config.position_ids_after_drop == "renumbered"
        new_valid = torch.ones(B, Q, dtype=torch.bool, device=hidden.device)
        causal = torch.ones(Q, Q, dtype=torch.bool, device=hidden.device).tril()
        pos_emb = None
        flash = self.config._attn_implementation == "flash_attention_2"
        if not renumber:
            pos_emb = lm.rotary_emb(hidden, cache.next_position[:, None] + step)
        compressor = compressor_for(self.config)
        prune_at = compressor.decode_prune_layer(self.config) if cache.key_visual and cache.prompt_complete else None
        keep = None
        for i, layer in enumerate(lm.layers):
            key_valid = cache.key_valid[i]
            if renumber:
                pos_emb = lm.rotary_emb(hidden, key_valid.sum(dim=1, keepdim=True) + step)
            if prune_at is not None and i == prune_at - 1:
                probs = cached_query_attention(layer, hidden, pos_emb, cache.layers[i].keys, key_valid)
                visual = cache.key_visual[i]
                keep, cache.decode_state = compressor.decode_keep(
                    probs[:, :, -1, : visual.shape[1]].mean(dim=1), visual, cache.decode_state
                )
            if keep is not None and i >= prune_at:
                dropped = cache.key_visual[i] & ~keep
                key_valid = key_valid & ~F.pad(dropped, (0, key_valid.shape[1] - dropped.shape[1]))
            mask = None
            if flash and not bool(key_valid.all()):  # new tokens last: flash-attn's causal alignment
                mask = torch.cat([key_valid, new_valid], dim=1).long()
            elif not flash and (Q > 1 or not bool(key_valid.all())):
                allowed = torch.cat([key_valid[:, None, :].expand(B, Q, -1), causal[None].expand(B, Q, Q)], dim=2)
                mask = additive_mask(allowed, hidden.dtype)
            if layer_callback is not None:
                layer_callback(i, layer, hidden, pos_emb)
            if i == stop_at_layer:
                return None
            hidden = layer(hidden, attention_mask=mask, position_embeddings=pos_emb, cache=cache, use_cache=True)
            cache.set_key_valid(i, new_valid)
        cache.next_position = cache.next_position + Q
        cache.prompt_complete = True
        return lm.norm(hidden)


class XCompForCausalLM(XCompPreTrainedModel, GenerationMixin):
    """The video-LLM with an LM head; `generate` works with a per-layer compressed KV cache."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: XCompConfig):
        super().__init__(config)
        self.model = XCompModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the tokenizer's ids (expanded from the compact vocabulary when there is one)."""
        logits = self.lm_head(hidden)
        return self.model.vocab.to_full_logits(logits) if self.model.vocab is not None else logits

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        num_frames: list[int] | torch.Tensor | None = None,
        visual_embeds: list[torch.Tensor] | None = None,
        labels: torch.LongTensor | None = None,
        cache: XCompCache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
        visual_saliency: list[torch.Tensor] | None = None,
        **kwargs,
    ) -> XCompCausalLMOutput:
        """Prefill (prompt with video) or decode (new text tokens against a filled cache).

        Args:
            input_ids: [B, S] prompt ids, each with one `video_token_id` placeholder where its video goes.
            attention_mask: [B, S] 1 for real tokens, 0 for padding.
            pixel_values: [N, 3, H, W] frames of all videos, concatenated; with `num_frames` (per video).
            visual_embeds: alternatively, per video [frames * tokens_per_frame, D] projector outputs (skips the
                vision tower; used by QC-Comp to answer from a subset of already-encoded frames).
            labels: [B, S] target ids aligned with `input_ids` (-100 = no loss); visual tokens get no loss. With
                labels, `logits` holds only the [n_supervised, vocab] rows that predict labelled tokens (over
                the model's own, possibly compact, vocabulary).
            cache: an `XCompCache`; empty (or any empty cache) for prefill, filled for decoding.
            visual_saliency: with `visual_embeds`, per video [frames * tokens_per_frame] tower saliency of its
                tokens (`XCompModel.saliency`), for a compressor whose `merge_video` reads it.
            logits_to_keep: if > 0, only compute logits for the last that many positions.
        """
        use_cache = bool(use_cache) or (cache is not None)
        if isinstance(cache, XCompCache) and cache.is_prefilled:
            hidden = self.model.run_decode(input_ids, cache)
            cache.consumed += input_ids.shape[1]
            logits = self.token_logits(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
            return XCompCausalLMOutput(logits=logits, cache=cache)
        if cache is not None and not isinstance(cache, XCompCache) and cache.get_seq_length() > 0:
            raise XCompError("XComp needs an XCompCache; got a filled cache of another type")
        if use_cache and not isinstance(cache, XCompCache):  # an empty XCompCache given is filled in place
            cache = XCompCache(config=self.config.text_config)
        if visual_embeds is None and pixel_values is not None:
            if num_frames is None:
                num_frames = [pixel_values.shape[0]]
            num_frames = [int(n) for n in num_frames]
            features = self.model.vision_features(self.model.check_frames(pixel_values, num_frames))
            visual_embeds = self.model.project(features, num_frames)
            visual_saliency = self.model.saliency(features, num_frames)
        groups = None
        if visual_embeds is not None:
            dense = torch.tensor([v.shape[0] for v in visual_embeds], device=input_ids.device)
            visual_embeds, groups = self.model.merge_videos(visual_embeds, visual_saliency)
        tokens, labels_expanded = self.model.embed_inputs(input_ids, attention_mask, visual_embeds, labels, groups)
        if visual_embeds is not None:
            tokens = replace(tokens, dense_visual=dense)
        if cache is not None:
            cache.begin_prefill(tokens.valid, input_ids.shape[1])
            cache.prompt_complete = True
        tokens, counts, hidden_states = self.model.run_prefill(tokens, cache, output_hidden_states)
        loss = None
        if labels is not None:
            # Only positions that predict a labelled token need logits: [S, vocab] for thousands of visual
            # tokens would dwarf the model. `logits` then holds just those rows, in sequence order.
            target = labels_expanded.gather(1, tokens.index).masked_fill(~tokens.valid, IGNORE_INDEX)[:, 1:]
            supervised = target != IGNORE_INDEX
            logits = self.lm_head(tokens.hidden[:, :-1][supervised])
            target = target[supervised]
            if self.model.vocab is not None:
                target = self.model.vocab.to_rows(target)
            loss = F.cross_entropy(logits.float(), target)
        else:
            hidden = tokens.hidden[:, -logits_to_keep:] if logits_to_keep else tokens.hidden
            logits = self.token_logits(hidden)
        return XCompCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=cache,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            tokens_per_layer=counts,
            kept_index=tokens.index,
        )

    @torch.no_grad()
    def prefill_prefix(
        self, prefix_ids: torch.Tensor, visual: torch.Tensor, saliency: torch.Tensor | None = None
    ) -> XCompCache:
        """The K/V of a prompt's part before the question: ``prefix_ids`` [P] (the ids before the video placeholder)
        and the video's ``visual`` tokens, with the compressor's per-layer drops. Under causal attention it does
        not depend on what follows, so `generate` continues it (a `XCompCache.copy` per question) from the full
        prompt's ids. Only for compressors that do not read the question (`TokenCompressor.reads_question`)."""
        if compressor_for(self.config).reads_question:
            raise XCompError(f"{self.config.compression} keeps tokens by the question: its prefix cannot be shared")
        video = torch.tensor([self.config.video_token_id], device=prefix_ids.device)
        ids = torch.cat([prefix_ids.reshape(-1), video])[None]
        saliency = [saliency] if saliency is not None else None
        cache = self(input_ids=ids, visual_embeds=[visual], visual_saliency=saliency, use_cache=True, logits_to_keep=1).cache
        cache.prompt_complete = False
        return cache

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: XCompCache | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        num_frames: list[int] | None = None,
        visual_embeds: list[torch.Tensor] | None = None,
        use_cache: bool | None = True,
        logits_to_keep: int | None = None,
        visual_saliency: list[torch.Tensor] | None = None,
        **kwargs,
    ) -> dict:
        """The video goes in once (prefill); afterwards only the ids the cache has not seen are fed against it:
        the newest token, or the question after a shared prefix (`prefill_prefix`)."""
        if isinstance(cache, XCompCache) and cache.is_prefilled:
            return {"input_ids": input_ids[:, cache.consumed :], "cache": cache, "use_cache": True, "logits_to_keep": 1}
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values,
            "num_frames": num_frames,
            "visual_embeds": visual_embeds,
            "visual_saliency": visual_saliency,
            "cache": cache if use_cache else None,
            "use_cache": use_cache,
            "logits_to_keep": 1,
        }
