"""Models shipped inside the package (xcomp/assets), by name."""

from __future__ import annotations

from pathlib import Path

from xcomp.errors import ConfigError

SHIPPED_MODELS = {"xcomp_tiny": "default_model", "base_tiny": "base_model"}
"""Name -> folder under xcomp/assets."""


def shipped_model(name: str) -> str:
    """Folder of a shipped model (also the `${xcomp_model:NAME}` resolver of conf/)."""
    if name not in SHIPPED_MODELS:
        raise ConfigError(f"no shipped model {name!r} (shipped: {', '.join(SHIPPED_MODELS)})")
    folder = Path(__file__).resolve().parent / "assets" / SHIPPED_MODELS[name]
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model {name!r} is not in this build ({folder} has no config.json); choose another model=")
    return str(folder)
