"""Vision side of VideoChat-Flash: UMT-L video encoder, ToMe projector and frame preprocessing."""

from xcomp.vision.config import UMTVisionConfig
from xcomp.vision.processor import IMAGENET_MEAN, IMAGENET_STD, preprocess_frames
from xcomp.vision.tome import ToMeProjector, bipartite_soft_matching, merge_schedule, merge_tokens
from xcomp.vision.umt import UMTVisionTower, sincos_pos_embed

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ToMeProjector",
    "UMTVisionConfig",
    "UMTVisionTower",
    "bipartite_soft_matching",
    "merge_schedule",
    "merge_tokens",
    "preprocess_frames",
    "sincos_pos_embed",
]
