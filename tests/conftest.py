"""Shared test helpers: where the shared reference data lives, small model builders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURE = SHARED / "fixtures" / "videochat_flash_tiny"
# Test tensors are tiny: OpenMP thread hand-offs cost more than the math (and spin badly on a loaded 2-core box).
torch.set_num_threads(1)

REAL_CONFIG = SHARED / "reference" / "configs" / "videochat_flash_2b_res448.config.json"
TOKENIZER_DIR = SHARED / "reference" / "qwen2_5_tokenizer"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared reference data not found: {path}")
    return path


def require_decord() -> None:
    """decord is the optional `decord` extra (CI installs it)."""
    from xcomp.video import decord_reader

    if not decord_reader.available():
        pytest.skip('decord not installed: pip install -e ".[decord]"')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


VOCAB = 512
VIDEO_ID = VOCAB - 1


def tiny_model(compression: str = "lp_comp", num_layers: int = 4, **fields):
    """A random tiny XComp model whose greedy outputs vary (larger init std than the default)."""
    from xcomp import XCompConfig, XCompForCausalLM

    cfg = XCompConfig.tiny(
        num_layers=num_layers, vocab_size=VOCAB, video_token_id=VIDEO_ID, compression=compression, **fields
    )
    cfg.text_config.initializer_range = 0.2
    cfg.text_config.bos_token_id = cfg.text_config.eos_token_id = None
    torch.manual_seed(0)
    return XCompForCausalLM(cfg).eval()


def prompt_ids(n_before: int = 3, n_after: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    before = torch.randint(0, VIDEO_ID, (n_before,), generator=g)
    after = torch.randint(0, VIDEO_ID, (n_after,), generator=g)
    return torch.cat([before, torch.tensor([VIDEO_ID]), after])[None]


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
