"""Shapes, colours and digits drawn with numpy masks.

Everything is rasterised here (no fonts, no anti-aliasing) so that a seed gives the same pixels
on every machine and Pillow version. Colours are saturated and far apart so that they survive
H.264's 4:2:0 chroma subsampling and can be told apart after decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 225, 20),
    "green": (30, 190, 50),
    "cyan": (20, 210, 230),
    "blue": (30, 70, 240),
    "magenta": (230, 40, 200),
    "white": (245, 245, 245),
}
"""Object colours (RGB). Backgrounds and clutter are kept desaturated and below 180 so they never match."""

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")
DIGIT_SHAPES = ("circle", "square", "diamond", "hexagon")
"""Shapes whose interior holds a whole digit (digits are only drawn on these)."""

_SEGMENTS = {  # seven-segment digits: a top, b top-right, c bottom-right, d bottom, e bottom-left, f top-left, g middle
    0: "abcdef",
    1: "bc",
    2: "abged",
    3: "abgcd",
    4: "fgbc",
    5: "afgcd",
    6: "afgedc",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


@dataclass(frozen=True)
class SynthObject:
    """A drawable object: a shape in a colour, optionally with a digit written on it."""

    shape: str
    colour: str
    digit: int | None = None

    @property
    def name(self) -> str:
        """How questions and options refer to the object, e.g. "red star"."""
        return f"{self.colour} {self.shape}"


_STAR = tuple(
    (radius * math.cos(angle), radius * math.sin(angle))
    for k in range(10)
    for radius, angle in [(1.0 if k % 2 == 0 else 0.42, math.radians(-90 + 36 * k))]
)
"""Five-pointed star, point up: outer and inner vertices alternating."""


def _inside_polygon(vertices: tuple[tuple[float, float], ...], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Even-odd crossing test. Only + - * / and comparisons, so it is bit-exact everywhere
    (numpy's SIMD trig functions can differ in the last bit depending on array alignment)."""
    inside = np.zeros(u.shape, bool)
    for (x1, y1), (x2, y2) in zip(vertices, vertices[1:] + vertices[:1]):
        if y1 == y2:
            continue
        crosses = (v < y1) != (v < y2)
        inside ^= crosses & (u < x1 + (v - y1) * ((x2 - x1) / (y2 - y1)))
    return inside


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` on coordinates normalised to the object's radius (v points down)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u**2 + v**2 <= 1.0
    if shape == "ring":
        rr = u**2 + v**2
        return (rr <= 1.0) & (rr >= 0.55**2)
    if shape == "square":
        return (au <= 0.8) & (av <= 0.8)
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "triangle":
        return (v <= 0.75) & (v >= -1.0 + au * 1.75 / 0.95)
    if shape == "cross":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "hexagon":
        return (av <= 0.866) & (au + av / np.sqrt(3.0) <= 1.0)
    if shape == "star":
        return _inside_polygon(_STAR, u, v)
    raise ValueError(f"unknown shape {shape!r}")


def digit_mask(digit: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Seven-segment ``digit`` centred on the object, about 0.9 radius tall."""
    h, w, t = 0.45, 0.26, 0.09  # half height, half width, half stroke
    segments = {
        "a": (np.abs(v + h) <= t) & (np.abs(u) <= w),
        "d": (np.abs(v - h) <= t) & (np.abs(u) <= w),
        "g": (np.abs(v) <= t) & (np.abs(u) <= w),
        "f": (np.abs(u + w) <= t) & (v >= -h) & (v <= 0),
        "b": (np.abs(u - w) <= t) & (v >= -h) & (v <= 0),
        "e": (np.abs(u + w) <= t) & (v >= 0) & (v <= h),
        "c": (np.abs(u - w) <= t) & (v >= 0) & (v <= h),
    }
    mask = np.zeros(u.shape, bool)
    for name in _SEGMENTS[digit]:
        mask |= segments[name]
    return mask


def _patch(canvas: np.ndarray, cx: float, cy: float, radius: float):
    """The canvas region around (cx, cy) and its pixel-centre coordinates in radius units."""
    height, width = canvas.shape[:2]
    y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, height)
    x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, width)
    v, u = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return canvas[y0:y1, x0:x1], (u + 0.5 - cx) / radius, (v + 0.5 - cy) / radius


def draw_object(canvas: np.ndarray, obj: SynthObject, cx: float, cy: float, radius: float) -> None:
    """Paint ``obj`` in place on an [H, W, 3] canvas, centred at (cx, cy) pixels."""
    region, u, v = _patch(canvas, cx, cy, radius)
    body = shape_mask(obj.shape, u, v)
    region[body] = COLOURS[obj.colour]
    if obj.digit is not None:
        ink = (0, 0, 0) if sum(COLOURS[obj.colour]) > 300 else (255, 255, 255)
        region[body & digit_mask(obj.digit, u, v)] = ink


def draw_shape(canvas: np.ndarray, shape: str, cx: float, cy: float, radius: float, rgb: tuple) -> None:
    """Paint a bare shape in any colour (background clutter)."""
    region, u, v = _patch(canvas, cx, cy, radius)
    region[shape_mask(shape, u, v)] = rgb
