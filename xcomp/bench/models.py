"""The models the benchmarks run: the tiny or VideoChat-Flash-2B shape with random weights, built without
initialisation, and switched between compression methods on one set of weights."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from xcomp.errors import ConfigError
from xcomp.model.configuration import XCompConfig
from xcomp.model.modeling import XCompForCausalLM

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
REAL_CONFIG = (
    Path(__file__).resolve().parents[3] / "shared/reference/configs/videochat_flash_2b_res448.config.json"
)
"""The published VideoChat-Flash-2B config.json (next to the repository, as the tests expect it)."""


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
