"""Efficiency benchmark: what each compression method buys, stage by stage, at a given model size.

For every frame count, each method answers the same random video and prompt, and every stage of the answer is
timed: video decode, vision encoder + projector, QC-Comp frame scoring, LLM prefill, one decoded token. Peak
working memory, KV-cache bytes and the analytic FLOPs of `xcomp.accounting` sit next to the timings, and every
row is divided by dense, measured and analytic side by side, so an implementation overhead shows up as a gap
between the two.

Rows: every registered compressor (dense 16 tokens/frame, pre-LLM pooling to `pre_pool.tokens`, the in-LLM methods
on the cosine schedule, the video baselines at LP-Comp's budget), and LP-Comp + QC-Comp (score all frames, answer
from the top `qc.keep` of them with LP-Comp); any ``COMPRESSOR+SELECTOR`` row answers from the frames a registered
`FrameSelector` keeps. `--set NAME.FIELD=VALUE` sets a compressor's or selector's field.

Weights are random (timings do not depend on their values) and built without initialisation, so the 2B shape is
ready in seconds. Video decode and the vision tower do not depend on the method (every method encodes every
frame); they are measured once per frame count. On CPU the real vision tower costs ~0.7 TFLOP per frame, so
only `--vision-frames` frames are encoded and the rest is extrapolated linearly (clips are independent).

Protocol per stage: `--warmup` untimed calls, then `--repeats` timed calls, median reported. Peak memory is
recorded on the first call (a warm-up call when there is one): on CUDA `max_memory_allocated`, on CPU the peak
of live tensor storages created by the stage (a dispatch-mode tracker; kernel-internal scratch is not seen).
Before anything is measured, every method runs once on a short clip, so thread pools, kernel selection and
first-touch page faults of the weights are not charged to the first row.

Run: ``xcomp bench --shape tiny`` or ``xcomp bench --shape real --frames 64 256 --device cpu``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from xcomp.accounting import layer_flops, run_cost, vision_flops
from xcomp.bench.arguments import PREFIX_TOKENS, add_arguments, command_line, resolve_defaults
from xcomp.bench.environment import environment, load_average, peak_rss_bytes
from xcomp.bench.measure import MIB, Stage, measure
from xcomp.bench.models import DTYPES, bench_config, build_model, compression
from xcomp.bench.results import BenchResult, Row, format_result, markdown, plot
from xcomp.compression.qc_comp import QCComp, default_layers, segment_windows
from xcomp.compression.selectors import FrameSelector
from xcomp.compression.system import System, systems
from xcomp.errors import ConfigError, XCompError
from xcomp.model.configuration import XCompConfig


class Bench:
    """Measures every method at one frame count after another on one model."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device(args.device)
        self.dtype = DTYPES[args.dtype]
        self.base = bench_config(args.shape, args.config)
        clip = self.base.local_num_frames
        bad = [n for n in args.frames if n < 2 * clip or n % clip]
        if bad:
            raise ConfigError(
                f"frame counts must be multiples of the clip length {clip} and >= {2 * clip}: {bad}"
            )
        self.methods = systems(args.methods, args.set)
        self.configs = {name: system.config(self.base) for name, system in self.methods.items()}
        self.model = build_model(self.base, self.device, self.dtype, args.attn, args.seed)
        self.generator = torch.Generator().manual_seed(args.seed)
        vocab = self.base.text_config.vocab_size
        text = torch.randint(
            0, min(vocab, self.base.video_token_id), (args.text_tokens,), generator=self.generator
        )
        self.prefix, self.question = (
            text[:PREFIX_TOKENS].to(self.device),
            text[PREFIX_TOKENS:].to(self.device),
        )
        video = torch.tensor([self.base.video_token_id], device=self.device)
        self.input_ids = torch.cat([self.prefix, video, self.question])[None]
        self._vision: dict[int, tuple[Stage, int]] = {}

    def _measure(self, fn, warmup: int | None = None, repeats: int | None = None) -> tuple[Stage, object]:
        warmup = self.args.warmup if warmup is None else warmup
        return measure(fn, self.device, warmup, self.args.repeats if repeats is None else repeats)

    @torch.inference_mode()
    def warm_up(self) -> None:
        """One short answer per method, and one clip through the vision tower unless `--warmup 0` (a real-shape
        clip costs seconds on CPU): first-call costs are not charged to the first measured row."""
        n = 2 * self.base.local_num_frames
        visual = self._visual(n)
        for method in self.methods.values():
            self._answer(method, n, visual, warmup=0, repeats=1)
        if self.args.warmup == 0:
            return
        v, clip = self.base.vision_config, self.base.local_num_frames
        pixels = torch.randn(clip, 3, v.image_size, v.image_size, generator=self.generator)
        self.model.model.encode_video(pixels.to(self.device, self.dtype), [clip])

    def _visual(self, n: int) -> torch.Tensor:
        """Stand-ins for the merged tower tokens of `n` frames, before the projector (values do not matter for
        timing; the projector and each method's pre-LLM step run on them)."""
        shape = (n * self.base.tokens_per_frame, self.base.vision_config.hidden_size)
        return torch.randn(shape, generator=self.generator).to(self.device, self.dtype)

    @torch.inference_mode()
    def run(self, frame_counts: list[int]) -> list[Row]:
        rows = []
        for n in frame_counts:
            video_s = self._measure_video_decode(n)
            vision, measured = self._measure_vision(min(n, self._vision_frames(n)))
            visual = self._visual(n)
            for method in self.methods.values():
                row = self._answer(method, n, visual)
                row.video_s = video_s
                row.vision_s = vision.seconds * n / measured
                row.vision_extrapolated = measured < n
                row.vision_flops = vision_flops(self.base, n)
                rows.append(row)
                self._progress(row)
            del visual
        return rows

    def _progress(self, row: Row) -> None:
        qc = f", QC {row.qc_s:.2f}s" if row.qc_s is not None else ""
        print(
            f"  {row.frames} frames {row.method}: prefill {row.prefill_s:.3f}s{qc}",
            file=sys.stderr,
            flush=True,
        )

    def _vision_frames(self, n: int) -> int:
        if self.args.vision_frames is not None:
            return self.args.vision_frames
        if self.args.shape == "real" and self.device.type == "cpu":
            return self.base.local_num_frames
        return n

    def _measure_vision(self, frames: int) -> tuple[Stage, int]:
        """Vision tower + projector over `frames` random frames, `--vision-batch` frames per call (memoised)."""
        clip = self.base.local_num_frames
        frames = max(frames // clip, 1) * clip
        if frames not in self._vision:
            v = self.base.vision_config
            pixels = torch.randn(frames, 3, v.image_size, v.image_size, generator=self.generator)
            pixels = pixels.to(self.device, self.dtype)
            batch = max(self.args.vision_batch // clip, 1) * clip

            def encode():
                return [
                    self.model.model.encode_video(pixels[i : i + batch], [len(pixels[i : i + batch])])
                    for i in range(0, frames, batch)
                ]

            self._vision[frames] = (self._measure(encode)[0], frames)
        return self._vision[frames]

    def _measure_video_decode(self, n: int) -> float | None:
        """Seconds to decode and resize `n` frames sampled from the benchmark video (one call; None if skipped)."""
        if self.args.skip_video:
            return None
        from xcomp.video.decode import load_video
        from xcomp.video.sampling import FrameSamplingConfig

        path = self.args.video or _synthetic_video()
        size = self.base.vision_config.image_size
        clip = self.base.local_num_frames
        sampling = FrameSamplingConfig(min_frames=n, max_frames=n, multiple_of=clip, size=size)
        start = time.perf_counter()
        load_video(path, sampling, num_frames=n)
        return time.perf_counter() - start

    def _answer(
        self, method: System, n: int, visual: torch.Tensor, warmup: int | None = None, repeats: int | None = None
    ) -> Row:
        """Frame selection (a row with a selector), prefill and decode of one method over `n` frames."""
        config, selector = self.configs[method.name], method.selector
        qc, qc_flops, kept = None, 0.0, n
        with compression(self.model, config) as model:
            features, visual = visual, model.model.project(visual, [n])[0]
            saliency = model.model.saliency(features, [n])
            llm_visual, llm_saliency = visual, saliency
            if selector is not None:
                kept = selector.num_kept(n)

                def select():
                    frames, scores = selector.select(model, self.prefix, self.question, visual, n, kept)
                    return frames.to(visual.device), scores

                qc, (frames, scores) = self._measure(select, warmup, repeats)
                llm_visual = visual.view(n, -1, visual.shape[-1])[frames].flatten(0, 1)
                if saliency is not None:
                    llm_saliency = [s.view(n, -1)[frames].flatten() for s in saliency]
                if scores is not None:
                    qc_flops = scoring_flops(config, scores.windows, scores.tokens_per_layer)

            def prefill():
                return model(
                    input_ids=self.input_ids, visual_embeds=[llm_visual], visual_saliency=llm_saliency, use_cache=True,
                    logits_to_keep=1,
                )  # fmt: skip

            prefill_stage, out = self._measure(prefill, warmup, repeats)
            cache = out.cache
            kv_bytes = cache.nbytes()
            token = out.logits[:, -1:].argmax(dim=-1)

            def decode():
                return model(input_ids=token, cache=cache, logits_to_keep=1)

            decode_stage, _ = self._measure(decode, warmup=1, repeats=self.args.decode_tokens)
        cost = run_cost(config, kept, self.args.text_tokens, self.dtype.itemsize)
        peaks = [prefill_stage.peak_bytes, decode_stage.peak_bytes] + ([qc.peak_bytes] if qc else [])
        return Row(
            method=method.name,
            frames=n,
            llm_frames=kept,
            video_s=None,
            vision_s=0.0,
            vision_extrapolated=False,
            qc_s=qc.seconds if qc else None,
            prefill_s=prefill_stage.seconds,
            decode_s=decode_stage.seconds,
            peak_bytes=max(peaks),
            kv_bytes=kv_bytes,
            tokens_per_layer=out.tokens_per_layer[:-1, 0].tolist(),
            analytic=asdict(cost),
            qc_flops=qc_flops,
        )


def scoring_flops(config: XCompConfig, windows: int, tokens_per_layer: list[int]) -> float:
    """Analytic FLOPs of QC-Comp scoring: every window runs the layers below the last scored one.

    The last entry of `tokens_per_layer` is the probed layer, which is not run; the probes themselves (the
    question rows' q·k of a few layers) are ignored, like norms and softmax in `xcomp.accounting`.
    """
    return windows * sum(layer_flops(config, n // windows) for n in tokens_per_layer[:-1])


def expected_scoring_flops(config: XCompConfig, num_frames: int, selector: FrameSelector, text_tokens: int) -> float:
    """`scoring_flops` predicted from the settings alone: QC-Comp's windows each hold the text and
    `segment_frames` frames, which shrink per `config`'s schedule, and run the layers below the last scored one;
    other selectors score nothing."""
    if not isinstance(selector, QCComp):
        return 0.0
    qc = selector
    last = max(qc.layers if qc.layers is not None else default_layers(config.num_layers))
    if qc.scorer == "local":
        width = min(qc.segment_frames, num_frames)
        windows = len(segment_windows(num_frames, qc.segment_frames, qc.pass_offsets))
    else:
        width, windows = num_frames, 1
    kept = config.compression_schedule().kept
    return windows * sum(layer_flops(config, text_tokens + width * kept[i]) for i in range(last))


def analytic_table(base: XCompConfig, args: argparse.Namespace) -> str:
    """Expected ratios to dense from `xcomp.accounting` alone (no model is built), for any frame count."""
    rows_of = systems(args.methods, args.set)
    dtype_bytes = DTYPES[args.dtype].itemsize
    header = ("frames", "method", "LLM frames", "token-layers", "prefill FLOPs", "KV bytes", "decode FLOPs/tok",
              "QC ÷ dense prefill", "vision+QC+prefill FLOPs")  # fmt: skip
    rows = []
    for n in args.frames:
        dense = run_cost(rows_of["dense"].config(base), n, args.text_tokens, dtype_bytes)
        for method, row in rows_of.items():
            config, selector = row.config(base), row.selector
            kept = row.num_kept(n)
            cost = run_cost(config, kept, args.text_tokens, dtype_bytes)
            qc_flops = expected_scoring_flops(config, n, selector, args.text_tokens) if kept < n else 0.0
            r = cost.ratio_to(dense)
            total = (dense.vision_flops + qc_flops + cost.llm_prefill_flops) / (
                dense.vision_flops + dense.llm_prefill_flops
            )
            cells = [r["token_layers"], r["prefill_flops"], r["kv_cache_bytes"], r["decode_flops"]]
            rows.append([str(n), method, str(kept)] + [f"{x:.3f}" for x in cells])
            rows[-1] += [f"{qc_flops / dense.llm_prefill_flops:.3f}" if kept < n else "n/a", f"{total:.3f}"]
    return markdown(header, rows)


def _synthetic_video() -> Path:
    """The 10-minute 720p H.264 video of the decode benchmark (generated once, cached in the temp dir)."""
    from xcomp.bench.decode import make_long_video

    return make_long_video(minutes=10, gop=50)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed `args`, print the tables, write the requested files."""
    resolve_defaults(args)
    if args.analytic:
        text = analytic_table(bench_config(args.shape, args.config), args)
        print(f"analytic ratios to dense at the same frame count (`{command_line(args)}`):\n\n{text}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise XCompError("--device cuda requested but CUDA is not available")
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    bench = Bench(args)
    result = BenchResult(args.shape, command_line(args), environment(args, bench.model))
    print(f"built the {args.shape} model in {time.perf_counter() - start:.1f}s; warming up", file=sys.stderr)
    bench.warm_up()
    result.rows = bench.run(args.frames)
    result.environment["load_average_end"] = load_average()
    result.environment["peak_rss_bytes"] = peak_rss_bytes()
    result.environment["seconds"] = time.perf_counter() - start
    result.notes = _notes(bench, result)
    text = f"## `{args.shape}` shape\n\n" + format_result(result)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=1))
    if args.plot:
        extra = [BenchResult.from_json(json.loads(p.read_text())) for p in args.plot_also]
        plot([*extra, result], args.plot)
    return 0


def _notes(bench: Bench, result: BenchResult) -> list[str]:
    args = bench.args
    notes = []
    mismatched = [
        f"{r.method}@{r.frames}" for r in result.rows if r.tokens_per_layer != r.analytic["tokens_per_layer"]
    ]
    notes.append(
        "measured tokens entering each layer equal the analytic schedule for every row"
        if not mismatched
        else f"measured tokens per layer differ from the analytic schedule for {', '.join(mismatched)}"
    )
    kv_off = [f"{r.method}@{r.frames}" for r in result.rows if r.kv_bytes != r.analytic["kv_cache_bytes"]]
    notes.append(
        "measured KV-cache bytes equal the analytic ones for every row"
        if not kv_off
        else f"measured KV-cache bytes differ from the analytic ones for {', '.join(kv_off)}"
    )
    for frames, (stage, measured) in sorted(bench._vision.items()):
        if frames >= bench.base.local_num_frames * 2 or len(bench._vision) == 1:
            notes.append(
                f"vision: {measured} frames encoded, {stage.seconds / measured:.3g} s/frame, "
                f"peak working memory {stage.peak_bytes / MIB:.0f} MiB per {min(measured, args.vision_batch)}-frame call"
            )
    if any(r.vision_extrapolated for r in result.rows):
        notes.append(
            "`*` vision seconds = measured seconds per frame × frames (clips are encoded independently)"
        )
    notes.append(
        f"protocol: warm-up {args.warmup}, repeats {args.repeats} (median), decode: median of "
        f"{args.decode_tokens} tokens after 1 warm-up token; memory from each stage's first call; video decode "
        "one call; every method ran once on a short clip before measuring"
    )
    settings = "; ".join(f"{m.name} = {m}" for m in bench.methods.values())
    notes.append(f"prompt: {args.text_tokens} text tokens ({PREFIX_TOKENS} before the video); rows: {settings}")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xcomp bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
