"""More questions about one generated video, so that a suite can have the shape of LVBench (~15 questions per
video) offline: after a case's own question, "how many times does X appear?" for each object of its events (its
answer is exact: decoys never take an asked object's shape or colour), then the case's question with its options
in other orders (a new letter for the same answer). Each follow-up is drawn from its own generator, seeded by
``(seed, family, index, k)``, so a suite's first questions stay the same whatever the count per video."""

from __future__ import annotations

import numpy as np

from xcomp.synth.families import COUNT, FAMILY_CODES, LETTERS


def follow_ups(record: dict, count: int) -> list[dict]:
    """``count`` more questions about the video of case ``record`` (its JSONL record), as records of their own
    (ids ``<id>_q<k>``, k from 1)."""
    objects = [
        o for o in dict.fromkeys(e["object"] for e in record["events"]) if COUNT.format(object=o) != record["question"]
    ]
    out = []
    for k in range(1, count + 1):
        rng = np.random.default_rng([record["seed"], FAMILY_CODES[record["family"]], record["index"], k])
        base = {**record, "id": f"{record['id']}_q{k}", "follow_up": k}
        if k <= len(objects):
            out.append({**base, **_count_question(rng, record, objects[k - 1])})
        else:
            order = rng.permutation(len(record["options"]))
            options = [record["options"][i] for i in order]
            out.append({**base, "options": options, "answer": LETTERS[options.index(record["answer_text"])]})
    return out


def _count_question(rng: np.random.Generator, record: dict, name: str) -> dict:
    """How many times ``name`` appears among the case's events: four consecutive counts, the answer among them."""
    events = [e for e in record["events"] if e["object"] == name]
    times = len(events)
    first = int(rng.integers(max(1, times - 3), times + 1))
    options = [str(first + i) for i in range(4)]
    frames = record["num_frames"]
    depth = float(np.mean([(e["start"] + e["end"]) / 2 / frames for e in events]))
    return {
        "question": COUNT.format(object=name),
        "options": options,
        "answer": LETTERS[times - first],
        "answer_text": str(times),
        "family": "count",
        "depth": round(depth, 4),
        "events": events,
    }
