"""The `xcomp` command line: ask, demo, synth, info, bench, convert, report, data check (evaluation and training jobs:
run.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xcomp.errors import XCompError


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}"
        n /= 1000
    return f"{n:.3g}E{unit}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.3f} GiB"


def cmd_info(args: argparse.Namespace) -> int:
    """Model shape, parameter counts, and per-method token/FLOP/KV accounting for N frames."""
    from xcomp.accounting import parameter_counts, run_cost
    from xcomp.model.convert import load_config

    if any("+" in name for name in args.methods or []):
        raise XCompError("info counts token compressors; a frame selector's cost is measured by xcomp bench")
    if args.frames < 1 or args.text_tokens < 0:
        raise XCompError(f"--frames must be >= 1 and --text-tokens >= 0, got {args.frames}, {args.text_tokens}")
    config = load_config(args.config)
    t, v = config.text_config, config.vision_config
    print(f"config: {args.config}")
    print(
        f"LLM: {t.num_hidden_layers} layers, width {t.hidden_size}, heads {t.num_attention_heads}/"
        f"{t.num_key_value_heads} (q/kv), FFN {t.intermediate_size}, vocab {t.vocab_size}"
    )
    print(
        f"vision: UMT width {v.hidden_size}, {v.num_blocks} blocks run, {v.image_size}px, "
        f"{v.patches_per_frame} patches/frame, clips of {v.num_frames} frames -> {config.tokens_per_frame} tokens/frame"
    )
    counts = parameter_counts(config)
    print("parameters: " + ", ".join(f"{k} {v / 1e6:,.1f}M" for k, v in counts.items()))
    from xcomp.compression.compressors import all_compressors
    from xcomp.compression.system import systems

    names = args.methods or ["dense", *sorted(set(all_compressors()) - {"dense"})]
    costs = {}
    for name, system in systems(list(dict.fromkeys(["dense", *names])), args.set).items():
        costs[name] = run_cost(system.config(config), args.frames, args.text_tokens, args.dtype_bytes)
    dense = costs["dense"]
    costs = {name: costs[name] for name in names}
    print(f"\n{args.frames} frames, {args.text_tokens} text tokens, KV at {args.dtype_bytes} bytes/value")
    print("tokens entering each decoder layer:")
    for method, cost in costs.items():
        print(f"  {method:>12}: {' '.join(str(n) for n in cost.tokens_per_layer)}")
    print(
        f"\n{'method':>12} {'prefill FLOPs':>14} {'decode FLOPs/tok':>17} {'KV cache':>12} "
        f"{'vision FLOPs':>13} {'tok-layers':>10} {'prefill':>8} {'KV':>8}"
    )
    for method, cost in costs.items():
        r = cost.ratio_to(dense)
        print(
            f"{method:>12} {_human(cost.llm_prefill_flops):>14} {_human(cost.decode_flops_per_token):>17} "
            f"{_gib(cost.kv_cache_bytes):>12} {_human(cost.vision_flops):>13} {r['token_layers']:>10.3f} "
            f"{r['prefill_flops']:>8.3f} {r['kv_cache_bytes']:>8.3f}"
        )
    print("(ratios are relative to dense with the same frames)")
    return 0


def default_model_path():
    """The small model shipped inside the package, if this build has one."""
    from xcomp.errors import ConfigError
    from xcomp.shipped import shipped_model

    try:
        return Path(shipped_model("xcomp_tiny"))
    except ConfigError:
        return None


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer a question about a video: sample frames, QC-Comp selection, LP-Comp generation."""
    from dataclasses import replace

    from xcomp.model.attention import check_attn_implementation
    from xcomp.model.convert import load_config
    from xcomp.pipeline import XCompPipeline
    from xcomp.pipeline_config import load_pipeline_config
    from xcomp.video.decode import load_video

    model_path = args.model or default_model_path()
    if model_path is None:
        raise XCompError("no --model given and this install has no embedded default model")
    config = load_config(model_path)  # cheap: lets a bad video fail before the weights load
    clip, size = config.local_num_frames, config.vision_config.image_size
    if args.frames is not None and (args.frames < clip or args.frames % clip):
        raise XCompError(f"--frames must be a positive multiple of {clip} (the model's clip length)")
    if args.keep is not None and args.keep > 1 and not args.keep.is_integer():
        raise XCompError(f"--keep is a whole number of frames or a fraction <= 1, got {args.keep}")
    sampling, selector = load_pipeline_config(model_path, clip, size)  # the model's own defaults, if it has them
    selector = _set_selector(selector, args.set)
    if args.frames:
        sampling = replace(sampling, min_frames=args.frames, max_frames=args.frames)
    check_attn_implementation(args.attn_implementation)
    video = load_video(args.video, sampling, progress=sys.stderr.isatty(), backend=args.video_backend)
    pipe = XCompPipeline.from_pretrained(
        model_path, sampling=sampling, selector=selector, attn_implementation=args.attn_implementation
    )
    keep = None if args.keep is None else int(args.keep) if args.keep >= 1 else args.keep
    result = pipe.answer(video, args.question, options=args.options, keep=keep, max_new_tokens=args.max_new_tokens)
    _print_answer(result, args.options, args.show_frames)
    return 0


def _print_answer(result, options: list[str] | None, show_frames: bool) -> None:
    from xcomp.model.processing import OPTION_LETTERS

    acc = result.accounting
    print(f"answer: {result.text}")
    if options:
        how = "; the answer names no option, so the most likely one" if result.choice_scored else ""
        print(f"choice: {result.choice} ({options[OPTION_LETTERS.index(result.choice)]}{how})")
    print(f"frames: {len(result.kept_frames)} kept of {result.num_frames} sampled")
    if show_frames:
        shown = ", ".join(f"{i}@{t:.1f}s" for i, t in zip(result.kept_frames, result.kept_timestamps))
        print(f"kept frames: {shown}")
    r = acc["ratio_to_dense"]
    print(
        f"LLM cost vs dense over all {result.num_frames} frames: prefill FLOPs {acc['prefill_flops']:.3g} "
        f"({r['prefill_flops']:.3f}x), KV cache {acc['kv_cache_bytes'] / 2**20:.2f} MiB ({r['kv_cache_bytes']:.3f}x), "
        f"QC scoring FLOPs {acc['scoring_flops']:.3g}"
    )
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in acc["seconds"].items()))


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate one synthetic case, ask the embedded (or given) model about it, print answer vs ground truth."""
    import json

    from xcomp.model.processing import OPTION_LETTERS
    from xcomp.synth.generate import SynthParams, write_suite

    model_path = args.model or default_model_path()
    if model_path is None:
        raise XCompError("no --model given and this install has no embedded default model")
    params = SynthParams(frames=args.frames, size=64, span=2, noise=args.noise)
    jsonl = write_suite(args.outdir, args.family, 1, args.seed, params)
    case = json.loads(jsonl.read_text().splitlines()[0])
    video = jsonl.parent / case["video"]
    print(f"video: {video} ({args.frames} frames, {args.family} question)")
    print(f"question: {case['question']}")
    print("options: " + "  ".join(f"({letter}) {o}" for letter, o in zip(OPTION_LETTERS, case["options"])))
    print(f"truth: {case['answer']} ({case['answer_text']})")
    args.video, args.question, args.options = str(video), case["question"], case["options"]
    args.model, args.max_new_tokens, args.show_frames = str(model_path), 8, True
    if args.keep is None:
        args.keep = float(args.frames)
    return cmd_ask(args)


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a published VideoChat-Flash / XComp folder into an xcomp `save_pretrained` folder."""
    from xcomp.model.convert import load_published

    fields = {"compression": args.compression} if args.compression else {}
    model = load_published(args.src, **fields)
    model.save_pretrained(args.dst)
    print(f"wrote {args.dst} (compression: {model.config.compression})")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from xcomp.synth.command import run

    return run(args)


def cmd_bench(args: argparse.Namespace) -> int:
    """Per-stage time, memory, KV bytes and FLOPs of every compression method, with ratios to dense."""
    from xcomp.bench.compression import run

    return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    """(Re)render reports/NAME from MLflow alone: the latest sweep of +experiment=NAME, or --sweep."""
    from xcomp.reporting.render import render
    from xcomp.reporting.sweep import latest_sweep, report_settings

    experiment = args.experiment or args.name
    sweep = args.sweep or latest_sweep(args.tracking_uri, experiment, args.name)
    settings = {"title": args.name, **report_settings(args.tracking_uri, sweep)}
    if args.rerun_of:
        original = latest_sweep(args.tracking_uri, experiment, args.rerun_of)
        settings.update(rerun_of=args.rerun_of, original=original)
    notebook = args.notebook or settings.get("notebook", "sweep_report")
    parameters = {"tracking_uri": args.tracking_uri, "experiment": experiment, "sweep": sweep,
                  **{k: v for k, v in settings.items() if k not in ("name", "notebook")}}  # fmt: skip
    print(f"report: {render(notebook, args.out or f'reports/{args.name}', parameters)} (sweep {sweep})")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """Counts, breakdown values and missing media of a benchmark copy or a data mixture; 1 on a bad row or missing
    media."""
    from xcomp.data.check import check

    try:
        return check(args.name, args.annotations, args.videos, args.allow_missing)
    except XCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _set_selector(selector, items: list[str]):
    """``selector`` (the model's own) with ``NAME.FIELD=VALUE`` settings: NAME is a registered frame selector, whose
    fields start from ``selector``'s when it is the same one, else from its defaults."""
    from dataclasses import asdict

    from xcomp.compression.selectors import all_selectors
    from xcomp.compression.system import component
    from xcomp.structured import assignments

    settings, selectors = assignments(items, "--set"), all_selectors()
    if len(settings) > 1 or any(name not in selectors for name in settings):
        raise XCompError(f"--set names one frame selector ({', '.join(sorted(selectors))}), got {', '.join(settings)}")
    for name, fields in settings.items():
        base = asdict(selector) if selector.name == name else {}
        if "keep" in fields and "keep_frames" not in fields:
            base.pop("keep_frames", None)  # a fraction given replaces the model's frame count
        selector = component(selectors[name], {**base, **fields}, f"--set {name}")
    return selector


def _add_selector_arguments(parser: argparse.ArgumentParser) -> None:
    """Frame-selector settings shared by `ask` and `demo`."""
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="NAME.FIELD=VALUE",
                        help="frame selector settings over the model's pipeline_config.json, e.g. qc.scorer=global, "
                             "qc.segment_frames=16 qc.shifts=[0] (one pass, 0.48x a dense prefill at 1,024 frames); "
                             "NAME is qc, uniform or all (fields: xcomp.compression.qc_comp.QCComp)")  # fmt: skip


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """How `ask` and `demo` decode and attend: the video backend and the attention kernel."""
    from xcomp.model.attention import ATTN_IMPLEMENTATIONS
    from xcomp.video.decode import BACKENDS

    parser.add_argument("--video-backend", choices=BACKENDS, default="auto",
                        help="video decoder (auto = pyav; decord needs the decord extra)")  # fmt: skip
    parser.add_argument("--attn-implementation", choices=ATTN_IMPLEMENTATIONS, default="sdpa",
                        help="attention kernel (flash_attention_2 needs the gpu extra and a CUDA GPU)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from xcomp.compression.compressors import all_compressors

    methods = sorted(all_compressors())
    parser = argparse.ArgumentParser(prog="xcomp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="model shape and token/FLOP/KV accounting (no weights allocated)")
    info.add_argument("--config", required=True, help="config.json (ours or published) or a model folder")
    info.add_argument("--frames", type=int, default=1024, help="number of frames (default 1024)")
    info.add_argument("--text-tokens", type=int, default=64, help="prompt text tokens (default 64)")
    info.add_argument("--methods", nargs="+", metavar="METHOD",
                      help=f"registered compressors (default: all of {', '.join(methods)})")  # fmt: skip
    info.add_argument("--set", nargs="+", action="extend", default=[], metavar="NAME.FIELD=VALUE",
                      help="a compressor's field, e.g. pre_pool.tokens=8 (default: the class's own)")  # fmt: skip
    info.add_argument("--dtype-bytes", type=int, default=2, help="bytes per KV value (2 = bf16)")
    info.set_defaults(func=cmd_info)

    ask = sub.add_parser("ask", help="answer a question about a video")
    ask.add_argument("video", help="video file (mp4/mkv/webm/avi…) or folder of frame images")
    ask.add_argument("question", help="the question")
    ask.add_argument("--options", nargs="+", help="multiple-choice options (listed as (A), (B), …)")
    ask.add_argument("--model", help="model folder (default: the embedded model)")
    ask.add_argument("--frames", type=int, help="frames to sample (default: the model's pipeline_config.json, "
                     "else 1 fps clamped to [64, 1024])")  # fmt: skip
    ask.add_argument("--keep", type=float, help="frames kept by QC-Comp: a count, or a fraction < 1 (default: the "
                     "model's pipeline_config.json, else 0.25)")  # fmt: skip
    _add_selector_arguments(ask)
    _add_runtime_arguments(ask)
    ask.add_argument("--max-new-tokens", type=int, default=32, help="answer length limit")
    ask.add_argument("--show-frames", action="store_true", help="print the kept frame indices and times")
    ask.set_defaults(func=cmd_ask)

    demo = sub.add_parser("demo", help="generate a synthetic video, ask the embedded model about it")
    demo.add_argument("--family", choices=["needle", "order", "count", "locate"], default="locate",
                      help="question family (the embedded model is best on locate and count)")  # fmt: skip
    demo.add_argument("--seed", type=int, default=0, help="which case to generate")
    demo.add_argument("--frames", type=int, default=32, help="frames in the generated video (all are sampled)")
    demo.add_argument("--noise", type=float, default=0.0, help="distractor level 0-1")
    demo.add_argument("--outdir", default="xcomp_demo", help="where the video is written")
    demo.add_argument("--model", help="model folder (default: the embedded model)")
    demo.add_argument("--keep", type=float,
                      help="frames kept by QC-Comp: a count, or a fraction < 1 (default: all, LP-Comp only)")  # fmt: skip
    _add_selector_arguments(demo)
    _add_runtime_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    report = sub.add_parser("report", help="render reports/NAME from a sweep's MLflow runs")
    report.add_argument("name", help="the experiment (experiments/NAME.yaml); its runs are in MLflow experiment NAME")
    report.add_argument("--sweep", help="the sweep's parent run id (default: the latest sweep of +experiment=NAME)")
    report.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store (default: ./mlflow.db)")
    report.add_argument("--experiment", help="MLflow experiment (default: NAME)")
    report.add_argument("--notebook", help="notebook in notebooks/ (default: the one the sweep rendered with)")
    report.add_argument("--out", help="output folder (default: reports/NAME)")
    report.add_argument("--rerun-of", help="the report this sweep repeats: compare each arm with its latest sweep's "
                        "(default: the one the sweep was started with, if any)")  # fmt: skip
    report.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="benchmark and training files: check a local copy before a sweep or a run")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser(
        "check", help="questions / records, missing media and breakdown counts of a benchmark or a data mixture"
    )
    check.add_argument("name", help="a benchmark (conf/data: lvbench, videomme, …) or training data (conf/train/data: mixture)")
    check.add_argument("--annotations", required=True,
                       help="the benchmark's annotation file or folder (data.annotations), or the mixture YAML")  # fmt: skip
    check.add_argument("--videos", help="the benchmark's video folder (data.videos); for a mixture, train.data.root")
    check.add_argument("--allow-missing", action="store_true", help="exit 0 even when some videos are missing")
    check.set_defaults(func=cmd_data_check)

    conv = sub.add_parser("convert", help="published VideoChat-Flash/XComp checkpoint -> xcomp folder")
    conv.add_argument("src", help="published checkpoint folder (config.json + safetensors)")
    conv.add_argument("dst", help="output folder")
    conv.add_argument("--compression", choices=methods)
    conv.set_defaults(func=cmd_convert)

    from xcomp.synth.command import add_arguments as add_synth_arguments

    synth = sub.add_parser("synth", help="generate the synthetic long-video QA suite (videos + JSONL)")
    add_synth_arguments(synth)
    synth.set_defaults(func=cmd_synth)

    from xcomp.bench.arguments import add_arguments as add_bench_arguments

    bench = sub.add_parser("bench", help="efficiency benchmark: what each compression method buys, per stage")
    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the CLI reports its own errors; library chatter would bury them
    hf_logging.disable_progress_bar()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except XCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
