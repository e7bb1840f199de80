"""LLaVA conversation records, the format of VideoChat-Flash's SFT data (and XComp's SCT slice of it).

A record has an ``id``, its media — ``video`` (a file or frame folder) or ``image`` (a path or a list of paths) —
and ``conversations``: turns ``{"from": "human" | "gpt", "value": ...}``, the media placeholder ``<image>`` in a
human turn. How the published training code reads one (LLaVA-NeXT's ``train.py`` as forked by VideoChat-Flash,
OpenGVLab/VideoChat-Flash ``llava-train_videochat/llava/train/train.py``: ``LazySupervisedDataset``,
``preprocess_multimodal``, ``preprocess_qwen``) and what xcomp does:

- a leading turn that is not from ``human`` is dropped, as there; then turns alternate human / gpt, and a record
  that does not (or ends on a human turn) is a bad row, named with its file and row;
- the placeholder is moved to the front of its turn there, and VideoChat-Flash's video path rewrites the first
  turn as ``<image>\\n<time instruction>\\n<question>``. xcomp's prompt (`xcomp.model.processing.build_prompt`)
  always puts the media and the time message at the front of the first human turn, so ``<image>`` is removed
  from the text of every turn;
- the loss is on every gpt turn: its text and the ``<|im_end|>`` that closes it (the published code also
  supervises the ``<|im_start|>assistant\\n`` header, which xcomp's prompt gives, as it does when answering);
- an image: VideoChat-Flash sends it through the video tower as a one-frame clip and merges its tokens with
  ``local_num_frames=1``. xcomp's tower encodes whole clips of the model's ``local_num_frames`` only, so an image
  is repeated to fill one clip (a still clip), and a list of images is one still clip per image, in order, in the
  prompt's one media slot; no time message (as there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xcomp.data.source import row_error

IMAGE_TOKEN = "<image>"
"""LLaVA's media placeholder in a human turn."""
MEDIA_TYPES = ("video", "image")
"""The media keys a record is read by (``text`` records have none)."""


@dataclass(frozen=True)
class Conversation:
    """One record, checked: its media files and its (human, gpt) turns."""

    id: str
    """The record's ``id`` (``<file>:<row>`` when it has none)."""
    media: str
    """'video' or 'image'."""
    paths: tuple[str, ...]
    """The media files, resolved against the dataset's ``data_root`` (one for a video)."""
    turns: tuple[tuple[str, str], ...]
    """(human, gpt) texts in order, the placeholder removed."""


def parse_record(row: dict, media: str, data_root: Path, where: Path, number: int) -> Conversation:
    """The `Conversation` of annotation row ``number`` (1-based) of file ``where``; a row that does not fit is one
    `DataError` naming file, row and field."""
    value = row.get(media)
    values = value if media == "image" and isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        expected = "a path or a list of paths" if media == "image" else "a path"
        raise row_error(where, number, media, f"expected {expected}, got {value!r}")
    paths = tuple(os.path.join(data_root, v) for v in values)  # an absolute path stays as it is, as there
    return Conversation(_record_id(row, where, number), media, paths, _turns(row.get("conversations"), where, number))


def _record_id(row: dict, where: Path, number: int) -> str:
    value = row.get("id")
    return f"{where.name}:{number}" if value is None else str(value)


def _turns(conversations, where: Path, number: int) -> tuple[tuple[str, str], ...]:
    if not isinstance(conversations, list) or not conversations:
        raise row_error(where, number, "conversations", "expected a non-empty list of turns")
    for k, turn in enumerate(conversations, 1):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise row_error(where, number, f"conversations[{k}]", 'expected {"from": ..., "value": "text"}')
    skip = int(conversations[0].get("from") != "human")
    turns = conversations[skip:]
    if len(turns) < 2 or len(turns) % 2:
        raise row_error(where, number, "conversations", "expected human / gpt pairs of turns")
    for k, turn in enumerate(turns):
        expected = "gpt" if k % 2 else "human"
        if turn.get("from") != expected:
            raise row_error(where, number, f"conversations[{k + 1 + skip}].from", f"expected {expected!r}, got {turn.get('from')!r}")
    texts = [t["value"].replace(IMAGE_TOKEN, "").strip() for t in turns]
    return tuple(zip(texts[::2], texts[1::2]))
