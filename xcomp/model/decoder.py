"""The LLM's decoder loop with visual tokens dropped between layers (a mixin of `XCompModel`).

The LLM is transformers' `Qwen2Model`; we only own the loop over its decoder layers, because LP-Comp changes the
sequence between layers: before layer i every frame keeps ``schedule.kept[i]`` of its visual tokens, text tokens
are never dropped, and kept tokens keep their rotary positions. Each layer writes to the KV cache only the tokens
that reached it, so cached decoding attends to the same keys as a full recomputation. The model's compressor
decides what is dropped (`xcomp.compression.compressors.TokenCompressor`); this module names no method.

Sequences are left-padded. Padding is tracked by a per-token ``valid`` mask rather than by position, so a batch
of videos of different lengths (which shrink by different amounts) stays exact; when nothing is padded the mask
is dropped and SDPA runs its causal fast path.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from xcomp.compression.attention_probe import cached_query_attention, query_attention
from xcomp.compression.compressors import TokenCompressor
from xcomp.errors import XCompError
from xcomp.model.cache import XCompCache
from xcomp.model.tokens import (
    IGNORE_INDEX,
    DecodeCallback,
    LayerCallback,
    Tokens,
    additive_mask,
    prefill_mask,
    renumbered_positions,
)

LEGACY_IMAGE_TOKEN_INDEX = -200
"""The published LLaVA-style code marks the video with -200 in `input_ids`; we accept it as an alias."""


class CompressedDecoder:
    """Embedding a prompt with its videos and running the decoder layers over it (prefill) or new tokens against a
    filled cache (decode), with the compressor's drops. Needs ``config``, ``language_model``, ``image_newline``,
    ``embed_text``, ``visual_tokens_per_frame`` and ``compressor`` from the model it is mixed into."""

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        visual: list[torch.Tensor] | None,
        labels: torch.Tensor | None = None,
        groups: list[torch.Tensor | None] | None = None,
    ) -> tuple[Tokens, torch.Tensor | None]:
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
    ) -> tuple[Tokens, torch.Tensor | None]:
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
        tokens = Tokens(hidden, renumbered_positions(valid), valid, slot, index, group, dense, answer_tokens)
        return tokens, out_labels

    # ------------------------------------------------------------------ probes
    def probe_prefill(
        self,
        input_ids: torch.Tensor,
        visual: list[torch.Tensor],
        probe: LayerCallback,
        stop_at_layer: int | None,
        cache: XCompCache | None = None,
    ) -> torch.Tensor:
        """The prefill of ``input_ids`` [B, S] (one video placeholder per row) with the videos ``visual`` (B tensors
        of `visual_tokens_per_frame` tokens per frame), as far as QC-Comp's frame scoring needs it: ``probe(i,
        layer, tokens, position_embeddings)`` sees each layer's input after its drops, and the call returns right
        after the probe of layer ``stop_at_layer`` without running it (None: every layer runs). The layers that run
        fill ``cache`` when one is given. Returns the tokens entering each layer reached, [layers, B]."""
        tokens, _ = self.embed_inputs(input_ids, None, visual)
        if cache is not None:
            cache.begin_prefill(tokens.valid, input_ids.shape[1])
        return self.run_prefill(tokens, cache, layer_callback=probe, stop_at_layer=stop_at_layer)[1]

    def probe_decode(
        self, input_ids: torch.Tensor, cache: XCompCache, probe: DecodeCallback, stop_at_layer: int
    ) -> None:
        """New text tokens ``input_ids`` [B, Q] against a prefilled ``cache`` (a copy: it is extended), as far as
        frame scoring needs them: ``probe(i, layer, hidden, position_embeddings)`` sees each layer's input, and the
        call returns right after the probe of layer ``stop_at_layer``."""
        self.run_decode(input_ids, cache, layer_callback=probe, stop_at_layer=stop_at_layer)

    # ------------------------------------------------------------------ decoder
    def run_prefill(
        self,
        tokens: Tokens,
        cache: XCompCache | None,
        output_hidden_states: bool = False,
        layer_callback: LayerCallback | None = None,
        stop_at_layer: int | None = None,
    ) -> tuple[Tokens, torch.Tensor, list[torch.Tensor] | None]:
        """Run all decoder layers over the full prompt, dropping visual tokens per the schedule.

        Probes (QC-Comp frame scoring) pass ``layer_callback(i, layer, tokens, position_embeddings)``, called
        with each layer's input after that layer's drops, and ``stop_at_layer`` to return right after the
        callback of that layer, without running it or the layers above (the final norm is then not applied).
        """
        cfg = self.config
        lm = self.language_model
        compressor = self.compressor
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
        tokens: Tokens,
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
    def _question_attention(layer, hidden, pos_emb, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
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
        compressor = self.compressor
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
