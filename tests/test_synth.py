"""Synthetic QA suite: determinism, answers correct by construction (checked on pixels), the command."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest

from xcomp.errors import ConfigError
from xcomp.synth.command import add_arguments, main, run
from xcomp.synth.drawing import COLOURS
from xcomp.synth.generate import FAMILIES, SynthParams, iter_cases, make_case, write_suite
from xcomp.video.decode import load_video
from xcomp.video.sampling import FrameSamplingConfig

SMALL = SynthParams(frames=64, size=96, span=3, noise=1.0)


def colour_pixels(frames: np.ndarray, colour: str) -> np.ndarray:
    """Pixels per frame within 45 levels (every channel) of a palette colour."""
    distance = np.abs(frames.astype(np.int16) - np.array(COLOURS[colour], np.int16)).max(axis=-1)
    return (distance <= 45).sum(axis=(1, 2))


def visible(frames: np.ndarray, colour: str) -> np.ndarray:
    """Per-frame: is an object of this colour on screen (a few stray pixels do not count)?"""
    return colour_pixels(frames, colour) >= 0.01 * frames.shape[1] * frames.shape[2]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def colour_of(name: str) -> str:
    return name.split()[0]


def check_record(record: dict) -> None:
    assert len(record["options"]) == 4 and len(set(record["options"])) == 4
    assert record["answer"] in "ABCD"
    assert record["options"]["ABCD".index(record["answer"])] == record["answer_text"]
    assert 0.0 <= record["depth"] <= 1.0


def check_answer(frames: np.ndarray, record: dict) -> None:
    """Recompute the answer from the pixels alone and compare."""
    check_record(record)
    events, family, count = record["events"], record["family"], len(frames)
    for event in events:  # each event object is on screen exactly during its spans
        shown = visible(frames, colour_of(event["object"]))
        spans = [(e["start"], e["end"]) for e in events if e["object"] == event["object"]]
        assert runs(shown) == spans, (record["id"], event)
    if family == "needle":
        (event,) = events
        assert event["start"] <= record["depth"] * count <= event["end"]
        if record["question"].startswith("What colour"):
            assert record["answer_text"] == colour_of(event["object"])
        elif record["question"].startswith("What digit"):
            assert record["answer_text"] == str(event["digit"]) and event["object"] in record["question"]
        else:
            assert record["answer_text"] == event["object"]
            for option in record["options"]:  # wrong options in another colour: that colour never shows
                if colour_of(option) != colour_of(event["object"]):
                    assert not visible(frames, colour_of(option)).any(), option
    elif family == "order":
        first_seen = {}
        for option in record["options"]:
            shown = np.flatnonzero(visible(frames, colour_of(option)))
            if len(shown):
                first_seen[option] = shown[0]
        assert set(first_seen) == {e["object"] for e in events}
        pick = min if "first" in record["question"] else max
        assert record["answer_text"] == pick(first_seen, key=first_seen.get)
    elif family == "count":
        assert len(runs(visible(frames, colour_of(events[0]["object"])))) == int(record["answer_text"])
    elif family == "locate":
        ((start, end),) = runs(visible(frames, colour_of(events[0]["object"])))
        quarter = "ABCD".index(record["answer"])
        assert quarter * count / 4 <= start and end <= (quarter + 1) * count / 4


@pytest.mark.parametrize("family", FAMILIES)
def test_answers_correct_by_construction(family):
    for index in range(6):
        case = make_case(family, index, seed=3, params=SMALL)
        assert case.frames.shape == (64, 96, 96, 3) and case.frames.dtype == np.uint8
        check_answer(case.frames, case.record)


def test_same_seed_same_case_and_independent_of_n():
    first = make_case("order", 2, seed=11, params=SMALL)
    again = list(iter_cases("order", 3, seed=11, params=SMALL))[2]
    assert np.array_equal(first.frames, again.frames) and first.record == again.record
    other = make_case("order", 2, seed=12, params=SMALL)
    assert not np.array_equal(first.frames, other.frames)


def test_all_families(tmp_path):
    cases = list(iter_cases("all", 2, params=SMALL))
    assert [c.record["family"] for c in cases] == [f for f in FAMILIES for _ in range(2)]


def test_written_suite_is_byte_identical(tmp_path):
    params = SynthParams(frames=32, size=64, span=2)
    for name in ("a", "b"):
        write_suite(tmp_path / name, "all", 1, seed=5, params=params)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 1 + len(FAMILIES)
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_synth_command_needle_acceptance(tmp_path, capsys):
    """`xcomp synth OUT --family needle --n 8 --frames 256 --seed 7`: playable mp4s, correct JSONL."""
    assert (
        run(parse([str(tmp_path), "--family", "needle", "--n", "8", "--frames", "256", "--seed", "7"])) == 0
    )
    assert "wrote 8 cases" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [f"needle_{i:05d}" for i in range(8)]
    for record in records:
        assert set(record) >= {"id", "video", "question", "options", "answer", "answer_text", "family"}
        assert set(record) >= {"depth", "span", "num_frames", "fps", "seed"}
        video = load_video(tmp_path / record["video"], FrameSamplingConfig(size=None))
        assert len(video.frames) == 256 and video.duration == pytest.approx(256.0)
        check_answer(video.frames, record)  # answers hold on the decoded (lossy) frames too


def test_synth_command_frame_folders(tmp_path):
    argv = [
        str(tmp_path),
        "--family",
        "count",
        "--n",
        "2",
        "--frames",
        "48",
        "--size",
        "64",
        "--format",
        "frames",
    ]
    assert run(parse(argv)) == 0
    for line in (tmp_path / "questions.jsonl").read_text().splitlines():
        record = json.loads(line)
        folder = tmp_path / record["video"]
        assert folder.is_dir() and len(list(folder.glob("*.png"))) == 48
        video = load_video(folder, FrameSamplingConfig(size=None, min_frames=4), num_frames=48)
        check_answer(video.frames, record)


def test_invalid_parameters(tmp_path, capsys):
    with pytest.raises(ConfigError):
        SynthParams(frames=8)
    with pytest.raises(ConfigError):
        SynthParams(noise=1.5)
    with pytest.raises(ConfigError):
        SynthParams(size=63)
    with pytest.raises(ConfigError):
        make_case("needle", depth=1.2)
    with pytest.raises(ConfigError):
        make_case("bogus")
    assert main([str(tmp_path / "out"), "--span", "100"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_depth_is_controlled():
    for depth in (0.0, 0.5, 1.0):
        record = make_case("needle", 0, seed=1, params=SMALL, depth=depth).record
        assert abs(record["depth"] - depth) <= SMALL.span / SMALL.frames


def test_order_questions_need_room_for_three_spread_events():
    params = SynthParams(frames=16, size=32, span=4)
    make_case("needle", 0, 0, params)  # a quarter of the video holds one event
    with pytest.raises(ConfigError, match="order questions need >= 24 frames"):
        make_case("order", 0, 0, params)


def test_read_questions_names_the_bad_line(tmp_path):
    from xcomp.synth.generate import read_questions

    good = '{"video": "v.mp4", "question": "q?", "answer": "A"}'
    path = tmp_path / "q.jsonl"
    path.write_text(f"{good}\n\n{good}\n")
    assert len(read_questions(path, ("video", "answer"))) == 2
    for text, message in [
        (f"{good}\n{{oops\n", "q.jsonl:2: not JSON"),
        (f'{good}\n\n{{"video": "v.mp4"}}\n', "q.jsonl:3: missing keys ['answer']"),
        ("[1, 2]\n", "q.jsonl:1: expected a JSON object"),
        ("\n", "no questions"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            read_questions(path, ("video", "answer"))


def test_several_questions_per_video_have_exact_answers(tmp_path):
    """`questions_per_video`: a case's question, counts of each of its objects, then its question reshuffled."""
    from collections import Counter

    from xcomp.synth.generate import read_questions

    params = SynthParams(frames=32, size=64, span=2, noise=0.3)
    one = read_questions(write_suite(tmp_path / "one", ["order", "count"], 2, seed=4, params=params), ["id"])
    rows = read_questions(
        write_suite(tmp_path / "five", ["order", "count"], 2, seed=4, params=params, questions_per_video=5), ["id"]
    )
    assert len(rows) == 20 and len({r["id"] for r in rows}) == 20 and len({r["video"] for r in rows}) == 4
    assert [r for r in rows if "follow_up" not in r] == one  # each video's first question is the suite's own
    for row in rows:
        assert row["options"][ord(row["answer"]) - ord("A")] == row["answer_text"]
        if row.get("follow_up") and row["family"] == "count" and row["question"].startswith("How many times"):
            shown = Counter(e["object"] for e in row["events"])
            (name,) = shown
            assert name in row["question"] and int(row["answer_text"]) == shown[name]
    lead = {r["video"]: r for r in rows if "follow_up" not in r}
    reshuffled = [r for r in rows if r["question"] == lead[r["video"]]["question"] and "follow_up" in r]
    assert reshuffled and all(sorted(r["options"]) == sorted(lead[r["video"]]["options"]) for r in reshuffled)
