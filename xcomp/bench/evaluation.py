"""Evaluation engine benchmark: the card's four arms (`compress=lp,heuristic seg_len=8,16`) on an LVBench-shaped
generated suite (several questions per video), answered question by question (`reuse=false`, no feature cache:
the reference path) and video by video with reuse and a feature cache that starts cold, side by side in one run.

Printed per arm and mode: seconds per question, and for the whole sweep its seconds and how they compare with its
first job; then whether every answer (choice, kept frames, text) is the same in both modes. With ``--rss``, the
peak RSS of one job (a fresh process) over suites of increasing size, to show memory does not grow with the
number of videos.

    python -m xcomp.bench.evaluation --shape tiny --videos 8 --questions 12 --frames 64
    python -m xcomp.bench.evaluation --shape real --videos 1 --questions 3 --frames 4 --threads 1
    python -m xcomp.bench.evaluation --rss 8 64 --frames 256
    python -m xcomp.bench.evaluation --shape real --frames 512 --device cuda --dtype bf16 --attn flash_attention_2

``tiny``: the shipped models (xcomp_tiny for LP-Comp, base_tiny for the heuristic). ``real``: the
VideoChat-Flash-2B shape with random weights (`xcomp.bench.models.build_model`), one set of weights for both
arms, so they share the frozen tower's features as an SCT-tuned model and its base do.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from xcomp.bench.models import DTYPES

ARMS = (
    ("lp", "lp_comp", 8), ("lp", "lp_comp", 16), ("heuristic", "uniform_drop", 8), ("heuristic", "uniform_drop", 16),
    ("lp", "lp_comp", None), ("heuristic", "uniform_drop", None),
)  # fmt: skip
"""The card's sweep (compress option, registered compressor, QC-Comp segment length), then the two methods
answering from every frame (`select=all`, segment length None)."""
KEEP = 0.5
"""Frames QC-Comp keeps (the card's `keep`)."""


def suite(folder: Path, videos: int, questions: int, frames: int, size: int):
    """An LVBench-shaped synthetic suite: ``videos`` videos of ``frames`` frames, ``questions`` questions each."""
    from xcomp.data.synth import SynthSuite
    from xcomp.evaluation.suite import EvalSuite, frame_sampling

    families = ["locate", "count"]
    source = SynthSuite(families=families, n=-(-videos // 2), video_frames=max(frames, 16), size=size, span=2,
                        questions_per_video=questions, cache_dir=str(folder))  # fmt: skip
    built = source.suite()
    keep = {video for video, _ in built.by_video()[:videos]}
    built.questions = [q for q in built.questions if q.video in keep]
    return EvalSuite(source, built, *frame_sampling(source, frames, size, 4))


def models(shape: str, device: str = "cpu", dtype: str = "fp32", attn: str = "sdpa", seed: int = 0) -> dict:
    """Compressor name -> (model, processor, the model config it answers with)."""
    from xcomp.model.processing import XCompProcessor

    if shape == "tiny":
        from xcomp.model.convert import load_model
        from xcomp.shipped import shipped_model

        out = {}
        for name, model_name in (("lp_comp", "xcomp_tiny"), ("uniform_drop", "base_tiny")):
            path = shipped_model(model_name)
            model = load_model(path, attn, compression=name).to(device, DTYPES[dtype])
            out[name] = (model, XCompProcessor.from_pretrained(path, image_size=64), model.config)
        return out
    from xcomp.bench.models import REAL_CONFIG, bench_config, build_model

    config = bench_config("real")
    model = build_model(config, torch.device(device), DTYPES[dtype], attn, seed=seed)
    processor = XCompProcessor.from_pretrained(REAL_CONFIG.parents[1] / "qwen2_5_tokenizer", image_size=448)
    return {name: (model, processor, config.with_compression(compression=name)) for name in ("lp_comp", "uniform_drop")}


def run_arm(arms: dict, compressor: str, seg_len: int, eval_suite, reuse: bool, cache):
    """Answer the suite with one arm; returns (records, seconds)."""
    from xcomp.bench.models import compression
    from xcomp.compression.qc_comp import QCComp
    from xcomp.compression.selectors import AllFrames
    from xcomp.evaluation.runner import answer_suite
    from xcomp.pipeline import XCompPipeline

    model, processor, config = arms[compressor]
    with compression(model, config):  # the real shape's one set of weights, switched to the arm's compressor
        selector = AllFrames() if seg_len is None else QCComp(keep=KEEP, segment_frames=seg_len)
        pipe = XCompPipeline(model, processor, selector=selector, feature_cache=cache)
        start = time.perf_counter()
        records = answer_suite(pipe, eval_suite, system=compressor, max_new_tokens=8, reuse=reuse)
        return records, time.perf_counter() - start


def arm_name(option: str, seg_len: int | None) -> str:
    return f"compress={option} " + ("select=all" if seg_len is None else f"seg_len={seg_len}")


def compare(args: argparse.Namespace) -> int:
    from xcomp.evaluation.features import FeatureCache

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        size = 64 if args.shape == "tiny" else 448
        eval_suite = suite(Path(scratch) / "data", args.videos, args.questions, args.frames, size)
        arms = models(args.shape, args.device, args.dtype, args.attn)
        n = len(eval_suite.questions)
        print(f"suite: {args.videos} videos x {args.questions} questions = {n}, {args.frames} frames of {size} px; "
              f"shape {args.shape}, {args.device} {args.dtype} {args.attn}, {args.threads} thread(s)")  # fmt: skip
        results = {}
        arm_list = [a for a in ARMS if args.arms == "both" or (a[2] is None) == (args.arms == "all")]
        for mode, reuse in (("reference", False), ("reuse", True)):
            cache = FeatureCache(Path(scratch) / f"features-{mode}", 2**40) if reuse else None
            for option, compressor, seg_len in arm_list:
                records, seconds = run_arm(arms, compressor, seg_len, eval_suite, reuse, cache)
                results[(mode, option, seg_len)] = (records, seconds)
                print(f"  {mode:>9} {arm_name(option, seg_len)}: {seconds / n:.3f} s/question", flush=True)
    print("\n| arm | reference s/question | reuse s/question | speed-up | same answers |\n|---|---|---|---|---|")
    same_all = True
    for option, _, seg_len in arm_list:
        ref, ref_s = results[("reference", option, seg_len)]
        new, new_s = results[("reuse", option, seg_len)]
        same = [(r.prediction, list(r.kept_frames), r.text) for r in ref] == [
            (r.prediction, list(r.kept_frames), r.text) for r in new
        ]
        same_all &= same
        print(f"| {arm_name(option, seg_len)} | {ref_s / n:.3f} | {new_s / n:.3f} | {ref_s / new_s:.1f}x | {same} |")
    for mode in ("reference", "reuse") if args.arms != "all" else ():
        times = [results[(mode, option, seg_len)][1] for option, _, seg_len in ARMS[:4]]
        print(f"{mode}: the card's sweep {sum(times):.1f} s = {sum(times) / times[0]:.2f}x its first job "
              f"({times[0]:.1f} s)")  # fmt: skip
    print(f"every answer the same: {same_all}")
    return 0 if same_all else 1


def peak_rss(args: argparse.Namespace) -> int:
    """Peak RSS of a fresh process answering the LP-Comp arm over each suite size."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for videos in args.rss:
            child = [sys.executable, "-m", "xcomp.bench.evaluation", "--child-rss", str(videos), "--frames",
                     str(args.frames), "--questions", str(args.questions), "--data", scratch]  # fmt: skip
            out = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
            print(f"{videos} videos: peak RSS {rows[-1]['rss_mib']:.0f} MiB over {rows[-1]['questions']} questions "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)  # fmt: skip
    base = rows[0]["rss_mib"]
    for row in rows[1:]:
        print(f"{row['videos']} vs {rows[0]['videos']} videos: {row['rss_mib'] / base - 1:+.1%} peak RSS")
    return 0


def child_rss(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    eval_suite = suite(Path(args.data), args.child_rss, args.questions, args.frames, 64)
    start = time.perf_counter()
    records, _ = run_arm(models("tiny"), "lp_comp", 8, eval_suite, True, None)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"videos": args.child_rss, "questions": len(records), "rss_mib": rss,
                      "seconds": time.perf_counter() - start}))  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xcomp.bench.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["tiny", "real"], default="tiny", help="shipped tiny models or the 2B shape")
    parser.add_argument("--videos", type=int, default=8, help="videos in the suite")
    parser.add_argument("--questions", type=int, default=12, help="questions per video")
    parser.add_argument("--frames", type=int, default=64, help="frames per video (all sampled)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32", help="weights and activations")
    parser.add_argument("--attn", choices=["sdpa", "eager", "flash_attention_2"], default="sdpa", help="kernel")
    parser.add_argument("--arms", choices=["both", "card", "all"], default="both",
                        help="the card's four QC-Comp arms, the two select=all arms, or both")  # fmt: skip
    parser.add_argument("--rss", type=int, nargs="+", help="measure peak RSS over suites of these many videos")
    parser.add_argument("--child-rss", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 1
    from xcomp.errors import XCompError

    try:
        if args.child_rss:
            return child_rss(args)
        return peak_rss(args) if args.rss else compare(args)
    except XCompError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
