"""Attention kernels side by side: the same random model's prefill under each, its logits and its time.

For each frame count, one model (random weights, LP-Comp on) runs the same prompt and projector-output stand-ins
under every ``--attn`` kernel in turn (`xcomp.model.attention.use_attn_implementation` switches the LLM and the
vision tower; the vision tower is not run: prefill starts from the projector outputs). Reported per kernel: the
median prefill seconds, the ratio to the first kernel, and the last-token logits' agreement with the first kernel
(max |Δ| relative to the reference's largest logit, and whether the top-1 token agrees).

Run: ``python -m xcomp.bench.attention`` (tiny shape, CPU, eager vs sdpa, seconds); on a GPU with the ``gpu``
extra: ``python -m xcomp.bench.attention --shape real --frames 256 1024 --device cuda --dtype bf16 --attn sdpa
flash_attention_2``.
"""

from __future__ import annotations

import argparse

import torch

from xcomp.bench.measure import measure
from xcomp.bench.models import DTYPES, bench_config, build_model
from xcomp.errors import XCompError
from xcomp.model.attention import ATTN_IMPLEMENTATIONS, check_attn_implementation, use_attn_implementation


def compare(args: argparse.Namespace) -> list[dict]:
    """One row per (frame count, kernel)."""
    for name in args.attn:
        check_attn_implementation(name)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = bench_config(args.shape).with_compression(compression="lp_comp")
    model = build_model(config, device, dtype, args.attn[0], args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    text = torch.randint(0, config.video_token_id, (args.text_tokens,), generator=generator)
    video = torch.tensor([config.video_token_id])
    ids = torch.cat([text[: args.text_tokens // 4], video, text[args.text_tokens // 4 :]])[None].to(device)
    rows = []
    for frames in args.frames:
        shape = (frames * config.tokens_per_frame, config.text_config.hidden_size)
        visual = torch.randn(shape, generator=generator).to(device, dtype)
        reference = None
        for name in args.attn:
            use_attn_implementation(model, name)
            with torch.inference_mode():
                stage, out = measure(
                    lambda v=visual: model(ids, visual_embeds=[v], logits_to_keep=1), device, args.warmup, args.repeats
                )
            logits = out.logits[0, -1].float().cpu()
            if reference is None:
                reference = (logits, stage.seconds)
            delta = (logits - reference[0]).abs().max().item() / reference[0].abs().max().item()
            rows.append({
                "frames": frames, "attn": name, "seconds": stage.seconds, "ratio": stage.seconds / reference[1],
                "max_rel_delta": delta, "top1_agrees": bool(logits.argmax() == reference[0].argmax()),
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["tiny", "real"], default="tiny", help="tiny (28 layers) or the 2B shape")
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 256], help="frame counts")
    parser.add_argument("--attn", nargs="+", choices=ATTN_IMPLEMENTATIONS, default=["sdpa", "eager"],
                        help="kernels; the first is the reference")  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    parser.add_argument("--text-tokens", type=int, default=64, help="prompt tokens besides the video")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rows = compare(args)
    except XCompError as error:
        print(f"error: {error}")
        return 1
    print(f"{args.shape} shape, {args.device} {args.dtype}, LP-Comp prefill; reference kernel: {args.attn[0]}")
    print(f"{'frames':>7} {'attn':<18}{'seconds':>9}{'ratio':>7}{'max |Δlogit| / max|logit|':>27}{'top-1':>7}")
    for row in rows:
        print(
            f"{row['frames']:>7} {row['attn']:<18}{row['seconds']:>9.3f}{row['ratio']:>7.2f}"
            f"{row['max_rel_delta']:>27.2e}{'same' if row['top1_agrees'] else 'DIFF':>7}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
