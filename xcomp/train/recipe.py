"""A training stage of a run.py job: build model, processor and data from a `TrainConfig`, then `fit` them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from xcomp.errors import ConfigError
from xcomp.evaluation.features import FeatureCache
from xcomp.evaluation.lightning import SuiteEvaluation
from xcomp.model.configuration import XCompConfig
from xcomp.model.convert import load_model
from xcomp.model.modeling import XCompForCausalLM
from xcomp.model.processing import XCompProcessor, build_prompt
from xcomp.train.config import TrainConfig, TrainerConfig
from xcomp.train.fit import fit


def vocab_for(processor: XCompProcessor, texts: Iterable[tuple[str, Sequence[str] | None, str]]) -> list[int]:
    """Token ids a compact-vocabulary model needs for these (question, options, answer) triples.

    Covers every prompt and answer, the chat/time-message template, all digits (durations and frame counts
    vary) and the special tokens.
    """
    tok = processor.tokenizer
    ids: set[int] = set()
    for question, options, answer in texts:
        ids.update(tok(build_prompt(question, options, 12.5, 64), add_special_tokens=False)["input_ids"])
        ids.update(tok(answer, add_special_tokens=False)["input_ids"])
    for text in ["0123456789", " 0 1 2 3 4 5 6 7 8 9 .", "<|im_end|>", "<|endoftext|>"]:
        ids.update(tok(text, add_special_tokens=False)["input_ids"])
    return sorted(ids)


def build_processor(config: TrainConfig) -> XCompProcessor:
    if config.init != "tiny" and not Path(config.init).is_dir():  # checked first: it is also the tokenizer
        raise ConfigError(f"init model folder not found: {config.init}")
    path = config.tokenizer or (config.init if config.init != "tiny" else None)
    if path is None:
        raise ConfigError("init = 'tiny' needs `tokenizer` (a folder with the Qwen2.5 tokenizer files)")
    return XCompProcessor.from_pretrained(path, image_size=config.data.image_size)


def build_model(
    config: TrainConfig, processor: XCompProcessor, dataset, fields: dict | None = None
) -> XCompForCausalLM:
    """A fresh tiny model (compact vocabulary from the data) or a checkpoint, with the compression override:
    ``fields`` (`XCompConfig` compression fields, e.g. a compressor's `config_fields`) or the config's own."""
    if fields is None:
        fields = {}
        if config.compression:
            fields["compression"] = config.compression
        if config.schedule:
            fields["schedule"] = config.schedule
    if config.init == "tiny":
        torch.manual_seed(config.seed)
        model_config = XCompConfig.tiny(
            num_layers=config.tiny_layers,
            hidden_size=config.tiny_hidden_size,
            patch_size=config.tiny_patch_size,
            vocab_subset=vocab_for(processor, dataset.vocabulary_texts()),
            video_token_id=processor.video_token_id,
            **{"compression": "dense", **fields},
        )
        if model_config.vision_config.image_size != config.data.image_size:
            raise ConfigError(f"tiny models take {model_config.vision_config.image_size}px frames")
        return XCompForCausalLM(model_config)
    return load_model(config.init, **fields)


def run(
    config: TrainConfig,
    fields: dict | None = None,
    loggers: list | None = None,
    trainer: TrainerConfig | None = None,
    progress: bool = False,
    evaluation: SuiteEvaluation | None = None,
    feature_cache: FeatureCache | None = None,
) -> Path:
    """Train per `config` (compression ``fields`` as in `build_model`; Lightning ``loggers``, ``trainer`` settings,
    ``progress`` bar, validation/test ``evaluation`` and ``feature_cache`` as in `fit`); returns the final model
    folder."""
    processor = build_processor(config)
    dataset = config.data
    model = build_model(config, processor, dataset, fields)
    if config.objective == "frame_tags":
        from xcomp.train.frame_tags import FrameTagCollator, FrameTagDataset, FrameTagger

        tagger = FrameTagger(model, processor.tokenizer, config.seed)
        collate = FrameTagCollator(processor)
        return fit(config, tagger, FrameTagDataset(dataset), processor, collate, loggers, trainer, progress, evaluation)
    return fit(config, model, dataset, processor, None, loggers, trainer, progress, evaluation, feature_cache)
