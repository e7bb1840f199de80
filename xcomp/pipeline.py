"""`XCompPipeline`: answer a question about a video with QC-Comp frame selection and LP-Comp.

One call decodes and samples the video, encodes every frame once with the vision tower, scores the frames
against the question with the LLM's own attention (QC-Comp), keeps the top frames in temporal order, and
generates the answer from only those frames' visual tokens (with the model's configured compression, LP-Comp
for an XComp model). The answer carries the kept frames, their scores and the cost of the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from xcomp.accounting import layer_flops, run_cost, vision_flops
from xcomp.compression.compressors import compressor_for
from xcomp.compression.qc_comp import FrameScores, split_prompt
from xcomp.compression.selectors import FrameSelector
from xcomp.errors import PromptTooLongError, XCompError
from xcomp.evaluation.features import FeatureCache, vision_settings
from xcomp.model.cache import XCompCache
from xcomp.model.modeling import IGNORE_INDEX, XCompForCausalLM
from xcomp.model.processing import ANSWER_PARSERS, OPTION_LETTERS, PromptConfig, XCompProcessor, build_prompt
from xcomp.pipeline_config import load_pipeline_config, reference_defaults, save_pipeline_config
from xcomp.video.decode import Video, load_video
from xcomp.video.sampling import FrameSamplingConfig


@dataclass
class Encoded:
    """A video's visual tokens, computed once and shared by its questions (`XCompPipeline.encode`)."""

    visual: torch.Tensor
    """[N * visual_tokens_per_frame, D] LLM tokens of the N sampled frames."""
    frames: int
    """Frames the vision tower takes for them (N padded to whole clips): its analytic cost."""
    seconds: float
    """Time it took (reading the feature cache, or running the tower)."""
    reported: bool = False
    """Whether an answer has counted `seconds` as its own (the first question of the video does)."""
    saliency: torch.Tensor | None = None
    """[N * visual_tokens_per_frame] each token's tower saliency, for a compressor that reads it."""
    prefixes: dict = field(default_factory=dict)
    """K/V of the prompt before the question over every frame, by prefix ids (`prefix_cache`)."""
    scoring: dict = field(default_factory=dict)
    """What the frame selector keeps for the video's other questions (QC-Comp: its windows' K/V)."""

    def prefix_cache(self, model: XCompForCausalLM, prefix_ids: torch.Tensor) -> XCompCache:
        """The video's prefill before the question (`XCompForCausalLM.prefill_prefix`), computed once."""
        key = tuple(prefix_ids.tolist())
        if key not in self.prefixes:
            self.prefixes[key] = model.prefill_prefix(prefix_ids, self.visual, self.saliency)
        return self.prefixes[key]

    def claim_seconds(self) -> float:
        """`seconds` the first time, then 0: the questions sharing the tokens share their cost."""
        first, self.reported = not self.reported, True
        return self.seconds if first else 0.0


@dataclass
class Answer:
    """What `XCompPipeline.answer` returns."""

    text: str
    """The generated answer."""
    choice: str | None
    """For multiple-choice questions, the option letter the answer picks; when the text names no option (a model
    that answers in words, e.g. "yellow triangle" among "yellow cross" and "white triangle") and the pipeline
    scores options, the option whose text the model finds most likely as its answer (see `choice_scored`), else
    None. None without options."""
    choice_scored: bool
    """Whether `choice` came from scoring the options rather than from the generated text."""
    unparsed: bool
    """Whether the generated text named no option (by the pipeline's `answer_rule`)."""
    kept_frames: list[int]
    """Indices (into the sampled frames) of the frames the answer was generated from, in temporal order."""
    kept_timestamps: list[float]
    """Seconds from the start of the video of the kept frames."""
    num_frames: int
    """Frames sampled from the video (and scored)."""
    scores: FrameScores | None
    """Per-frame QC-Comp scores; None when every frame was kept (no scoring ran)."""
    accounting: dict = field(default_factory=dict)
    """Analytic cost of this run vs dense over all frames, and measured seconds per stage (see `answer`)."""


class XCompPipeline:
    """Video question answering with an `XCompForCausalLM` and its `XCompProcessor`."""

    def __init__(
        self,
        model: XCompForCausalLM,
        processor: XCompProcessor,
        sampling: FrameSamplingConfig | None = None,
        selector: FrameSelector | None = None,
        prompt: PromptConfig | None = None,
        vision_batch: int = 64,
        answer_rule: str = "lenient",
        score_options: bool = True,
        feature_cache: FeatureCache | None = None,
    ):
        """
        Args:
            sampling: how frames are sampled from a video file; default: `reference_defaults` (1 fps clamped
                to [64, 1024] frames). `from_pretrained` uses the model folder's pipeline_config.json instead.
            selector: which frames to answer from and how many (`xcomp.compression.selectors`); default:
                `reference_defaults` (QC-Comp keeping 25 %). `from_pretrained` uses the folder's pipeline_config.json.
            prompt: system message and time message of the prompt.
            vision_batch: frames per vision-tower call (rounded to whole clips); bounds activation memory.
            answer_rule: how the reply's option letter is read (`xcomp.model.processing.ANSWER_PARSERS`).
            score_options: when the reply names no option, take the option the model finds most likely.
            feature_cache: where the vision tower's merged tokens of video files are kept across questions, arms
                and jobs (`xcomp.evaluation.features`); None: computed every time.
        """
        if answer_rule not in ANSWER_PARSERS:
            raise XCompError(f"answer_rule must be one of {', '.join(ANSWER_PARSERS)}, got {answer_rule!r}")
        self.answer_rule, self.score_options = answer_rule, score_options
        self.feature_cache = feature_cache
        self.model = model.eval()
        self.processor = processor
        clip = model.config.local_num_frames
        reference_sampling, reference_selector = reference_defaults(clip, processor.image_size)
        self.sampling = sampling or reference_sampling
        self.selector = selector or reference_selector
        self.prompt = prompt or PromptConfig()
        self.vision_batch = max(vision_batch // clip, 1) * clip

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        sampling: FrameSamplingConfig | None = None,
        selector: FrameSelector | None = None,
        attn_implementation: str = "sdpa",
        **kwargs,
    ) -> XCompPipeline:
        """Model and tokenizer from one local folder (ours or a published VideoChat-Flash/XComp one); frame
        sampling and selection default to the folder's pipeline_config.json, if it has one; `attn_implementation`
        is the attention kernel (sdpa, eager, flash_attention_2)."""
        from xcomp.model.convert import load_model

        model = load_model(path, attn_implementation)
        image_size = model.config.vision_config.image_size
        processor = XCompProcessor.from_pretrained(path, image_size=image_size)
        if sampling is None or selector is None:
            saved_sampling, saved_selector = load_pipeline_config(path, model.config.local_num_frames, image_size)
            sampling, selector = sampling or saved_sampling, selector or saved_selector
        return cls(model, processor, sampling=sampling, selector=selector, **kwargs)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Model, tokenizer and this pipeline's sampling and frame selector, for `from_pretrained`."""
        self.model.save_pretrained(str(path))
        self.processor.save_pretrained(path)
        save_pipeline_config(path, self.sampling, self.selector)

    @torch.no_grad()
    def answer(
        self,
        video: str | os.PathLike | Video | np.ndarray,
        question: str,
        options: Sequence[str] | None = None,
        keep: int | float | None = None,
        fps: float = 1.0,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        encoded: Encoded | None = None,
        **generate_kwargs,
    ) -> Answer:
        """Answer ``question`` about ``video``.

        Args:
            video: a video file or frame folder (sampled with `self.sampling`), a decoded `Video`, or uint8
                frames [T, H, W, 3] taken ``fps`` frames per second apart.
            options: multiple-choice options; the prompt lists them as (A), (B), … and `Answer.choice` is set.
            keep: frames to keep: an int count, a float fraction, or None for the selector's setting. Keeping every
                frame skips scoring (plain LP-Comp over all frames).
            max_new_tokens, do_sample, generate_kwargs: passed to `generate` (greedy by default).
            encoded: the video's `encode`, shared by its questions (the first to use it counts its seconds); when
                every frame is answered from and the compressor does not read the question, the K/V of the prompt
                before the question is shared too (`Encoded.prefix_cache`).

        `Answer.accounting` holds, for the answering prefill over the kept frames, `tokens_per_layer`,
        `prefill_flops`, `decode_flops_per_token`, `kv_cache_bytes`; the same under `dense` for the dense model
        over all sampled frames, and `ratio_to_dense`; `vision_flops` (the tower ran on every frame);
        `scoring_flops` and `scoring_tokens_per_layer` (the QC-Comp pass, 0 / None when it did not run);
        `option_scoring_flops` (the prefill of the one-pass-per-option scoring, 0 unless `choice_scored`); and
        `seconds` measured per stage (load, vision, scoring, generate, option_scoring).
        """
        if not question.strip():
            raise XCompError("the question is empty")
        if max_new_tokens < 1:
            raise XCompError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        seconds = {}
        t0 = time.perf_counter()
        video = self._as_video(video, fps)
        seconds["load"] = time.perf_counter() - t0
        N = len(video.frames)

        shared = encoded is not None
        encoded = encoded or self.encode(video)
        visual, n_encoded = encoded.visual, encoded.frames
        seconds["vision"] = encoded.claim_seconds()

        prompt = build_prompt(question, options, duration=video.duration, num_frames=N, config=self.prompt)
        batch = self.processor.tokenize([prompt])
        ids = batch["input_ids"].to(self.model.device)
        k = self._num_kept(keep, N)
        self._check_context(ids.shape[1], k, max_new_tokens)

        t0 = time.perf_counter()
        scores = None
        if k < N:
            prefix, question_ids = split_prompt(ids, self.processor.video_token_id)
            kept, scores = self.selector.select(
                self.model, prefix, question_ids, visual, N, k, shared=encoded.scoring if shared else None
            )
        else:
            kept = torch.arange(N)
        seconds["scoring"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        T = self.model.model.visual_tokens_per_frame
        selected = visual.view(N, T, -1)[kept.to(visual.device)].flatten(0, 1)
        saliency = None
        if encoded.saliency is not None:
            saliency = [encoded.saliency.view(N, -1)[kept.to(visual.device)].flatten()]
        if shared and k == N and not compressor_for(self.model.config).reads_question:
            prefix = split_prompt(ids, self.processor.video_token_id)[0]
            generate_kwargs["cache"] = encoded.prefix_cache(self.model, prefix).copy()  # the video's prefill, once
        else:
            generate_kwargs["cache"] = XCompCache(config=self.model.config.text_config)
        cache = generate_kwargs["cache"]
        out = self.model.generate(
            ids,
            attention_mask=batch["attention_mask"].to(ids.device),
            visual_embeds=[selected],
            visual_saliency=saliency,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            **generate_kwargs,
        )
        text = self.processor.decode(out[0, ids.shape[1] :])
        seconds["generate"] = time.perf_counter() - t0

        choice = ANSWER_PARSERS[self.answer_rule](text, options) if options else None
        unparsed = bool(options) and choice is None
        scored = unparsed and self.score_options
        scored_lengths = []
        t0 = time.perf_counter()
        if scored:
            choice, scored_lengths = self._most_likely_option(ids[0].tolist(), options, selected, saliency)
        seconds["option_scoring"] = time.perf_counter() - t0
        kept_list = kept.tolist()
        newline = int(self.model.model.image_newline is not None)
        text_tokens = ids.shape[1] - 1 + newline
        option_text_tokens = [n - 1 + newline for n in scored_lengths]
        return Answer(
            text=text,
            choice=choice,
            choice_scored=scored,
            unparsed=unparsed,
            kept_frames=kept_list,
            kept_timestamps=[float(video.timestamps[i]) for i in kept_list],
            num_frames=N,
            scores=scores,
            accounting=self._accounting(
                N, len(kept_list), n_encoded, text_tokens, scores, option_text_tokens, seconds,
                cache.visual_per_layer[:, 0].tolist(),
            ),
        )

    @torch.no_grad()
    def _most_likely_option(
        self, prompt_ids: list[int], options: Sequence[str], visual: torch.Tensor, saliency: list | None = None
    ) -> tuple[str, list[int]]:
        """Letter of the option with the highest log-likelihood (its tokens and <|im_end|>) as the answer to the
        prompt, from the same kept frames: one teacher-forced pass per option. Also returns each pass's text length."""
        vocab = self.model.model.vocab
        best, best_score, lengths = 0, float("-inf"), []
        for i, option in enumerate(options):
            answer = self.processor.answer_ids(option)
            ids = torch.tensor([prompt_ids + answer], device=self.model.device)
            lengths.append(ids.shape[1])
            labels = torch.full_like(ids, IGNORE_INDEX)
            labels[0, len(prompt_ids) :] = torch.tensor(answer)
            logits = self.model(input_ids=ids, visual_embeds=[visual], visual_saliency=saliency, labels=labels).logits.float()
            target = torch.tensor(answer, device=ids.device)
            rows = vocab.to_rows(target) if vocab is not None else target
            score = logits.log_softmax(-1).gather(1, rows[:, None]).sum().item()
            if score > best_score:
                best, best_score = i, score
        return OPTION_LETTERS[best], lengths

    def _as_video(self, video, fps: float) -> Video:
        if isinstance(video, Video):
            return video
        if isinstance(video, np.ndarray):
            if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8 or len(video) == 0:
                raise XCompError(f"expected uint8 frames [T, H, W, 3], got {video.dtype} {video.shape}")
            times = np.arange(len(video)) / fps
            return Video(video, times, np.arange(len(video)), len(video) / fps, source="<array>")
        return load_video(video, self.sampling)

    @torch.no_grad()
    def encode(self, video: str | os.PathLike | Video | np.ndarray, fps: float = 1.0) -> Encoded:
        """The LLM tokens of every sampled frame: the vision tower a few clips per call (or its merged tokens from
        the feature cache), then the projector.

        The tower takes whole clips of `local_num_frames`; a frame count that is not a multiple is padded with
        copies of the last frame, whose tokens are then discarded.
        """
        t0 = time.perf_counter()
        video = self._as_video(video, fps)
        inner = self.model.model
        frames = video.frames
        clip, N = self.model.config.local_num_frames, len(frames)
        pad = -N % clip
        if pad:
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        param = next(self.model.parameters())
        cache, key, features = self.feature_cache, None, None
        if cache is not None:
            settings = vision_settings(self.model, self.processor.image_size, param.dtype)
            key = cache.key(cache.digest(inner.vision_tower), video.source, video.indices, settings)
            features = cache.load(key) if key is not None else None
        if features is None:
            chunks = []
            for i in range(0, len(frames), self.vision_batch):
                pixels = self.processor.preprocess(frames[i : i + self.vision_batch]).to(param.device, param.dtype)
                chunks.append(inner.vision_features(pixels))
            features = torch.cat(chunks)
            if key is not None:
                cache.store(key, features)
        features = features.to(param.device, param.dtype)
        visual = inner.project(features, [len(frames)])[0]
        saliency = inner.saliency(features, [len(frames)])  # per tower token: tokens_per_frame per frame
        saliency = saliency[0][: N * self.model.config.tokens_per_frame] if saliency is not None else None
        T = inner.visual_tokens_per_frame
        return Encoded(visual[: N * T], len(frames), time.perf_counter() - t0, saliency=saliency)

    def _check_context(self, prompt_tokens: int, kept_frames: int, max_new_tokens: int) -> None:
        """The answering sequence (prompt + kept frames' tokens + answer) must fit the LLM's positions."""
        limit = self.model.config.text_config.max_position_embeddings
        total = prompt_tokens - 1 + kept_frames * self.model.model.visual_tokens_per_frame + max_new_tokens
        if total > limit:
            raise PromptTooLongError(
                f"prompt needs {total} positions ({prompt_tokens} text tokens, {kept_frames} frames, "
                f"{max_new_tokens} answer tokens) but the model has {limit}; shorten the question or keep fewer frames"
            )

    def _num_kept(self, keep: int | float | None, num_frames: int) -> int:
        if keep is None:
            return self.selector.num_kept(num_frames)
        if isinstance(keep, float):
            if not 0 < keep <= 1:
                raise XCompError(f"a fractional keep must lie in (0, 1], got {keep}")
            keep = round(keep * num_frames)
        if keep < 1:
            raise XCompError(f"keep must be >= 1, got {keep}")
        return min(max(int(keep), 1), num_frames)

    def _accounting(
        self,
        N: int,
        K: int,
        n_encoded: int,
        text_tokens: int,
        scores: FrameScores | None,
        option_text_tokens: list[int],
        seconds: dict,
        visual_per_layer: list[int],
    ) -> dict:
        """The answer's cost: its prefill's visual tokens per layer as the model kept them (``visual_per_layer``),
        against the dense model over all ``N`` sampled frames."""
        config = self.model.config
        dtype_bytes = self.model.dtype.itemsize
        run = run_cost(config, K, text_tokens, dtype_bytes, visual_per_layer)
        dense = run_cost(config.with_compression(compression="dense"), N, text_tokens, dtype_bytes)
        scoring_flops = 0.0
        if scores is not None:
            per_window = [n // scores.windows for n in scores.tokens_per_layer[:-1]]
            scoring_flops = scores.windows * sum(layer_flops(config, n) for n in per_window)

        def cost(c):
            return {
                "tokens_per_layer": c.tokens_per_layer,
                "prefill_flops": c.llm_prefill_flops,
                "decode_flops_per_token": c.decode_flops_per_token,
                "kv_cache_bytes": c.kv_cache_bytes,
            }

        return {
            "num_frames": N,
            "kept_frames": K,
            "text_tokens": text_tokens,
            **cost(run),
            "dense": cost(dense),
            "ratio_to_dense": run.ratio_to(dense),
            "vision_flops": vision_flops(config, n_encoded),
            "scoring_flops": scoring_flops,
            "scoring_tokens_per_layer": scores.tokens_per_layer if scores is not None else None,
            "option_scoring_flops": sum(
                run_cost(config, K, n, dtype_bytes, visual_per_layer).llm_prefill_flops for n in option_text_tokens
            ),
            "seconds": seconds,
        }
