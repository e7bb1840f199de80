"""Synthetic long-video QA suite: procedurally generated videos with exact answers."""

from xcomp.synth.drawing import COLOURS, SHAPES, SynthObject
from xcomp.synth.families import PLANNERS, Appearance, CasePlan
from xcomp.synth.generate import (
    FAMILIES,
    SynthCase,
    SynthParams,
    iter_cases,
    make_case,
    write_frames,
    write_mp4,
    write_suite,
)

__all__ = [
    "COLOURS",
    "FAMILIES",
    "PLANNERS",
    "SHAPES",
    "Appearance",
    "CasePlan",
    "SynthCase",
    "SynthObject",
    "SynthParams",
    "iter_cases",
    "make_case",
    "write_frames",
    "write_mp4",
    "write_suite",
]
