"""Training loop overhead: the Lightning loop (`xcomp.train.fit`) against the `accelerate` loop it replaces.

Both train the same fresh tiny model (the dense base recipe's shape: 4 layers, width 128, 16 tokens per frame) on
the same synthetic batches (the base recipe's data, 16 and 32 frames) for the same steps, in one process, rounds
alternating so machine load hits both alike. Reported: seconds per optimiser step after the first (data loading
and the step itself; start-up excluded, from each loop's log.csv), and whether the two final models are
bit-identical.

    python -m xcomp.bench.training --steps 20 --rounds 2      (needs ../shared/reference beside the repo)
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from xcomp.train.config import TrainConfig
from xcomp.train.recipe import build_dataset, build_model, build_processor

TOKENIZER = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "qwen2_5_tokenizer"
"""The Qwen2.5 tokenizer files of ../shared (the tiny model's vocabulary is cut from it)."""


def config(output_dir: Path, steps: int) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "output_dir": str(output_dir),
            "tokenizer": str(TOKENIZER),
            "tiny_hidden_size": 128,
            "tiny_patch_size": 16,
            "steps": steps,
            "batch_size": 16,
            "lr": 1e-3,
            "train_vision": True,
            "log_every": 1,
            "save_every": steps,
            "data": {"families": ["locate"], "num_samples": 16 * steps, "num_frames": [16, 32], "noise": 0.0, "seed": 1},
        }
    )


def train(loop: str, output_dir: Path, steps: int) -> tuple[float, Path]:
    """Seconds per step after the first, and the final model's folder."""
    cfg = config(output_dir, steps)
    processor, dataset = build_processor(cfg), build_dataset(cfg)
    model = build_model(cfg, processor, dataset)
    if loop == "lightning":
        from xcomp.train.fit import fit

        final = fit(cfg, model, dataset, processor)
    else:
        from xcomp.train.trainer import Trainer

        final = Trainer(cfg, model, dataset, processor).train()
    with (output_dir / "log.csv").open() as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    return (seconds[-1] - seconds[0]) / (len(seconds) - 1), final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per run (batch 16)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both loops")
    args = parser.parse_args(argv)
    if not TOKENIZER.is_dir():
        raise SystemExit(f"error: {TOKENIZER} not found (../shared beside the repository)")
    times: dict[str, list[float]] = {"accelerate": [], "lightning": []}
    identical = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            finals = {}
            for loop in times:
                seconds, finals[loop] = train(loop, Path(tmp) / f"{loop}{r}", args.steps)
                times[loop].append(seconds)
            a, b = (load_file(str(f / "model.safetensors")) for f in finals.values())
            identical.append(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a))
    old, new = (statistics.median(times[k]) for k in ("accelerate", "lightning"))
    print(f"| loop | s/step (median of {args.rounds}) |\n|---|---|")
    print(f"| accelerate | {old:.3f} |\n| lightning | {new:.3f} |")
    print(f"lightning / accelerate: {new / old:.3f}x; final weights bit-identical: {all(identical)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
