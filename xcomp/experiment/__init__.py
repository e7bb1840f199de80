"""The Hydra layer: schemas, resolvers, the job and the sweep callback that `run.py` composes and calls.

This is the only part of xcomp that imports Hydra; the components it builds (`xcomp.compression`,
`xcomp.pipeline`, `xcomp.evaluation`, `xcomp.tracking`) are plain Python.
"""

from omegaconf import OmegaConf

from xcomp.experiment.job import run
from xcomp.experiment.schema import register
from xcomp.shipped import shipped_model

register()
OmegaConf.register_new_resolver("xcomp_model", shipped_model, replace=True)

__all__ = ["run"]
