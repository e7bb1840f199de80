"""Synthetic suites generated once and cached by content: a folder per distinct set of generation settings."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from xcomp.synth.generate import SynthParams, write_suite
from xcomp.tracking import fingerprint


def cached_suite(
    cache_dir: str | Path,
    families: list[str],
    n: int,
    seed: int,
    params: SynthParams,
    progress: bool = False,
    questions_per_video: int = 1,
) -> Path:
    """``questions.jsonl`` of the suite with these settings, written under ``cache_dir/<hash>`` on first use.

    The suite is written to a temporary folder and renamed into place, so parallel jobs asking for the same
    suite never see half of one: the first rename wins and the others discard their copy.
    """
    from dataclasses import asdict

    settings = {"families": list(families), "n": n, "seed": seed, **asdict(params)}
    if questions_per_video != 1:  # suites cached before the setting existed keep their folders
        settings["questions_per_video"] = questions_per_video
    key = fingerprint(settings)
    target = Path(cache_dir) / f"synth-{key}"
    questions = target / "questions.jsonl"
    if questions.is_file():
        return questions
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".synth-{key}-", dir=target.parent))
    try:
        write_suite(scratch, list(families), n, seed, params, progress=progress, questions_per_video=questions_per_video)
        os.rename(scratch, target)
    except OSError:
        if not questions.is_file():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return questions
