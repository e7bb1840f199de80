"""`XCompForCausalLM`: UMT video encoder -> ToMe projector -> Qwen2 whose visual tokens the compressor reduces
before and between layers (the decoder loop is `xcomp.model.decoder`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel, Qwen2Model
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast

from xcomp.compression.compressors import TokenCompressor, compressor_for
from xcomp.compression.video_tokens import tower_attention
from xcomp.errors import XCompError
from xcomp.model.cache import XCompCache
from xcomp.model.configuration import XCompConfig
from xcomp.model.decoder import CompressedDecoder
from xcomp.model.tokens import IGNORE_INDEX
from xcomp.model.vocab import CompactVocab
from xcomp.vision.tome import ToMeProjector
from xcomp.vision.umt import FixedPositionEmbedding, UMTVisionTower

__all__ = ["IGNORE_INDEX", "XCompCausalLMOutput", "XCompForCausalLM", "XCompModel", "XCompPreTrainedModel"]


@dataclass
class XCompCausalLMOutput(CausalLMOutputWithPast):
    """`CausalLMOutputWithPast` plus how many tokens each layer saw."""

    tokens_per_layer: torch.Tensor | None = None
    """[num_layers + 1, batch] valid tokens entering each decoder layer (last row: leaving the last layer)."""
    kept_index: torch.Tensor | None = None
    """[batch, S_out] index into the expanded (text + all visual tokens) sequence of each output position."""


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


class XCompModel(XCompPreTrainedModel, CompressedDecoder):
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
        self._compressor: tuple[str, TokenCompressor] | None = None
        self.post_init()

    @property
    def compressor(self) -> TokenCompressor:
        """The config's compressor, built once per compression setting (a benchmark switches the config)."""
        c = self.config
        key = json.dumps([c.compression, c.compression_args, c.schedule, c.pool_tokens_per_frame], sort_keys=True)
        if self._compressor is None or self._compressor[0] != key:
            self._compressor = (key, compressor_for(c))
        return self._compressor[1]

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
        compressor = self.compressor
        T, tower = self.config.tokens_per_frame, self.vision_tower
        return [compressor.before_llm(t, T, f, tower) for t, f in zip(tokens.split(sizes), features.split(sizes))]

    def saliency(self, features: torch.Tensor, num_frames: list[int]) -> list[torch.Tensor] | None:
        """Per video [frames * tokens_per_frame], each token's saliency in the vision tower, for a compressor that
        reads it (`TokenCompressor.needs_saliency`); else None."""
        if not self.compressor.needs_saliency:
            return None
        clip = self.config.local_num_frames * self.config.tokens_per_frame
        scores = tower_attention(self.vision_tower, features, clip)[0]
        return list(scores.split([n * self.config.tokens_per_frame for n in num_frames]))

    def merge_videos(
        self, visual: list[torch.Tensor], saliency: list[torch.Tensor] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """The compressor's `merge_video` of each video given to the LLM: its tokens and their groups."""
        compressor = self.compressor
        T = self.visual_tokens_per_frame
        out = [compressor.merge_video(v, T, saliency[b] if saliency else None, self.config) for b, v in enumerate(visual)]
        return [t for t, _ in out], [g for _, g in out]

    @property
    def visual_tokens_per_frame(self) -> int:
        """Tokens per frame entering the LLM."""
        return self.compressor.llm_tokens_per_frame(self.config.tokens_per_frame)


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
        if self.model.compressor.reads_question:
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
