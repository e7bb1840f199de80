"""Render a case's frames: a long "video" of scenes with clutter, decoys, noise and the events.

The haystack is made of scenes (8-32 frames) with a desaturated gradient background and drifting
grey clutter shapes (never a shape the question names). Decoys are saturated objects like the events but drawn only from shapes and
colours the question never mentions, so they distract without changing the answer. ``noise``
(0-1) scales the clutter count, the number of decoys and the background grain.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from xcomp.synth.drawing import COLOURS, SHAPES, SynthObject, draw_object, draw_shape
from xcomp.synth.families import Appearance, CasePlan

SCENE_FRAMES = (8, 32)
CLUTTER_PER_SCENE = 8
"""Clutter shapes per scene at noise 1."""
DECOYS_PER_FRAME = 1 / 24
"""Decoy appearances per frame at noise 1."""
NOISE_SIGMA = 16.0
"""Standard deviation of the background's luma grain at noise 1."""


@dataclass(frozen=True)
class _Scene:
    start: int
    background: np.ndarray
    clutter: tuple[tuple[str, np.ndarray, np.ndarray, float, tuple[int, int, int]], ...]
    """(shape, position px, velocity px/frame, radius px, grey rgb) per clutter item."""


def _background(rng: np.random.Generator, size: int, noise: float) -> np.ndarray:
    """A gradient between two dark, desaturated colours in a random direction, with luma grain.

    The grain is fixed for the scene: it makes the haystack textured without making every frame
    expensive to encode (temporal grain tripled the mp4 size).
    """
    ends = []
    for _ in range(2):
        rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.45))
        ends.append(np.array(rgb, np.float32) * 255)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ramp = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5) + 0.75) / 1.5
    ramp = ramp.clip(0, 1)[..., None]
    grain = rng.normal(0.0, NOISE_SIGMA * noise, (size, size, 1)).astype(np.float32)
    return (ends[0] * (1 - ramp) + ends[1] * ramp + grain).clip(0, 255).astype(np.uint8)


def _scenes(rng: np.random.Generator, plan: CasePlan, frames: int, size: int, noise: float) -> list[_Scene]:
    shapes = [s for s in SHAPES if s not in plan.reserved_shapes]
    scenes, start = [], 0
    while start < frames:
        clutter = []
        for _ in range(round(noise * CLUTTER_PER_SCENE)):
            grey = rng.uniform(60, 150)
            rgb = tuple(int(grey + t) for t in rng.uniform(-12, 12, size=3))
            radius = float(rng.uniform(0.03, 0.07) * size)
            clutter.append(
                (str(rng.choice(shapes)), rng.uniform(0, size, 2), rng.uniform(-1.5, 1.5, 2), radius, rgb)
            )
        scenes.append(_Scene(start, _background(rng, size, noise), tuple(clutter)))
        start += int(rng.integers(SCENE_FRAMES[0], SCENE_FRAMES[1] + 1))
    return scenes


def _decoys(
    rng: np.random.Generator, plan: CasePlan, frames: int, span: int, noise: float
) -> list[Appearance]:
    """Saturated objects whose shape and colour the question never mentions."""
    shapes = [s for s in SHAPES if s not in plan.reserved_shapes]
    colours = [c for c in COLOURS if c not in plan.reserved_colours]
    decoys = []
    for _ in range(round(noise * DECOYS_PER_FRAME * frames)):
        length = int(rng.integers(span, 2 * span + 1))
        start = int(rng.integers(0, max(frames - length, 0) + 1))
        radius = float(rng.uniform(0.10, 0.15))
        cx, cy = rng.uniform(radius, 1 - radius, size=2)
        obj = SynthObject(str(rng.choice(shapes)), str(rng.choice(colours)))
        decoys.append(Appearance(obj, start, start + length, float(cx), float(cy), radius))
    return decoys


def render(
    plan: CasePlan, rng: np.random.Generator, frames: int, size: int, span: int, noise: float
) -> np.ndarray:
    """uint8 [frames, size, size, 3] RGB video of ``plan`` with a haystack drawn from ``rng``."""
    scenes = _scenes(rng, plan, frames, size, noise)
    decoys = _decoys(rng, plan, frames, span, noise)
    video = np.empty((frames, size, size, 3), np.uint8)
    scene_index = 0
    for t in range(frames):
        while scene_index + 1 < len(scenes) and scenes[scene_index + 1].start <= t:
            scene_index += 1
        scene = scenes[scene_index]
        canvas = scene.background.copy()
        for shape, position, velocity, radius, rgb in scene.clutter:
            x, y = (position + velocity * (t - scene.start)) % size
            draw_shape(canvas, shape, x, y, radius, rgb)
        for item in (*decoys, *plan.events):
            if item.start <= t < item.end:
                draw_object(canvas, item.obj, item.cx * size, item.cy * size, item.radius * size)
        video[t] = canvas
    return video
