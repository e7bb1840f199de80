"""Frame preprocessing of the published `UMTImageProcessor`."""

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_frames(frames: np.ndarray, size: int = 448) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] -> normalised float32 [T, 3, size, size].

    Each frame is squashed to size x size with PIL bicubic (no aspect preservation, no crop; the result is
    still uint8), then scaled by 1/255 in float64 and normalised with ImageNet mean/std in float32, the same
    arithmetic as the transformers image transforms the published processor chains.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    resized = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])
    pixels = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
    pixels = (pixels - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "preprocess_frames"]
