"""Frame tagging: per-frame attribute supervision of the vision tower and projector on synthetic videos.

VideoChat-Flash starts from a pretrained UMT-L encoder, so its visual tokens already say *what* is in a frame and
the LLM only has to learn where to look. A tiny tower trained from scratch through the LLM's answer loss gets
almost no signal about what it sees: the object asked about is on 2 of 16-32 frames, and the answer is one
letter. This objective supplies the missing pretraining: every frame is labelled with the colour, shape and digit
of the scripted object visible on it (or "none"), and a head on the projector's tokens must predict them.

Two choices make the features useful to the LLM rather than just separable:
- the head scores each token and takes the maximum over the frame's tokens (multiple-instance pooling), so that
  single tokens, which is what the LLM reads and what LP-Comp keeps, carry the attributes;
- the class vectors are the LLM's own (frozen) input embeddings of the words (" red", " star", " 7"), scored by
  cosine similarity, so a token showing a red star points the way the words do, and the LLM can match what it
  sees against the words of a question and its options: the alignment step of a VLM recipe, with labels in
  place of captions.

The head is discarded; the saved model is the ordinary VLM with a retrained vision tower and projector. Only
scripted events are labelled: decoys (data.noise > 0) would count as "no object", so the config requires noise 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xcomp.model.modeling import XCompForCausalLM
from xcomp.synth.drawing import COLOURS, SHAPES

ATTRIBUTES = {"colour": list(COLOURS), "shape": list(SHAPES), "digit": [str(d) for d in range(10)]}
"""Attribute -> its words; class 0 of each attribute means "no object" (or "no digit"), class k the k-th word."""
NONE_WEIGHT = 0.15
"""Weight of the "no object" class in the colour loss: most frames are empty, and an unweighted loss learns to
answer "none" everywhere before it learns any colour."""


def frame_labels(record: dict, num_frames: int) -> np.ndarray:
    """int64 [num_frames, 3]: colour, shape and digit class of the scripted object on each frame (0 = none).

    Synthetic events never overlap in time (one object on screen at a time), so each frame has one label.
    """
    labels = np.zeros((num_frames, len(ATTRIBUTES)), np.int64)
    colours, shapes = ATTRIBUTES["colour"], ATTRIBUTES["shape"]
    for event in record["events"]:
        colour, shape = event["object"].split()
        digit = event.get("digit")
        labels[event["start"] : event["end"]] = [
            colours.index(colour) + 1,
            shapes.index(shape) + 1,
            0 if digit is None else digit + 1,
        ]
    return labels


@dataclass
class FrameTagOutput:
    loss: torch.Tensor
    accuracy: dict[str, torch.Tensor]
    """Per attribute: accuracy on the frames that show an object (digit: that show a digit), NaN when the batch has
    none; "none": empty frames recognised as empty."""


class FrameTagger(nn.Module):
    """A VLM plus the attribute head on its visual tokens; `save_pretrained` saves the VLM only."""

    def __init__(self, vlm: XCompForCausalLM, tokenizer, seed: int = 0):
        super().__init__()
        self.vlm = vlm
        hidden = vlm.config.text_config.hidden_size
        init = torch.Generator().manual_seed(seed)  # built before the trainer seeds: its own generator, so reruns agree
        self.none = nn.Parameter(torch.randn(len(ATTRIBUTES), hidden, generator=init) * 0.02)
        """Learned class vector of "no object" per attribute (no word stands for it)."""
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        """Cosine-similarity temperature."""
        ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for words in ATTRIBUTES.values() for w in words]
        width = max(len(i) for i in ids)  # shorter words repeat their last token, weighting it in the mean
        self.register_buffer("word_ids", torch.tensor([i + [i[-1]] * (width - len(i)) for i in ids]), persistent=False)

    def class_vectors(self) -> list[torch.Tensor]:
        """Per attribute [1 + words, hidden]: "none", then the mean input embedding of each word's tokens."""
        with torch.no_grad():
            words = self.vlm.model.embed_text(self.word_ids).mean(dim=1).split([len(w) for w in ATTRIBUTES.values()])
        return [torch.cat([self.none[k : k + 1], w.to(self.none.dtype)]) for k, w in enumerate(words)]

    def forward(self, pixel_values: torch.Tensor, num_frames: list[int], frame_labels: torch.Tensor, **_) -> FrameTagOutput:
        inner = self.vlm.model
        tokens = torch.cat(inner.encode_video(pixel_values, num_frames))
        per_frame = F.normalize(tokens.reshape(pixel_values.shape[0], inner.visual_tokens_per_frame, -1).float(), dim=-1)
        scale = self.log_scale.exp()
        logits = [
            (per_frame @ F.normalize(vectors.float(), dim=-1).T).amax(dim=1) * scale for vectors in self.class_vectors()
        ]
        seen = frame_labels[:, 0] > 0
        colour_weight = torch.ones(logits[0].shape[-1], device=logits[0].device)
        colour_weight[0] = NONE_WEIGHT
        loss = F.cross_entropy(logits[0], frame_labels[:, 0], weight=colour_weight)
        accuracy = {}
        for k, (name, logit) in enumerate(zip(ATTRIBUTES, logits)):
            mask = frame_labels[:, k] > 0
            if k > 0 and mask.any():
                loss = loss + F.cross_entropy(logit[mask], frame_labels[mask, k])
            accuracy[name] = (logit.argmax(-1) == frame_labels[:, k])[mask].float().mean()
        accuracy["none"] = (logits[0].argmax(-1)[~seen] == 0).float().mean()
        return FrameTagOutput(loss, accuracy)

    def save_pretrained(self, path, **kwargs) -> None:
        self.vlm.save_pretrained(path, **kwargs)


class FrameTagDataset(torch.utils.data.Dataset):
    """The synthetic videos of a `SynthQAData` source, with per-frame attribute labels instead of questions."""

    def __init__(self, qa_dataset):
        self.qa = qa_dataset

    def __len__(self) -> int:
        return len(self.qa)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        case = self.qa.case(i)
        return case.frames, frame_labels(case.record, len(case.frames))


class FrameTagCollator:
    """Frames of a list of (frames, labels) -> model inputs."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, samples) -> dict:
        return {
            "pixel_values": torch.cat([self.processor.preprocess(frames) for frames, _ in samples]),
            "num_frames": [len(frames) for frames, _ in samples],
            "frame_labels": torch.from_numpy(np.concatenate([labels for _, labels in samples])),
        }
