"""Training samples -> model batches: prompts with the video placeholder, labels on the answer only (the samples
come from a training source, `xcomp.train.sources`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xcomp.model.modeling import IGNORE_INDEX
from xcomp.model.processing import PromptConfig, XCompProcessor, build_prompt


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


class QACollator:
    """Tokenise prompts + answers (left-padded) and preprocess frames of a list of `QASample`s."""

    def __init__(self, processor: XCompProcessor, prompt: PromptConfig | None = None):
        self.processor = processor
        self.prompt = prompt or PromptConfig()

    def encode(self, sample: QASample) -> tuple[list[int], list[int]]:
        """Prompt + answer + <|im_end|> ids, and labels that are -100 except on the answer and its end."""
        tok = self.processor.tokenizer
        prompt = build_prompt(sample.question, sample.options, sample.duration, len(sample.frames), self.prompt)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = self.processor.answer_ids(sample.answer)
        return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids

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
        }
