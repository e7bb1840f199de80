"""xcomp: XComp (LP-Comp + QC-Comp) for long-video understanding with vision-language models."""

from transformers import AutoConfig, AutoModelForCausalLM

from xcomp.compression.schedule import CompressionSchedule
from xcomp.model.cache import XCompCache
from xcomp.model.configuration import XCompConfig
from xcomp.model.modeling import XCompForCausalLM, XCompModel
from xcomp.vision.config import UMTVisionConfig

__version__ = "0.1.0"

AutoConfig.register(XCompConfig.model_type, XCompConfig, exist_ok=True)
AutoConfig.register(UMTVisionConfig.model_type, UMTVisionConfig, exist_ok=True)
AutoModelForCausalLM.register(XCompConfig, XCompForCausalLM, exist_ok=True)

__all__ = [
    "CompressionSchedule",
    "UMTVisionConfig",
    "XCompCache",
    "XCompConfig",
    "XCompForCausalLM",
    "XCompModel",
]
