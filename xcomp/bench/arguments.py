"""`xcomp bench`'s command line: its options, their defaults, and the command that reproduces a result."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import torch

from xcomp.bench.models import DTYPES, REAL_CONFIG
from xcomp.errors import ConfigError


def method_names() -> list[str]:
    """Every row the benchmark runs by default: the registered compressors (a new one is a row without edits),
    then 'lp_comp+qc', which scores all frames with QC-Comp and answers from the kept ones with LP-Comp (any
    ``COMPRESSOR+SELECTOR`` is a row; see `xcomp.compression.system.System`)."""
    from xcomp.compression.compressors import all_compressors

    return [*sorted(all_compressors()), "lp_comp+qc"]


DEFAULT_SETTINGS = ["pre_pool.tokens=8"]
"""`--set` before the command line's own: pre-LLM pooling to 8 tokens/frame (about LP-Comp's mean of 8.8 per layer)."""
PREFIX_TOKENS = 14
"""Prompt tokens before the video: the chat template's system turn and user header."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shape",
        choices=["tiny", "real"],
        default="tiny",
        help="tiny: the test model with 28 layers; real: VideoChat-Flash-2B (random weights)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help=f"config.json for --shape real (default: {REAL_CONFIG})"
    )
    parser.add_argument(
        "--frames",
        type=int,
        nargs="+",
        default=[64, 256, 1024],
        help="frame counts (multiples of the 4-frame clip; default 64 256 1024)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help=f"rows to run: a registered compressor, or COMPRESSOR+SELECTOR to answer from the frames a registered "
        f"frame selector keeps (default: {', '.join(method_names())}; dense is always run: every ratio is to dense)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="bf16",
        help="weights and activations (bf16: GPU default, and 3x fp32 speed on AVX512-BF16 CPUs)",
    )
    parser.add_argument(
        "--attn",
        default="sdpa",
        choices=["sdpa", "flash_attention_2", "eager"],
        help="LLM attention implementation",
    )
    parser.add_argument(
        "--text-tokens",
        type=int,
        default=64,
        help=f"prompt tokens besides the video ({PREFIX_TOKENS} before it, the rest after it)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=list(DEFAULT_SETTINGS),
        metavar="NAME.FIELD=VALUE",
        help="a compressor's or frame selector's field, e.g. qc.keep=0.25 qc.segment_frames=16 qc.shifts=[0] "
        f"(fields: the classes' own; default {' '.join(DEFAULT_SETTINGS)}, later ones win)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed calls per stage before timing (default: 1; 0 for --shape real on CPU)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per stage, median reported (default: 3; 1 for --shape real on CPU)",
    )
    parser.add_argument("--decode-tokens", type=int, default=8, help="decoded tokens timed per row (median)")
    parser.add_argument("--vision-frames", type=int, default=None,
                        help="frames actually encoded per frame count, the rest extrapolated "
                             "(default: all; one 4-frame clip for --shape real on CPU)")  # fmt: skip
    parser.add_argument("--vision-batch", type=int, default=64, help="frames per vision-tower call")
    parser.add_argument("--video", type=Path, default=None,
                        help="video file to time decoding on (default: a synthetic 10-minute 720p H.264 video, "
                             "generated once by xcomp.bench.decode)")  # fmt: skip
    parser.add_argument("--skip-video", action="store_true", help="do not time video decoding (column n/a)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--analytic",
        action="store_true",
        help="only print the expected ratios from the accounting (no model is built; any frame count)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    parser.add_argument(
        "--json", type=Path, default=None, help="write the raw results here (for --plot-also)"
    )
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of time and memory vs frames")
    parser.add_argument(
        "--plot-also",
        type=Path,
        nargs="*",
        default=[],
        help="earlier --json results to add to the plot as extra rows of panels",
    )


def resolve_defaults(args: argparse.Namespace) -> None:
    slow = args.shape == "real" and torch.device(args.device).type == "cpu"
    if args.warmup is None:
        args.warmup = 0 if slow else 1
    if args.repeats is None:
        args.repeats = 1 if slow else 3
    if args.methods is None:
        args.methods = method_names()
    if "dense" not in args.methods:
        args.methods = ["dense", *args.methods]
    args.methods = list(dict.fromkeys(args.methods))
    if args.text_tokens <= PREFIX_TOKENS:
        raise ConfigError(f"--text-tokens must exceed the {PREFIX_TOKENS} tokens before the video")


def command_line(args: argparse.Namespace) -> str:
    """The full command with every option spelled out (defaults resolved), to rerun the table exactly."""
    parts = ["xcomp", "bench", "--shape", args.shape, "--frames", *map(str, args.frames)]
    parts += ["--methods", *args.methods, "--device", args.device, "--dtype", args.dtype, "--attn", args.attn]
    for flag in (
        "text_tokens",
        "warmup",
        "repeats",
        "decode_tokens",
        "vision_batch",
    ):
        parts += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    for flag in ("config", "vision_frames", "video", "threads"):
        if getattr(args, flag) is not None:
            parts += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    given = args.set[len(DEFAULT_SETTINGS) :] if args.set[: len(DEFAULT_SETTINGS)] == DEFAULT_SETTINGS else args.set
    if given:
        parts += ["--set", *given]
    for flag in ("skip_video", "analytic"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)
