"""Training samples -> model batches: prompts with the video placeholder, labels on the answer only (the samples
come from a training source, `xcomp.train.sources`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from xcomp.model.modeling import IGNORE_INDEX
from xcomp.model.processing import PromptConfig, XCompProcessor, build_prompt, follow_up_prompt


@dataclass
class QASample:
    """One (video, question, answer) example."""

    frames: np.ndarray
    """uint8 [T, H, W, 3]."""
    question: str
    answer: str
    """Target text: the option letter for multiple choice."""
    options: Sequence[str] | None = None
    duration: float | None = None
    """Seconds, for the prompt's time message."""
    follow_ups: Sequence[tuple[str, str]] = field(default_factory=tuple)
    """Later (question, answer) turns of a conversation, each answer supervised too."""
    skipped: int = 0
    """Records the source could not read and replaced by this one (counted in ``train.skipped``)."""
    origin: tuple[str, np.ndarray] | None = None
    """(video file, sampled frame indices): what the frames' vision features are cached by; None: not cacheable."""


class QACollator:
    """Tokenise prompts + answers (left-padded) and preprocess frames of a list of `QASample`s."""

    def __init__(self, processor: XCompProcessor, prompt: PromptConfig | None = None):
        self.processor = processor
        self.prompt = prompt or PromptConfig()

    def encode(self, sample: QASample) -> tuple[list[int], list[int]]:
        """Prompt + answer + <|im_end|> ids (then each follow-up question and answer), and labels that are -100
        except on the answers and their ends."""
        tok = self.processor.tokenizer
        first = build_prompt(sample.question, sample.options, sample.duration, len(sample.frames), self.prompt)
        ids, labels = [], []
        for prompt, answer in ((first, sample.answer), *((follow_up_prompt(q), a) for q, a in sample.follow_ups)):
            prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = self.processor.answer_ids(answer)
            ids += prompt_ids + answer_ids
            labels += [IGNORE_INDEX] * len(prompt_ids) + answer_ids
        return ids, labels

    def __call__(self, samples: Sequence[QASample]) -> dict[str, torch.Tensor | list[int]]:
        encoded = [self.encode(s) for s in samples]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.processor.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(samples), width), pad, dtype=torch.long)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        attention_mask = torch.zeros_like(input_ids)
        for b, (ids, lab) in enumerate(encoded):
            input_ids[b, width - len(ids) :] = torch.tensor(ids)
            labels[b, width - len(ids) :] = torch.tensor(lab)
            attention_mask[b, width - len(ids) :] = 1
        pixel_values = torch.cat([self.processor.preprocess(s.frames) for s in samples])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values": pixel_values,
            "num_frames": [len(s.frames) for s in samples],
            "origins": [s.origin for s in samples],
            "skipped": sum(s.skipped for s in samples),
        }
