"""Training samples -> model batches: prompts with the video placeholder, labels on the answer only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xcomp.errors import ConfigError
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


class JsonlQADataset(torch.utils.data.Dataset):
    """Samples from an `xcomp synth` JSONL (videos decoded on access, `num_frames` uniformly sampled)."""

    def __init__(self, path: str, num_frames: int, image_size: int, fraction: float = 1.0):
        from pathlib import Path

        from xcomp.synth.generate import read_questions

        self.path = Path(path)
        rows = read_questions(self.path, ("video", "question", "answer"))
        self.rows = rows[: max(1, int(len(rows) * fraction))]
        self.num_frames = num_frames
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.rows)

    def texts(self):
        """(question, options, answer) of every sample, without decoding videos."""
        return ((r["question"], r.get("options"), r["answer"]) for r in self.rows)

    def __getitem__(self, i: int) -> QASample:
        from xcomp.video import FrameSamplingConfig, load_video

        row = self.rows[i]
        sampling = FrameSamplingConfig(size=self.image_size, min_frames=4, max_frames=4096, allow_repeat=True)
        video = load_video(self.path.parent / row["video"], sampling, num_frames=self.num_frames)
        return QASample(video.frames, row["question"], row["answer"], row.get("options"), video.duration)


class SynthQADataset(torch.utils.data.Dataset):
    """Synthetic QA generated on access: sample i is case i // F of family i % F (deterministic per seed)."""

    def __init__(self, config):
        from xcomp.synth.generate import FAMILIES, SynthParams

        unknown = set(config.families) - set(FAMILIES)
        if unknown:
            raise ConfigError(f"unknown synthetic families {sorted(unknown)}; choose from {list(FAMILIES)}")
        self.config = config
        self.params = [
            SynthParams(frames=n, size=config.image_size, span=config.span, noise=config.noise)
            for n in config.num_frames
        ]
        self.length = max(1, int(config.num_samples * config.fraction))

    def __len__(self) -> int:
        return self.length

    def case(self, i: int, render_frames: bool = True):
        from xcomp.synth.generate import make_case

        families = self.config.families
        j = i // len(families)
        params = self.params[j % len(self.params)]
        return make_case(families[i % len(families)], j, self.config.seed, params, render_frames=render_frames)

    def is_open_ended(self, i: int) -> bool:
        """Whether sample i is asked without options (an evenly spread `open_ended` share of each family)."""
        f, j = self.config.open_ended, i // len(self.config.families)
        return int((j + 1) * f) > int(j * f)

    def texts(self):
        """(question, options, answer) of every sample, without drawing frames."""
        for i in range(len(self)):
            r = self.case(i, render_frames=False).record
            yield r["question"], r["options"], r["answer"]
            if self.is_open_ended(i):
                yield r["question"], None, r["answer_text"]

    def __getitem__(self, i: int) -> QASample:
        c = self.case(i)
        r = c.record
        duration = len(c.frames) / r["fps"]
        if self.is_open_ended(i):
            return QASample(c.frames, r["question"], r["answer_text"], None, duration)
        target = r["answer_text"] if self.config.answer == "text" else r["answer"]
        return QASample(c.frames, r["question"], target, r["options"], duration)
