"""Training throughput on a data mixture: SCT steps with videos decoded in the training process, decoded by
DataLoader workers ahead of the step, and with the frozen tower's tokens from the vision feature cache (the
evaluation engine's, same keys) — cold (computed and stored) then warm (read back) — side by side in one run.

Each mode trains a fresh copy of the same model for the same steps on the same generated mixture
(`xcomp.synth.mixture`: multi-turn video records and image records); printed per mode: samples per second (from
the training loop's own clock, `StepLog`'s ``seconds``), its ratio to the first mode, and on CUDA the peak memory.

    python -m xcomp.bench.training --shape tiny --steps 16 --frames 256 --video-size 448
    python -m xcomp.bench.training --shape real --frames 256 --steps 4 --device cuda   # 2B shape, random weights, bf16

``tiny``: the shipped xcomp_tiny model (64 px). ``real``: the VideoChat-Flash-2B shape with random weights
(`xcomp.bench.models.build_model`), 448 px frames, bf16 autocast, gradient checkpointing.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.loggers import Logger

MODES = (("in-process decoding", 0, False), ("workers", None, False), ("workers + cache, cold", None, True),
         ("workers + cache, warm", None, True))  # fmt: skip
"""(name, DataLoader workers (None: --workers), feature cache)."""


class Rows(Logger):
    """The rows `StepLog` hands to the trainer's loggers, kept in memory."""

    name, version = "rows", "0"

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []

    @property
    def experiment(self):
        return None

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Not needed here."""

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.rows.append({**metrics, "step": step})


def model_and_processor(shape: str, device: str):
    from xcomp.model.processing import XCompProcessor

    if shape == "tiny":
        from xcomp.model.convert import load_model
        from xcomp.shipped import shipped_model

        path = shipped_model("xcomp_tiny")
        return load_model(path), XCompProcessor.from_pretrained(path, image_size=64)
    from xcomp.bench.models import REAL_CONFIG, bench_config, build_model

    model = build_model(bench_config("real"), torch.device(device), torch.float32, seed=0)
    return model, XCompProcessor.from_pretrained(REAL_CONFIG.parents[1] / "qwen2_5_tokenizer", image_size=448)


def run_mode(args, folder: Path, mixture: Path, workers: int, cache) -> dict:
    """Train one fresh model for ``args.steps`` steps; samples per second and peak CUDA memory."""
    from xcomp.train.config import TrainConfig, TrainerConfig
    from xcomp.train.fit import fit
    from xcomp.train.sources.mixture import MixtureData

    size = 64 if args.shape == "tiny" else 448
    data = MixtureData(mixture=str(mixture), num_frames=[args.frames], min_frames=args.frames, image_size=size)
    config = TrainConfig(
        output_dir=str(folder), steps=args.steps, batch_size=args.batch_size, lr=1e-5, save_every=10**6,
        log_every=1, workers=workers, train_vision=False, data=data,
        precision="fp32" if args.shape == "tiny" else "bf16", gradient_checkpointing=args.shape == "real",
    )  # fmt: skip
    config.validate()
    model, processor = model_and_processor(args.shape, args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = Rows()
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    fit(config, model, data, processor, loggers=[rows], trainer=TrainerConfig(accelerator=accelerator),
        feature_cache=cache)  # fmt: skip
    last = [r for r in rows.rows if "seconds" in r][-1]
    out = {"samples_per_s": last["samples"] / last["seconds"], "seconds": last["seconds"], "samples": last["samples"]}
    if args.device == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per mode")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames", type=int, default=64, help="frames per training video")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the worker modes")
    parser.add_argument("--video-size", type=int, help="side of the written videos (default: the model's frame size; "
                        "real SFT videos are larger than the frames the model takes, and decoding them costs more)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no device summary and tips per mode
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible")
        return 1
    from xcomp.evaluation.features import FeatureCache
    from xcomp.synth.generate import SynthParams
    from xcomp.synth.mixture import write_mixture

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        samples = args.steps * args.batch_size
        size = 64 if args.shape == "tiny" else 448
        params = SynthParams(frames=args.frames, size=args.video_size or size, noise=0.0, span=2)
        mixture = write_mixture(root / "mixture", n=-(-samples // 5), seed=0, params=params, images=samples // 5)
        cache = FeatureCache(root / "features", 2**40, context={"backend": "auto"})
        for k, (name, workers, cached) in enumerate(MODES):
            t0 = time.perf_counter()
            results[name] = run_mode(args, root / f"run{k}", mixture, args.workers if workers is None else workers,
                                     cache if cached else None)  # fmt: skip
            results[name]["wall_s"] = time.perf_counter() - t0
            results[name]["cache_hits"] = cache.hits if cached else None
    base = results[MODES[0][0]]["samples_per_s"]
    print(f"{args.shape} shape, {args.device}, {args.frames} frames per video of {args.video_size or size} px, "
          f"batch {args.batch_size}, {args.steps} steps, {args.workers} workers")
    print(f"{'mode':<24} {'samples/s':>10} {'x first':>8} {'peak GiB':>9}")
    for name, r in results.items():
        peak = f"{r['peak_gib']:.1f}" if "peak_gib" in r else "-"
        print(f"{name:<24} {r['samples_per_s']:>10.2f} {r['samples_per_s'] / base:>8.2f} {peak:>9}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
