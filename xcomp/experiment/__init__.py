"""The Hydra layer: schemas, resolvers, the job and the sweep callback that `run.py` composes and calls.

This is the only part of xcomp that imports Hydra; the components it builds (`xcomp.compression`,
`xcomp.pipeline`, `xcomp.evaluation`, `xcomp.tracking`) are plain Python.
"""

from pathlib import Path

from omegaconf import OmegaConf

from xcomp.errors import ConfigError
from xcomp.experiment.job import run
from xcomp.experiment.schema import register

SHIPPED_MODELS = {"xcomp_tiny": "default_model", "base_tiny": "base_model"}
"""Models shipped inside the package: name -> folder under xcomp/assets."""


def shipped_model(name: str) -> str:
    """Folder of a shipped model (the `${xcomp_model:NAME}` resolver)."""
    if name not in SHIPPED_MODELS:
        raise ConfigError(f"no shipped model {name!r} (shipped: {', '.join(SHIPPED_MODELS)})")
    folder = Path(__file__).resolve().parent.parent / "assets" / SHIPPED_MODELS[name]
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model {name!r} is not in this build ({folder} has no config.json); choose another model=")
    return str(folder)


register()
OmegaConf.register_new_resolver("xcomp_model", shipped_model, replace=True)

__all__ = ["run", "shipped_model"]
