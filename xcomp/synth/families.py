"""Question families: where events happen and what is asked about them.

A planner turns a random generator into a ``CasePlan``: the events (objects visible on a span of
frames), a question with four options and the index of the correct one, and the shapes and
colours that distractor objects must avoid so that the answer stays unique. The templates here
are the ones documented in docs/synthetic_suite.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xcomp.synth.drawing import COLOURS, DIGIT_SHAPES, SHAPES, SynthObject

NEEDLE_OBJECT = "Which of these objects appears briefly in the video?"
NEEDLE_COLOUR = "What colour is the {shape} that appears briefly in the video?"
NEEDLE_DIGIT = "What digit is written on the {object} that appears briefly in the video?"
ORDER = "Which of these objects appears {which} in the video? Not all of them appear."
COUNT = "How many times does the {object} appear in the video?"
LOCATE = "In which part of the video does the {object} appear?"
QUARTERS = ("the first quarter", "the second quarter", "the third quarter", "the fourth quarter")
MAX_COUNT = 6
LETTERS = "ABCD"
"""Option letters of the four options."""
FAMILY_CODES = {"needle": 0, "order": 1, "count": 2, "locate": 3}
"""Stable numbers mixed into each case's seed (do not reorder)."""


@dataclass(frozen=True)
class Appearance:
    """An object visible on frames [start, end) at a fixed place (fractions of the frame side)."""

    obj: SynthObject
    start: int
    end: int
    cx: float
    cy: float
    radius: float


@dataclass(frozen=True)
class CasePlan:
    """Everything about one case except the pixels."""

    events: tuple[Appearance, ...]
    question: str
    options: tuple[str, ...]
    answer: int
    """Index of the correct option."""
    depth: float
    """Centre of the event asked about, as a fraction of the video."""
    reserved_shapes: frozenset[str]
    """Shapes distractors must not use (every shape named by the question or its options)."""
    reserved_colours: frozenset[str]
    """Colours distractors must not use."""


def _appear(rng: np.random.Generator, obj: SynthObject, start: int, span: int) -> Appearance:
    radius = float(rng.uniform(0.16, 0.22))
    cx, cy = rng.uniform(radius, 1 - radius, size=2)
    return Appearance(obj, int(start), int(start) + span, float(cx), float(cy), radius)


def _distinct_objects(rng: np.random.Generator, count: int) -> list[SynthObject]:
    """``count`` objects with pairwise different shapes and colours."""
    shapes = rng.choice(SHAPES, count, replace=False)
    colours = rng.choice(list(COLOURS), count, replace=False)
    return [SynthObject(str(s), str(c)) for s, c in zip(shapes, colours)]


def _spread(rng: np.random.Generator, count: int, frames: int, span: int) -> list[int]:
    """Start frames of ``count`` spans in order, one per equal region, at least ``span`` apart."""
    bounds = np.linspace(0, frames, count + 1).astype(int)
    margin = (span + 1) // 2
    return [int(rng.integers(lo + margin, hi - span - margin + 1)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _shuffled(rng: np.random.Generator, correct: str, wrong: list[str]) -> tuple[tuple[str, ...], int]:
    options = [correct, *wrong]
    order = rng.permutation(len(options))
    shuffled = tuple(options[i] for i in order)
    return shuffled, shuffled.index(correct)


def _centre(event: Appearance, frames: int) -> float:
    return (event.start + event.end) / 2 / frames


def plan_needle(rng: np.random.Generator, frames: int, span: int, depth: float | None) -> CasePlan:
    """One object visible for ``span`` frames centred near ``depth``; ask what/which colour/which digit."""
    kind = ("object", "colour", "digit")[int(rng.integers(3))]
    shape = str(rng.choice(DIGIT_SHAPES if kind == "digit" else SHAPES))
    other_shape, third_shape = (
        str(s) for s in rng.choice([s for s in SHAPES if s != shape], 2, replace=False)
    )
    colours = [str(c) for c in rng.choice(list(COLOURS), 4, replace=False)]
    digits = [int(d) for d in rng.choice(10, 4, replace=False)]
    needle = SynthObject(shape, colours[0], digits[0] if kind == "digit" else None)
    depth = float(rng.uniform()) if depth is None else depth
    start = min(max(round(depth * frames - span / 2), 0), frames - span)
    event = _appear(rng, needle, start, span)
    if kind == "object":
        wrong = [
            SynthObject(shape, colours[1]),
            SynthObject(other_shape, colours[0]),
            SynthObject(third_shape, colours[2]),
        ]
        options, answer = _shuffled(rng, needle.name, [w.name for w in wrong])
        question = NEEDLE_OBJECT
        shapes, reserved_colours = {shape, other_shape, third_shape}, set(colours[:3])
    elif kind == "colour":
        options, answer = _shuffled(rng, colours[0], colours[1:])
        question = NEEDLE_COLOUR.format(shape=shape)
        shapes, reserved_colours = {shape}, set(colours)
    else:
        options, answer = _shuffled(rng, str(digits[0]), [str(d) for d in digits[1:]])
        question = NEEDLE_DIGIT.format(object=needle.name)
        shapes, reserved_colours = {shape}, {colours[0]}
    return CasePlan(
        (event,),
        question,
        options,
        answer,
        _centre(event, frames),
        frozenset(shapes),
        frozenset(reserved_colours),
    )


def plan_order(rng: np.random.Generator, frames: int, span: int, depth: float | None) -> CasePlan:
    """Two or three different objects one after another; ask which appeared first or last."""
    count = int(rng.integers(2, 4))
    objects = _distinct_objects(rng, 4)
    shown = objects[:count]
    events = tuple(
        _appear(rng, obj, start, span) for obj, start in zip(shown, _spread(rng, count, frames, span))
    )
    which = ("first", "last")[int(rng.integers(2))]
    target = events[0] if which == "first" else events[-1]
    options, answer = _shuffled(rng, target.obj.name, [o.name for o in objects if o != target.obj])
    return CasePlan(
        events,
        ORDER.format(which=which),
        options,
        answer,
        _centre(target, frames),
        frozenset(o.shape for o in objects),
        frozenset(o.colour for o in objects),
    )


def plan_count(rng: np.random.Generator, frames: int, span: int, depth: float | None) -> CasePlan:
    """One object appearing n times (1..6, separated by at least ``span`` frames); ask how many."""
    (obj,) = _distinct_objects(rng, 1)
    most = max(1, min(MAX_COUNT, frames // (2 * span + 2)))
    times = int(rng.integers(1, most + 1))
    events = tuple(_appear(rng, obj, start, span) for start in _spread(rng, times, frames, span))
    first = int(rng.integers(max(1, times - 3), times + 1))
    options = tuple(str(first + k) for k in range(4))
    depth = float(np.mean([_centre(e, frames) for e in events]))
    question = COUNT.format(object=obj.name)
    return CasePlan(
        events, question, options, times - first, depth, frozenset({obj.shape}), frozenset({obj.colour})
    )


def plan_locate(rng: np.random.Generator, frames: int, span: int, depth: float | None) -> CasePlan:
    """One object shown once, entirely inside one quarter of the video; ask which quarter."""
    (obj,) = _distinct_objects(rng, 1)
    quarter = int(rng.integers(4))
    lo, hi = quarter * frames // 4, (quarter + 1) * frames // 4
    event = _appear(rng, obj, int(rng.integers(lo, hi - span + 1)), span)
    question = LOCATE.format(object=obj.name)
    return CasePlan(
        (event,),
        question,
        QUARTERS,
        quarter,
        _centre(event, frames),
        frozenset({obj.shape}),
        frozenset({obj.colour}),
    )


Planner = Callable[[np.random.Generator, int, int, float | None], CasePlan]

PLANNERS: dict[str, Planner] = {
    "needle": plan_needle,
    "order": plan_order,
    "count": plan_count,
    "locate": plan_locate,
}
"""Family name -> planner(rng, frames, span, depth). ``depth`` is used by the needle family only."""
