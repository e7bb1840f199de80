"""A small training job run by the trainer tests, in-process or as a subprocess that can be killed.

Usage: python -m tests.train_job OUTPUT_DIR STEPS [BATCH_SIZE]   (also under torchrun)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.loggers import Logger

from tests.conftest import TOKENIZER_DIR
from xcomp import XCompConfig, XCompForCausalLM
from xcomp.model.processing import XCompProcessor
from xcomp.train.config import TrainConfig
from xcomp.train.data import QASample
from xcomp.train.fit import fit

LETTERS = "ABCD"


class ColourDataset(torch.utils.data.Dataset):
    """Videos whose frames are one flat colour; the answer is that colour's option letter."""

    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}

    def __init__(self, n: int, num_frames: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, 4, n)
        self.num_frames = num_frames

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> QASample:
        names = list(self.colours)
        frames = np.zeros((self.num_frames, 64, 64, 3), dtype=np.uint8)
        frames[:] = self.colours[names[self.labels[i]]]
        return QASample(frames, "What colour is the video?", LETTERS[self.labels[i]], names)


class RowFile(Logger):
    """Appends every row a trainer logs to ``curve.jsonl`` in ``folder`` (what a tracking server would receive)."""

    name, version = "rows", "0"

    def __init__(self, folder: str):
        super().__init__()
        self.path = Path(folder) / "curve.jsonl"

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def curve(folder) -> list[dict]:
    """The training-curve rows `RowFile` received in ``folder`` (not the run's closing ``train.skipped``)."""
    rows = [json.loads(line) for line in (Path(folder) / "curve.jsonl").read_text().splitlines()]
    return [row for row in rows if "loss" in row]


def make_job(output_dir: str, steps: int, batch_size: int = 2, **fields):
    """(config, model, dataset, processor) of the job: a fresh 2-layer LP-Comp model on `ColourDataset`."""
    torch.manual_seed(0)
    config = TrainConfig.from_dict(
        dict(output_dir=output_dir, steps=steps, batch_size=batch_size, save_every=2, log_every=1, lr=3e-3, **fields)
    )
    model = XCompForCausalLM(XCompConfig.tiny(num_layers=2, compression="lp_comp"))
    processor = XCompProcessor.from_pretrained(TOKENIZER_DIR, image_size=64)
    return config, model, ColourDataset(16), processor


def train_job(output_dir: str, steps: int, batch_size: int = 2, **fields):
    """Train the job, its curve logged to `RowFile`; returns the final model folder."""
    return fit(*make_job(output_dir, steps, batch_size, **fields), loggers=[RowFile(output_dir)])


if __name__ == "__main__":
    torch.set_num_threads(1)
    train_job(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))
