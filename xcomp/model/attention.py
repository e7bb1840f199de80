"""Which attention kernel the model runs: transformers' ``attn_implementation``, checked before any work.

``sdpa`` (PyTorch's fused kernels, the default) and ``eager`` (explicit softmax, the reference for parity) run
everywhere; ``flash_attention_2`` needs the ``flash-attn`` package (the ``gpu`` extra) and a CUDA GPU. The LLM's
Qwen2 layers and the UMT vision tower both dispatch on it. QC-Comp's question-row probe recomputes its attention
rows itself (`xcomp.compression.attention_probe`), so it needs no attention weights from the kernel and works
under each.
"""

from __future__ import annotations

import importlib.util

import torch

from xcomp.errors import ConfigError

ATTN_IMPLEMENTATIONS = ("sdpa", "flash_attention_2", "eager")
"""Kernels a model can be asked for."""


def check_attn_implementation(name: str) -> None:
    """Refuse an unknown kernel, or flash-attn where it cannot run, in one line."""
    if name not in ATTN_IMPLEMENTATIONS:
        raise ConfigError(f"unknown attn_implementation {name!r}; expected one of {', '.join(ATTN_IMPLEMENTATIONS)}")
    if name == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise ConfigError(
                'attn_implementation flash_attention_2 needs flash-attn: pip install -e ".[gpu]" (CUDA GPUs only)'
            )
        if not torch.cuda.is_available():
            raise ConfigError("attn_implementation flash_attention_2 runs only on a CUDA GPU; none is visible")


def use_attn_implementation(model, name: str):
    """Switch ``model`` (LLM and vision tower) to kernel ``name`` after checking it; returns the model."""
    check_attn_implementation(name)
    if model.config._attn_implementation != name:
        model.set_attn_implementation(name)
    return model
