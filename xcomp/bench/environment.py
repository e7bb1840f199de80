"""What a benchmark ran on: device, versions, threads, load, commit (recorded with every result)."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from xcomp.model.modeling import XCompForCausalLM
from xcomp.tracking import git_state


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
        "load_average_start": load_average(),
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
    """The checkout's short commit, ``+dirty`` with uncommitted changes (`xcomp.tracking.git_state`)."""
    state = git_state(Path(__file__).resolve().parents[2])
    if not state:
        return "unknown"
    return state["git.commit"][:7] + ("+dirty" if state["git.dirty"] == "True" else "")


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
