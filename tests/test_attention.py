"""The attention kernel (`model.attn_implementation`): eager and sdpa agree, flash-attn is refused where absent."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.conftest import VIDEO_ID, frames, prompt_ids, tiny_model
from xcomp.compression.qc_comp import QCComp, score_frames, split_prompt
from xcomp.errors import ConfigError
from xcomp.model.attention import check_attn_implementation, use_attn_implementation


def pair(method: str = "lp_comp"):
    """The same random tiny model twice: under sdpa and under eager (LLM and vision tower)."""
    sdpa = tiny_model(method)
    eager = use_attn_implementation(tiny_model(method), "eager")
    assert eager.config.vision_config._attn_implementation == "eager"
    return sdpa, eager


@pytest.mark.parametrize("method", ["dense", "lp_comp", "attn_prune"])
def test_eager_and_sdpa_logits_agree_on_a_padded_batch_and_in_decoding(method):
    sdpa, eager = pair(method)
    short, long = prompt_ids(2, 3, seed=1), prompt_ids(3, 6, seed=2)
    pad = long.shape[1] - short.shape[1]
    ids = torch.cat([torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(ids)
    mask[0, :pad] = 0
    inputs = dict(attention_mask=mask, pixel_values=torch.cat([frames(8, 1), frames(8, 2)]), num_frames=[8, 8])
    with torch.no_grad():
        got, want = eager(ids, **inputs).logits, sdpa(ids, **inputs).logits
    torch.testing.assert_close(got[0, pad:], want[0, pad:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1], want[1], atol=1e-4, rtol=1e-4)
    generate = dict(pixel_values=frames(8), num_frames=[8], max_new_tokens=6, do_sample=False, use_cache=True)
    assert eager.generate(prompt_ids(), **generate).tolist() == sdpa.generate(prompt_ids(), **generate).tolist()


def test_eager_and_sdpa_qc_scores_agree():
    sdpa, eager = pair()
    prompt = split_prompt(prompt_ids(3, 6), VIDEO_ID)
    visual = torch.randn(20 * 16, 64, generator=torch.Generator().manual_seed(0))
    config = QCComp(segment_batch=3)
    want, got = score_frames(sdpa, *prompt, visual, config), score_frames(eager, *prompt, visual, config)
    torch.testing.assert_close(got.layer_scores, want.layer_scores, atol=1e-5, rtol=1e-4)
    assert got.scores.argsort().tolist() == want.scores.argsort().tolist()


def test_unknown_kernel_and_absent_flash_attn_are_one_line():
    with pytest.raises(ConfigError, match="unknown attn_implementation 'xformers'"):
        check_attn_implementation("xformers")
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ConfigError, match=r'flash-attn: pip install -e "\.\[gpu\]"'):
            check_attn_implementation("flash_attention_2")
    elif not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            check_attn_implementation("flash_attention_2")
    else:
        check_attn_implementation("flash_attention_2")


def test_kernel_benchmark_compares_logits_side_by_side(capsys):
    from xcomp.bench.attention import main

    assert main(["--frames", "8", "--warmup", "0", "--repeats", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[1] for row in rows] == ["sdpa", "eager"]
    assert float(rows[1][4]) < 1e-5 and rows[1][5] == "same"
    assert main(["--attn", "flash_attention_2"]) == (0 if importlib.util.find_spec("flash_attn") else 1)
