"""``xcomp synth``: write a synthetic long-video QA suite (videos + questions.jsonl)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xcomp.errors import XCompError
from xcomp.synth.generate import FAMILIES, SynthParams, write_suite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SynthParams()
    parser.add_argument(
        "outdir", type=Path, help="output folder (videos/ and questions.jsonl are written here)"
    )
    parser.add_argument("--family", choices=[*FAMILIES, "all"], default="all", help="question family")
    parser.add_argument("--n", type=int, default=8, help="cases per family (default 8)")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per video")
    parser.add_argument("--size", type=int, default=defaults.size, help="frame side in pixels (even)")
    parser.add_argument("--fps", type=float, default=defaults.fps, help="frame rate of the written videos")
    parser.add_argument("--noise", type=float, default=defaults.noise, help="distractor level 0-1")
    parser.add_argument("--span", type=int, default=defaults.span, help="frames each event is visible")
    parser.add_argument("--seed", type=int, default=0, help="suite seed (>= 0)")
    parser.add_argument(
        "--depth", type=float, default=None, help="needle depth 0-1 (default: random per case)"
    )
    parser.add_argument(
        "--format", choices=["mp4", "frames"], default="mp4", help="mp4 files or PNG frame folders"
    )
    parser.add_argument("--questions-per-video", type=int, default=1,
                        help="questions about each video: its case's, then follow-ups (LVBench asks ~15)")  # fmt: skip
    parser.add_argument("--mixture", action="store_true",
                        help="write a VideoChat-Flash data mixture (LLaVA records, images too) for train/data=mixture")  # fmt: skip
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def run(args: argparse.Namespace) -> int:
    params = SynthParams(frames=args.frames, size=args.size, fps=args.fps, noise=args.noise, span=args.span)
    if args.mixture:
        from xcomp.synth.mixture import write_mixture

        print(f"wrote {write_mixture(args.outdir, args.n, args.seed, params, args.questions_per_video)}")
        return 0
    jsonl = write_suite(
        args.outdir,
        args.family,
        args.n,
        args.seed,
        params,
        fmt=args.format,
        depth=args.depth,
        progress=args.progress,
        questions_per_video=args.questions_per_video,
    )
    videos = args.n * (len(FAMILIES) if args.family == "all" else 1)
    print(f"wrote {videos} cases ({videos * args.questions_per_video} questions) to {jsonl}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xcomp synth", description=__doc__)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except XCompError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
