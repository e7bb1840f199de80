"""Training samples from a data mixture, as VideoChat-Flash's training code reads one: a YAML whose ``datasets:``
list names LLaVA conversation files (`xcomp.train.sources.llava`), where their media lie, and how many of each
file's records to take.

    datasets:
      - json_path: annotations/caption_youcook2.json   # a JSON list or JSONL of records
        data_root: videos/youcook2                     # the records' media paths are relative to it
        sampling_strategy: first:2.5%                  # all | first:N | first:P% | end:… | random:… | first2:… | …

The strategies are those of ``LazySupervisedDataset.__init__`` (LLaVA-NeXT ``llava/train/train.py``, as forked by
VideoChat-Flash; XComp's fork adds ``first2`` / ``first3`` / ``first4``, the 2nd to 4th slices of the same size,
so that disjoint subsets can be drawn): a count ``N`` or ``ceil(P × records / 100)``; ``first`` takes the first
that many, ``firstK`` the K-th run of that many, ``end`` the last, ``random`` the first after shuffling the file's
records with Python's ``random.shuffle`` — here one ``random.Random(seed)`` shuffles the files in order, which is
what the published code does after ``random.seed(seed)``. Differences, each refused in one line instead: a
percentage may be fractional (``2.5%``; there ``int("2.5")`` fails), and a count of 0 (there ``end:0`` takes the
whole file).

Records whose media are missing are counted and left out when the mixture is read (`xcomp data check mixture`
lists them); a record whose media cannot be decoded during training is replaced by the next readable record
(deterministically, so a resumed run sees what an uninterrupted one did), with a warning line, and counted in the
job's ``train.skipped``.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import numpy as np

from xcomp.data.files import read_rows
from xcomp.data.source import DataError, first_few
from xcomp.errors import ConfigError, VideoError
from xcomp.train.data import QASample
from xcomp.train.sources.llava import MEDIA_TYPES, Conversation, parse_record
from xcomp.train.sources.source import TrainSource

log = logging.getLogger(__name__)

SLICES = {"first": 0, "first2": 1, "first3": 2, "first4": 3}
"""``firstK`` strategies: which run of ``N`` records they take."""
STRATEGIES = ("all", *SLICES, "end", "random")
"""The sampling strategies of a mixture entry."""
ENTRY_KEYS = {"json_path", "data_root", "sampling_strategy", "media_type", "video_read_type"}
"""Keys of a mixture entry (``video_read_type`` is accepted and unused: the decoder tells a frame folder from a
file itself)."""
MAX_UNREADABLE = 16
"""Records in a row that may fail to decode before training stops (more means the media are broken, not a file)."""


def parse_strategy(strategy: str) -> tuple[str, int | Fraction | None, bool]:
    """``strategy`` as (name, amount, whether the amount is a percentage); one line for a malformed one."""
    name, _, amount = str(strategy).partition(":")
    if name not in STRATEGIES or (name == "all") != (amount == ""):
        raise ConfigError(f"sampling_strategy {strategy!r}: expected 'all' or one of {', '.join(STRATEGIES[1:])} "
                          "with ':N' or ':P%'")  # fmt: skip
    if name == "all":
        return name, None, False
    percent = amount.endswith("%")
    text = amount[:-1].strip() if percent else amount.strip()
    try:  # an integer stays one, so that P * n / 100 is computed as the published code does; a fraction is exact
        value = int(text) if text.isdigit() or not percent else Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"sampling_strategy {strategy!r}: {amount!r} is not a count or a percentage") from None
    if not value > 0:
        raise ConfigError(f"sampling_strategy {strategy!r} takes no records")
    return name, value, percent


def select(rows: list, strategy: str, rng: random.Random) -> list:
    """The records of one file that ``strategy`` takes (the module's rules); ``rng`` shuffles for ``random``."""
    name, value, percent = parse_strategy(strategy)
    if name == "all":
        return list(rows)
    count = math.ceil(value * len(rows) / 100) if percent else value
    if name == "end":
        return rows[-count:] if count else []
    if name == "random":
        shuffled = list(rows)
        rng.shuffle(shuffled)
        return shuffled[:count]
    start = SLICES[name] * count
    return rows[start : start + count]


@dataclass(frozen=True)
class MixtureEntry:
    """One dataset of a mixture, its paths resolved."""

    json_path: Path
    data_root: Path
    sampling_strategy: str
    media_type: str | None


def read_mixture(path: Path, root: Path) -> list[MixtureEntry]:
    """The entries of a mixture YAML, relative paths resolved against ``root``; one line for a bad file."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"data mixture not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path.name}: not a YAML file ({str(error).splitlines()[0]})") from None
    datasets = spec.get("datasets") if isinstance(spec, dict) else None
    if not isinstance(datasets, list) or not datasets:
        raise ConfigError(f"{path.name}: expected a 'datasets:' list of json_path / data_root / sampling_strategy")
    entries = []
    for k, entry in enumerate(datasets, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("json_path"), str):
            raise ConfigError(f"{path.name}: dataset {k}: expected a mapping with a json_path")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise ConfigError(f"{path.name}: dataset {k}: unknown keys {sorted(unknown)}; known: {sorted(ENTRY_KEYS)}")
        media = entry.get("media_type")
        if media not in (None, "text", *MEDIA_TYPES):
            raise ConfigError(f"{path.name}: dataset {k}: media_type {media!r} is not video, image or text")
        strategy = str(entry.get("sampling_strategy", "all"))
        parse_strategy(strategy)
        entries.append(MixtureEntry(root / entry["json_path"], root / str(entry.get("data_root") or ""), strategy, media))
    return entries


@dataclass(frozen=True)
class DatasetCount:
    """What one entry of the mixture gave: records in its file, taken by its strategy, and left out."""

    name: str
    records: int
    sampled: int
    missing: list[str]
    """Media paths of sampled records that are not there."""
    no_media: int
    """Sampled records with no video or image (text-only: the model takes one media per sample)."""


@dataclass
class MixtureData(TrainSource):
    """Conversation records of a VideoChat-Flash data mixture (see module): ``train/data=mixture
    train.data.mixture=FILE``. ``num_frames`` is one number, the most frames sampled from a video (the published
    ``frames_upbound``)."""

    name = "mixture"

    mixture: str = ""
    """The data-mixture YAML (the published ``--data_path``)."""
    root: str = ""
    """Folder that relative json_paths and data_roots are resolved against ('': the YAML's folder)."""
    min_frames: int = 4
    """Fewest frames sampled from a video (the published ``frames_lowbound``)."""
    fps: float = 1.0
    """Frames sampled per second of video, between min_frames and num_frames."""
    clip: int = 4
    """Frames per clip of the model's vision tower (``local_num_frames``): frame counts are multiples of it and
    an image is repeated to fill one."""
    seed: int = 0
    """Seed of the ``random:`` strategies (one generator over the datasets in order)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mixture:
            raise ConfigError("train data=mixture needs data.mixture (a data-mixture YAML)")
        if len(self.num_frames) != 1:
            raise ConfigError("data.num_frames must be one number for mixture data (the most frames per video)")
        if not 1 <= self.min_frames <= self.num_frames[0] or self.clip < 1 or self.fps <= 0:
            raise ConfigError("mixture data needs 1 <= min_frames <= num_frames, clip >= 1 and fps > 0")

    @classmethod
    def from_files(cls, annotations: str, videos: str | None) -> MixtureData:
        return cls(mixture=annotations, root=videos or "")

    @cached_property
    def _read(self) -> tuple[list[Conversation], list[DatasetCount]]:
        path = Path(self.mixture)
        rng = random.Random(self.seed)
        kept, counts = [], []
        for entry in read_mixture(path, Path(self.root) if self.root else path.parent):
            rows = read_rows(entry.json_path)
            media = entry.media_type or next((m for m in ("image", "video") if m in rows[0]), "text")
            numbered = select(list(enumerate(rows, 1)), entry.sampling_strategy, rng)
            missing, no_media = [], 0
            for number, row in numbered:
                if media == "text" or media not in row:
                    no_media += 1
                    continue
                record = parse_record(row, media, entry.data_root, entry.json_path, number)
                absent = [p for p in record.paths if not Path(p).exists()]
                missing += absent
                if not absent:
                    kept.append(record)
            counts.append(DatasetCount(entry.json_path.name, len(rows), len(numbered), missing, no_media))
        return kept, counts

    @cached_property
    def conversations(self) -> list[Conversation]:
        """The records trained on: sampled, with their media there, the leading `fraction` of them (read once;
        every sample looks it up)."""
        kept = self._read[0]
        return kept[: max(1, int(len(kept) * self.fraction))] if kept else kept

    @property
    def skipped_before(self) -> int:
        kept, counts = self._read
        return sum(c.sampled for c in counts) - len(kept)

    def __len__(self) -> int:
        if not self.conversations:
            raise DataError(f"{Path(self.mixture).name}: no sampled record has its media (xcomp data check mixture)")
        return len(self.conversations)

    def texts(self):
        for conversation in self.conversations:
            for question, answer in conversation.turns:
                yield question, None, answer

    def __getitem__(self, i: int) -> QASample:
        records = self.conversations
        for k in range(MAX_UNREADABLE):
            record = records[(i + k) % len(records)]
            try:
                frames, duration, origin = self._media(record)
            except VideoError as error:
                log.warning("skipped record %s: %s", record.id, error)
                continue
            (question, answer), *follow_ups = record.turns
            # record i is counted when it is the one that failed (a record after it that failed too is counted
            # when it is drawn itself), once per epoch
            return QASample(frames, question, answer, None, duration, follow_ups, int(k > 0), origin)
        raise DataError(f"{MAX_UNREADABLE} records in a row from record {records[i].id} on could not be decoded")

    def _media(self, record: Conversation) -> tuple[np.ndarray, float | None, tuple | None]:
        """Frames, duration (None for images) and (file, frame indices) of a video record."""
        from xcomp.video.decode import load_video, read_image
        from xcomp.video.sampling import FrameSamplingConfig

        if record.media == "video":
            sampling = FrameSamplingConfig(fps=self.fps, min_frames=self.min_frames, max_frames=self.num_frames[0],
                                           multiple_of=self.clip, size=self.image_size)  # fmt: skip
            video = load_video(record.paths[0], sampling)
            return video.frames, video.duration, (video.source, video.indices)
        images = np.stack([read_image(Path(p), self.image_size) for p in record.paths])
        return np.repeat(images, self.clip, axis=0), None, None

    def record(self) -> dict:
        """The settings and a digest of the records trained on: a resume whose media changed (found or lost since)
        would draw other samples at the same steps, and is refused instead."""
        from xcomp.tracking import fingerprint

        return {**super().record(), "trained_on": fingerprint({"ids": [c.id for c in self.conversations]})}

    def facts(self) -> tuple[list[tuple[str, str]], int]:
        kept, counts = self._read
        lines = [("mixture", Path(self.mixture).name), ("datasets", str(len(counts)))]
        for c in counts:
            lines += [(f"{c.name}.records", str(c.records)), (f"{c.name}.sampled", str(c.sampled))]
            lines += [(f"{c.name}.missing media", str(len(c.missing)))] if c.missing else []
            lines += [(f"{c.name}.text only", str(c.no_media))] if c.no_media else []
        missing = [p for c in counts for p in c.missing]
        lines += [("records", str(sum(c.sampled for c in counts))), ("missing media", str(len(missing)))]
        lines += [("missing", first_few(missing))] if missing else []
        lines += [("text-only records", str(sum(c.no_media for c in counts)))]
        lines += [("trained on", str(len(kept)))]
        return lines, len(missing)
