"""Prompts and tokenization: the Qwen chat format with one video placeholder, as VideoChat-Flash builds it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from xcomp.errors import ConfigError, XCompError
from xcomp.vision.processor import preprocess_frames

VIDEO_PLACEHOLDER = "<|video_pad|>"
DEFAULT_SYSTEM = "You are a helpful assistant."
OPTION_LETTERS = "ABCDEFGHIJ"
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class QuestionFormat:
    """How a multiple-choice question and its options are written after the video (a benchmark's template).

    The text is ``pre + question_prefix + question``, a newline, ``options_prefix`` and one option per line
    (``option`` with ``{letter}`` and ``{text}``), then a newline and ``post`` when it is not empty. The defaults
    are the layout xcomp's models were trained with.
    """

    pre: str = ""
    """Text before the question (a benchmark's instruction)."""
    question_prefix: str = ""
    """Text right before the question, e.g. 'Question: '."""
    options_prefix: str = ""
    """Text before the first option, e.g. 'Options:\\n'."""
    option: str = "({letter}) {text}"
    """One option's line."""
    post: str = MC_INSTRUCTION
    """The instruction after the options ('' for none)."""

    def render(self, question: str, options: Sequence[str]) -> str:
        lines = "\n".join(self.option.format(letter=OPTION_LETTERS[i], text=o) for i, o in enumerate(options))
        text = f"{self.pre}{self.question_prefix}{question}\n{self.options_prefix}{lines}"
        return f"{text}\n{self.post}" if self.post else text


@dataclass
class PromptConfig:
    """How a question is turned into a prompt."""

    system: str = DEFAULT_SYSTEM
    """System message of the chat template."""
    time_message: bool = True
    """Prefix the question with the published 'The video lasts for X seconds, and N frames…' sentence."""
    question_format: QuestionFormat = field(default_factory=QuestionFormat)
    """How a multiple-choice question and its options are laid out."""


def check_options(options: Sequence[str]) -> None:
    """2-10 non-empty option strings, or an error."""
    if isinstance(options, str) or not all(isinstance(o, str) and o.strip() for o in options):
        raise XCompError(f"options must be a list of non-empty strings, got {options!r}")
    if not 2 <= len(options) <= len(OPTION_LETTERS):
        raise XCompError(f"need between 2 and {len(OPTION_LETTERS)} options, got {len(options)}")


def build_prompt(
    question: str,
    options: Sequence[str] | None = None,
    duration: float | None = None,
    num_frames: int | None = None,
    config: PromptConfig | None = None,
) -> str:
    """The full chat prompt, ending with the assistant header so that generation writes the answer."""
    config = config or PromptConfig()
    text = question.strip()
    if options:
        check_options(options)
        text = config.question_format.render(text, options)
    if config.time_message and duration is not None and num_frames is not None:
        text = (
            f"The video lasts for {duration:.2f} seconds, and {num_frames} frames are uniformly sampled from it. "
            + text
        )
    return (
        f"<|im_start|>system\n{config.system}<|im_end|>\n"
        f"<|im_start|>user\n{VIDEO_PLACEHOLDER}\n{text}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def follow_up_prompt(question: str) -> str:
    """A later user turn of a conversation, after an answer's <|im_end|>: the text `build_prompt`'s turn has
    between the answer and the next one."""
    return f"\n<|im_start|>user\n{question.strip()}<|im_end|>\n<|im_start|>assistant\n"


def parse_choice(answer: str, num_options: int, texts: Sequence[str] | None = None) -> str | None:
    """The option letter a generated answer picks ('B', '(B) blue', 'The answer is B.'), or None.

    With the option ``texts``, an answer that just repeats one option ('blue') picks it too: models often
    answer in words even when asked for a letter.
    """
    letters = OPTION_LETTERS[:num_options]
    text = answer.strip()
    if texts:
        said = text.rstrip(".").strip().lower()
        for letter, option in zip(letters, texts):
            if said == option.strip().lower():
                return letter
    match = re.match(rf"^\(?([{letters}])(?:\)|\.|:|\s|$)", text)
    if match:
        return match.group(1)
    match = re.search(rf"\b(?:answer|option)\s*(?:is)?\s*:?\s*\(?([{letters}])\b", text, re.IGNORECASE)
    return match.group(1) if match else None


def first_letter(answer: str, num_options: int) -> str | None:
    """The benchmarks' rule: the first option letter that stands alone in the reply ('B', '(B) 12', 'B. red',
    'The answer is B'), else None (scored wrong). A capital inside a word ('Because') is not a letter."""
    match = re.search(rf"(?<![A-Za-z])([{OPTION_LETTERS[:num_options]}])(?![A-Za-z])", answer.strip())
    return match.group(1) if match else None


ANSWER_PARSERS = {
    "first_letter": lambda text, options: first_letter(text, len(options)),
    "lenient": lambda text, options: parse_choice(text, len(options), options),
}
"""How a reply's option letter is read, by `answer_rule` name."""


class XCompProcessor:
    """Tokenizer + frame preprocessing + prompt building for `XCompForCausalLM`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_size: int = 448):
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_PLACEHOLDER)
        if self.video_token_id is None or self.video_token_id == tokenizer.unk_token_id:
            raise XCompError(f"tokenizer has no {VIDEO_PLACEHOLDER} token")

    @classmethod
    def from_pretrained(cls, path: str | Path, image_size: int = 448) -> XCompProcessor:
        """Load the tokenizer files (vocab.json + merges.txt or tokenizer.json) from a local folder."""
        folder = Path(path)
        if not folder.is_dir():  # else transformers would take it for a hub id and fail with a hub error
            raise ConfigError(f"tokenizer folder not found: {path}")
        if not ((folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()):
            raise ConfigError(f"{path} has no tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
        return cls(AutoTokenizer.from_pretrained(str(path)), image_size=image_size)

    def save_pretrained(self, path: str | Path) -> None:
        self.tokenizer.save_pretrained(str(path))

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded `input_ids` and `attention_mask` (left padding keeps every prompt's end aligned)."""
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(e) for e in encoded)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, e in enumerate(encoded):
            ids[b, width - len(e) :] = torch.tensor(e)
            mask[b, width - len(e) :] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def answer_ids(self, answer: str) -> list[int]:
        """Ids of an assistant answer and the <|im_end|> that closes it: what training supervises and what option
        scoring scores, so the two cannot drift apart."""
        return self.tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> normalised [T, 3, size, size]."""
        return preprocess_frames(frames, size=self.image_size)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
