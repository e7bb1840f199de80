"""Efficiency benchmark: what each compression method buys, stage by stage, at a given model size.

For every frame count, each method answers the same random video and prompt, and every stage of the answer is
timed: video decode, vision encoder + projector, QC-Comp frame scoring, LLM prefill, one decoded token. Peak
working memory, KV-cache bytes and the analytic FLOPs of `xcomp.accounting` sit next to the timings, and every
row is divided by dense, measured and analytic side by side, so an implementation overhead shows up as a gap
between the two.

Rows: dense (16 tokens/frame), pre-LLM pooling (`--pool-tokens`), uniform drop and LP-Comp (both on the cosine
schedule), and LP-Comp + QC-Comp (score all frames, answer from the top `--qc-keep` of them with LP-Comp).

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
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from xcomp.accounting import layer_flops, run_cost, vision_flops
from xcomp.compression.qc_comp import QCCompConfig, default_layers, score_frames, segment_windows
from xcomp.errors import ConfigError, XCompError
from xcomp.model.configuration import XCompConfig
from xcomp.model.modeling import XCompForCausalLM

METHODS = ("dense", "pre_pool", "uniform_drop", "lp_comp", "lp_comp+qc")
"""The default benchmark rows; 'lp_comp+qc' scores all frames with QC-Comp and answers from the kept ones with
LP-Comp. Any registered compressor is a row too (`method_names`)."""


def method_names() -> list[str]:
    """Every row the benchmark can run: the registered compressors, then 'lp_comp+qc'."""
    from xcomp.compression.compressors import all_compressors

    return [*sorted(all_compressors()), "lp_comp+qc"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
REAL_CONFIG = (
    Path(__file__).resolve().parents[3] / "shared/reference/configs/videochat_flash_2b_res448.config.json"
)
"""The published VideoChat-Flash-2B config.json (next to the repository, as the tests expect it)."""
PREFIX_TOKENS = 14
"""Prompt tokens before the video: the chat template's system turn and user header."""
MIB = 2**20


# ----------------------------------------------------------------------------------------------- the model
def bench_config(shape: str, config_path: Path | None = None) -> XCompConfig:
    """The tiny test config with the real 28-layer depth (so it runs the same schedule), or the 2B config."""
    if shape == "tiny":
        return XCompConfig.tiny(num_layers=28)
    from xcomp.model.convert import load_config

    path = config_path or REAL_CONFIG
    if not Path(path).is_file():
        raise ConfigError(f"no config at {path}; pass --config with the published config.json")
    return load_config(path)


@torch.no_grad()
def fill_random_(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Give every parameter cheap, finite values: norms 1, biases 0, matrices a tiled random block.

    `normal_` over 1.8B parameters takes ~30 s on two cores; tiling one 1M-value block is a memcpy.
    """
    block = torch.randn(1 << 20, generator=torch.Generator().manual_seed(seed)).mul_(std)
    for name, param in model.named_parameters():
        if param.dim() == 1:
            param.fill_(1.0 if name.endswith(".weight") else 0.0)
            continue
        flat = param.view(-1)
        src = block.to(param.device, param.dtype)
        full = flat.numel() // src.numel()
        if full:
            flat[: full * src.numel()].view(full, -1).copy_(src)
        flat[full * src.numel() :].copy_(src[: flat.numel() - full * src.numel()])


def build_model(
    config: XCompConfig, device: torch.device, dtype: torch.dtype, attn: str = "sdpa", seed: int = 0
) -> XCompForCausalLM:
    """`XCompForCausalLM` with random weights, allocated directly in `dtype` on `device` without init."""
    from transformers.initialization import no_init_weights

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights(), torch.device(device):
            model = XCompForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.tie_weights()
    fill_random_(model, seed)
    if attn != model.config._attn_implementation:
        model.set_attn_implementation(attn)
    return model.eval()


def method_config(base: XCompConfig, method: str, pool_tokens: int) -> XCompConfig:
    """The config a benchmark row runs with (QC-Comp answers with LP-Comp)."""
    if method == "pre_pool":
        return base.with_compression(compression="pre_pool", pool_tokens_per_frame=pool_tokens)
    return base.with_compression(compression="lp_comp" if method == "lp_comp+qc" else method)


@contextmanager
def compression(model: XCompForCausalLM, config: XCompConfig):
    """Run `model` with another compression setting; weights are shared.

    `run_prefill`, `embed_inputs` and QC-Comp read the compression fields from the model's config at call time,
    and the decoder layers keep their own text config, so swapping the top-level config is all it takes.
    """
    old = model.config
    model.config = model.model.config = config
    try:
        yield model
    finally:
        model.config = model.model.config = old


# ------------------------------------------------------------------------------------- measuring a stage
class _TensorMemory(TorchDispatchMode):
    """Live and peak bytes of the tensor storages that ops create inside the block (CPU peak memory).

    An op output whose storage is not one of the op's inputs' is a new allocation; it is counted until its
    storage is freed (a weakref finalizer on the storage object, which torch keeps alive with the storage).
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if _is_dense(t)}
        for t in tree_flatten(out)[0]:
            if _is_dense(t):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in inputs and key not in self._tracked and storage.nbytes():
                    self._tracked.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out

    def _free(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes


def _is_dense(t) -> bool:
    return isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type != "meta"


class PeakMemory:
    """Peak bytes allocated inside the block above what was allocated on entry."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0
        self._mode = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._mode = _TensorMemory().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._mode.__exit__(*exc)
            self.peak = self._mode.peak


@dataclass
class Stage:
    """One measured stage."""

    seconds: float
    """Median over the timed calls."""
    peak_bytes: int
    """Peak working memory of the first call (see `PeakMemory`)."""


def measure(
    fn: Callable[[], object], device: torch.device, warmup: int, repeats: int
) -> tuple[Stage, object]:
    """Median seconds of `repeats` calls of `fn` after `warmup` calls; memory of the first call; last output."""
    times, out, peak = [], None, 0
    for i in range(warmup + max(repeats, 1)):
        out = None
        with PeakMemory(device) if i == 0 else nullcontext() as memory:
            _sync(device)
            start = time.perf_counter()
            out = fn()
            _sync(device)
            seconds = time.perf_counter() - start
        if i == 0:
            peak = memory.peak
        if i >= warmup:
            times.append(seconds)
    return Stage(statistics.median(times), peak), out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Row:
    """One method at one frame count."""

    method: str
    frames: int
    llm_frames: int
    """Frames whose tokens enter the LLM (QC-Comp keeps a fraction)."""
    video_s: float | None
    """Decoding and resizing `frames` frames from the benchmark video (None: not measured)."""
    vision_s: float
    vision_extrapolated: bool
    qc_s: float | None
    prefill_s: float
    decode_s: float
    """Seconds per decoded token against the prefilled cache."""
    peak_bytes: int
    """Peak working memory (weights excluded) over QC scoring, prefill and decode."""
    kv_bytes: int
    """Measured `XCompCache.nbytes()` after the prefill."""
    tokens_per_layer: list[int]
    """Measured tokens entering each decoder layer."""
    analytic: dict
    """`RunCost` of the LLM prefill over `llm_frames`."""
    qc_flops: float = 0.0
    vision_flops: float = 0.0

    @property
    def ttft_s(self) -> float:
        """Time to first token: video decode + vision + QC scoring + prefill."""
        return (self.video_s or 0.0) + self.vision_s + (self.qc_s or 0.0) + self.prefill_s

    @property
    def total_flops(self) -> float:
        return self.vision_flops + self.qc_flops + self.analytic["llm_prefill_flops"]


@dataclass
class BenchResult:
    """Everything one `xcomp bench` run measured, with the environment it ran in."""

    shape: str
    command: str
    environment: dict
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "shape": self.shape,
            "command": self.command,
            "environment": self.environment,
            "notes": self.notes,
            "rows": [asdict(r) for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: dict) -> BenchResult:
        return cls(
            data["shape"],
            data["command"],
            data["environment"],
            [Row(**r) for r in data["rows"]],
            data["notes"],
        )


# ---------------------------------------------------------------------------------------------- the run
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
        self.configs = {m: method_config(self.base, m, args.pool_tokens) for m in args.methods}
        self.model = build_model(self.base, self.device, self.dtype, args.attn, args.seed)
        self.qc = qc_config(args)
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
        for method in self.configs:
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
            for method in self.configs:
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
        self, method: str, n: int, visual: torch.Tensor, warmup: int | None = None, repeats: int | None = None
    ) -> Row:
        """QC scoring (lp_comp+qc only), prefill and decode of one method over `n` frames."""
        config = self.configs[method]
        T = self.base.tokens_per_frame
        qc, qc_flops, kept = None, 0.0, n
        with compression(self.model, config) as model:
            features, visual = visual, model.model.project(visual, [n])[0]
            saliency = model.model.saliency(features, [n])
            llm_visual = visual
            if method == "lp_comp+qc":
                kept = self.qc.num_kept(n)

                def select():
                    scores = score_frames(model, self.prefix, self.question, visual, self.qc)
                    frames = scores.top_k(kept).to(visual.device)
                    return scores, visual.view(n, T, -1)[frames].flatten(0, 1)

                qc, (scores, llm_visual) = self._measure(select, warmup, repeats)
                qc_flops = scoring_flops(config, scores.windows, scores.tokens_per_layer)

            def prefill():
                return model(
                    input_ids=self.input_ids, visual_embeds=[llm_visual], visual_saliency=saliency, use_cache=True,
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
            method=method,
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


def expected_scoring_flops(config: XCompConfig, num_frames: int, qc: QCCompConfig, text_tokens: int) -> float:
    """`scoring_flops` predicted from the settings alone: every window holds the text and `segment_frames`
    frames, which shrink per `config`'s schedule, and runs the layers below the last scored one."""
    last = max(qc.layers if qc.layers is not None else default_layers(config.num_layers))
    if qc.scorer == "local":
        width = min(qc.segment_frames, num_frames)
        windows = len(segment_windows(num_frames, qc.segment_frames, qc.pass_offsets))
    else:
        width, windows = num_frames, 1
    kept = config.compression_schedule().kept
    return windows * sum(layer_flops(config, text_tokens + width * kept[i]) for i in range(last))


def qc_config(args: argparse.Namespace) -> QCCompConfig:
    return QCCompConfig(keep_ratio=args.qc_keep, segment_frames=args.qc_segment_frames, shifts=args.qc_shifts)


def analytic_table(base: XCompConfig, args: argparse.Namespace) -> str:
    """Expected ratios to dense from `xcomp.accounting` alone (no model is built), for any frame count."""
    qc = qc_config(args)
    dtype_bytes = DTYPES[args.dtype].itemsize
    header = ("frames", "method", "LLM frames", "token-layers", "prefill FLOPs", "KV bytes", "decode FLOPs/tok",
              "QC ÷ dense prefill", "vision+QC+prefill FLOPs")  # fmt: skip
    rows = []
    for n in args.frames:
        dense = run_cost(method_config(base, "dense", args.pool_tokens), n, args.text_tokens, dtype_bytes)
        for method in args.methods:
            config = method_config(base, method, args.pool_tokens)
            kept = qc.num_kept(n) if method == "lp_comp+qc" else n
            cost = run_cost(config, kept, args.text_tokens, dtype_bytes)
            qc_flops = expected_scoring_flops(config, n, qc, args.text_tokens) if kept < n else 0.0
            r = cost.ratio_to(dense)
            total = (dense.vision_flops + qc_flops + cost.llm_prefill_flops) / (
                dense.vision_flops + dense.llm_prefill_flops
            )
            cells = [r["token_layers"], r["prefill_flops"], r["kv_cache_bytes"], r["decode_flops"]]
            rows.append([str(n), method, str(kept)] + [f"{x:.3f}" for x in cells])
            rows[-1] += [f"{qc_flops / dense.llm_prefill_flops:.3f}" if kept < n else "n/a", f"{total:.3f}"]
    return _markdown(header, rows)


def _synthetic_video() -> Path:
    """The 10-minute 720p H.264 video of the decode benchmark (generated once, cached in the temp dir)."""
    from xcomp.bench.decode import make_long_video

    return make_long_video(minutes=10, gop=50)


# ------------------------------------------------------------------------------------------ environment
def environment(args: argparse.Namespace, model: XCompForCausalLM) -> dict:
    """Device, versions and model size, recorded with every table."""
    import transformers

    device = torch.device(args.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        hardware = f"{name}, CUDA {torch.version.cuda}"
    else:
        hardware = f"CPU {_cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    params = sum(p.numel() for p in model.parameters())
    return {
        "device": hardware,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git": _git_revision(),
        "dtype": args.dtype,
        "attention": model.config._attn_implementation,
        "parameters": params,
        "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "load_average_start": _load_average(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str:
    root = Path(__file__).resolve().parents[3]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if rev.returncode:
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------- tables
MEASURED_COLUMNS = (
    "frames", "method", "LLM frames", "video dec s", "vision s", "QC s", "prefill s", "decode ms/tok",
    "TTFT s", "peak MiB", "KV MiB", "prefill TFLOP", "QC TFLOP", "vision TFLOP",
)  # fmt: skip
RATIO_COLUMNS = (
    "frames", "method", "token-layers", "prefill", "KV bytes", "decode/tok", "peak mem", "TTFT",
    "QC ÷ dense prefill",
)  # fmt: skip


def _s(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pair(measured: float | None, analytic: float | None) -> str:
    """'measured / analytic' ratio cell."""
    left = "n/a" if measured is None else f"{measured:.3f}"
    return left if analytic is None else f"{left} / {analytic:.3f}"


def _markdown(header: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ratios(row: Row, dense: Row) -> dict[str, tuple[float | None, float | None]]:
    """Each column of `RATIO_COLUMNS` as (measured, analytic) relative to dense at the same frame count."""
    a, d = row.analytic, dense.analytic
    qc = (
        (row.qc_s / dense.prefill_s, row.qc_flops / d["llm_prefill_flops"])
        if row.qc_s is not None
        else (None, None)
    )
    return {
        "token-layers": (
            sum(row.tokens_per_layer) / sum(dense.tokens_per_layer),
            sum(a["tokens_per_layer"]) / sum(d["tokens_per_layer"]),
        ),
        "prefill": (row.prefill_s / dense.prefill_s, a["llm_prefill_flops"] / d["llm_prefill_flops"]),
        "KV bytes": (row.kv_bytes / dense.kv_bytes, a["kv_cache_bytes"] / d["kv_cache_bytes"]),
        "decode/tok": (
            row.decode_s / dense.decode_s,
            a["decode_flops_per_token"] / d["decode_flops_per_token"],
        ),
        "peak mem": (row.peak_bytes / dense.peak_bytes if dense.peak_bytes else None, None),
        "TTFT": (row.ttft_s / dense.ttft_s, row.total_flops / dense.total_flops),
        "QC ÷ dense prefill": qc,
    }


def format_result(result: BenchResult) -> str:
    """The run as markdown: environment, measured table, ratio table, target checks, notes."""
    env = result.environment
    dense = {r.frames: r for r in result.rows if r.method == "dense"}
    measured_rows, ratio_rows = [], []
    for r in result.rows:
        a = r.analytic
        measured_rows.append([
            str(r.frames), r.method, str(r.llm_frames), _s(r.video_s), _s(r.vision_s) + ("*" if r.vision_extrapolated else ""),
            _s(r.qc_s), _s(r.prefill_s, 3), _s(r.decode_s * 1e3, 1), _s(r.ttft_s), f"{r.peak_bytes / MIB:.1f}",
            f"{r.kv_bytes / MIB:.2f}", f"{a['llm_prefill_flops'] / 1e12:.3g}", f"{r.qc_flops / 1e12:.3g}",
            f"{r.vision_flops / 1e12:.3g}",
        ])  # fmt: skip
        cells = ratios(r, dense[r.frames])
        ratio_rows.append([str(r.frames), r.method] + [_pair(*cells[c]) for c in RATIO_COLUMNS[2:]])
    lines = [
        f"command: `{result.command}`",
        "",
        f"- device: {env['device']}; dtype {env['dtype']}, attention {env['attention']}",
        f"- versions: python {env['python']}, torch {env['torch']}, transformers {env['transformers']}, "
        f"xcomp git {env['git']}",
        f"- model: {env['parameters'] / 1e6:,.1f}M parameters, {env['weight_bytes'] / 2**30:.2f} GiB of weights; "
        f"run {env['date']}, load average {_s(env['load_average_start'])} at start, "
        f"{_s(env.get('load_average_end'))} at end; peak RSS {_s((env.get('peak_rss_bytes') or 0) / 2**30)} GiB",
        "",
        "Measured (seconds are medians; `*` = extrapolated from the frames actually encoded, see notes):",
        "",
        _markdown(MEASURED_COLUMNS, measured_rows),
        "",
        "Ratio to dense at the same frame count, `measured / analytic` (analytic: FLOPs or bytes from "
        "`xcomp.accounting`; TTFT analytic = vision + QC + prefill FLOPs):",
        "",
        _markdown(RATIO_COLUMNS, ratio_rows),
        "",
    ]
    lines += [f"- {line}" for line in target_checks(result) + result.notes]
    return "\n".join(lines) + "\n"


def target_checks(result: BenchResult) -> list[str]:
    """The issue's two speed targets, checked wherever this run measured them."""
    dense = {r.frames: r for r in result.rows if r.method == "dense"}
    out = []
    for r in result.rows:
        if r.method == "lp_comp" and r.frames >= 1024:
            ratio = r.prefill_s / dense[r.frames].prefill_s
            out.append(
                f"target LP-Comp prefill ≤ 0.60× dense at {r.frames} frames: {ratio:.3f} "
                f"({'met' if ratio <= 0.60 else 'NOT met'}; {result.shape} shape)"
            )
        if r.method == "lp_comp+qc":
            ratio = r.qc_s / dense[r.frames].prefill_s
            analytic = r.qc_flops / dense[r.frames].analytic["llm_prefill_flops"]
            out.append(
                f"target QC scoring ≤ 0.5× one dense prefill at {r.frames} frames: {ratio:.3f} measured, "
                f"{analytic:.3f} analytic ({'met' if ratio <= 0.5 else 'NOT met'})"
            )
    return out


# ------------------------------------------------------------------------------------------------ plot
def plot(results: list[BenchResult], path: Path) -> None:
    """Seconds and memory vs frames per method; runs of the same shape, device and dtype share a row of panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[Row]] = {}
    for result in results:
        env = result.environment
        key = f"{result.shape} shape, {env['device'].split(',')[0]}, {env['dtype']}"
        panels.setdefault(key, []).extend(result.rows)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4.2 * len(panels)), squeeze=False)
    for (ax_time, ax_mem), (title, rows) in zip(axes, panels.items()):
        rows = sorted(rows, key=lambda r: r.frames)
        for i, method in enumerate(m for m in method_names() if any(r.method == m for r in rows)):
            mine = [r for r in rows if r.method == method]
            x = [r.frames for r in mine]
            ax_time.plot(x, [r.prefill_s + (r.qc_s or 0.0) for r in mine], "o-", color=f"C{i}", label=method)
            ax_mem.plot(x, [r.peak_bytes / MIB for r in mine], "o-", color=f"C{i}", label=method)
            ax_mem.plot(x, [r.kv_bytes / MIB for r in mine], "s--", color=f"C{i}", alpha=0.6)
        dense = [r for r in rows if r.method == "dense"]
        front = [(r.video_s or 0.0) + r.vision_s for r in dense]
        ax_time.plot(
            [r.frames for r in dense], front, "k--", alpha=0.5, label="video decode + vision (all rows)"
        )
        ax_time.set(xscale="log", yscale="log", xlabel="frames", ylabel="seconds",
                    title=f"{title}\nLLM time: QC scoring + prefill")  # fmt: skip
        ax_mem.set(xscale="log", yscale="log", xlabel="frames", ylabel="MiB",
                   title=f"{title}\npeak working memory (solid), KV cache (dashed)")  # fmt: skip
        for ax in (ax_time, ax_mem):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------- CLI
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
        choices=method_names(),
        default=list(METHODS),
        metavar="METHOD",
        help=f"rows to run, of {', '.join(method_names())} (default: {' '.join(METHODS)}; dense is always run: "
        "every ratio is to dense)",
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
        "--pool-tokens",
        type=int,
        default=8,
        help="tokens/frame left by pre-LLM pooling (8: about LP-Comp's mean of 8.8 per layer)",
    )
    parser.add_argument("--qc-keep", type=float, default=0.25, help="fraction of frames QC-Comp keeps")
    parser.add_argument("--qc-segment-frames", type=int, default=QCCompConfig.segment_frames,
                        help="frames per QC-Comp scoring window")  # fmt: skip
    parser.add_argument("--qc-shifts", type=int, nargs="+", default=None,
                        help="window offsets of the QC-Comp scoring passes (default: the QCCompConfig default)")  # fmt: skip
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


def _resolve_defaults(args: argparse.Namespace) -> None:
    slow = args.shape == "real" and torch.device(args.device).type == "cpu"
    if args.warmup is None:
        args.warmup = 0 if slow else 1
    if args.repeats is None:
        args.repeats = 1 if slow else 3
    if "dense" not in args.methods:
        args.methods = ["dense", *args.methods]
    args.methods = [m for m in method_names() if m in args.methods]
    if args.text_tokens <= PREFIX_TOKENS:
        raise ConfigError(f"--text-tokens must exceed the {PREFIX_TOKENS} tokens before the video")


def command_line(args: argparse.Namespace) -> str:
    """The full command with every option spelled out (defaults resolved), to rerun the table exactly."""
    parts = ["xcomp", "bench", "--shape", args.shape, "--frames", *map(str, args.frames)]
    parts += ["--methods", *args.methods, "--device", args.device, "--dtype", args.dtype, "--attn", args.attn]
    for flag in (
        "text_tokens",
        "pool_tokens",
        "qc_keep",
        "qc_segment_frames",
        "warmup",
        "repeats",
        "decode_tokens",
        "vision_batch",
    ):
        parts += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    for flag in ("config", "vision_frames", "video", "threads"):
        if getattr(args, flag) is not None:
            parts += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if args.qc_shifts is not None:
        parts += ["--qc-shifts", *map(str, args.qc_shifts)]
    for flag in ("skip_video", "analytic"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed `args`, print the tables, write the requested files."""
    _resolve_defaults(args)
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
    result.environment["load_average_end"] = _load_average()
    result.environment["peak_rss_bytes"] = _peak_rss_bytes()
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
    notes.append(
        f"prompt: {args.text_tokens} text tokens ({PREFIX_TOKENS} before the video); pre_pool keeps "
        f"{args.pool_tokens} tokens/frame; QC-Comp keeps {args.qc_keep:.0%} of frames "
        f"({bench.qc.segment_frames}-frame windows, shifts {bench.qc.pass_offsets})"
    )
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xcomp bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
