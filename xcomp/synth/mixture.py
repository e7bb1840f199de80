"""A small data mixture in VideoChat-Flash's SFT format, generated: what `train/data=mixture` reads, to try SCT's
recipe offline (``xcomp synth OUT --mixture``) and to test the mixture source.

It writes ``videos/`` (one mp4 per synthetic case), ``videos.json`` (a JSON list of LLaVA conversation records:
the case's question and its follow-ups as turns, options in the human text, the option letter as the gpt answer),
``images/`` with ``images.jsonl`` (flat-colour PNGs asked their colour; every other record shows two images and
asks the colour of the second; none when ``images`` is 0), and ``mixture.yaml`` naming them with
``sampling_strategy: all``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from xcomp.model.processing import OPTION_LETTERS, QuestionFormat
from xcomp.synth.follow_up import follow_ups
from xcomp.synth.generate import SynthParams, iter_cases, write_mp4

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 70, 230), "yellow": (240, 220, 40)}
"""The image records' colours."""


def _turn(record: dict, first: bool) -> list[dict]:
    question = QuestionFormat().render(record["question"], record["options"])
    return [{"from": "human", "value": f"<image>\n{question}" if first else question},
            {"from": "gpt", "value": record["answer"]}]  # fmt: skip


def write_mixture(
    outdir: str | Path, n: int, seed: int = 0, params: SynthParams | None = None, turns: int = 2, images: int = 4
) -> Path:
    """Write the mixture of ``n`` cases of every family (``turns`` questions each) and ``images`` image records
    under ``outdir`` (see module); returns the path of mixture.yaml."""
    out = Path(outdir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for case in iter_cases("all", n, seed, params):
        name = f"{case.record['id']}.mp4"
        write_mp4(out / "videos" / name, case.frames, case.record["fps"])
        asked = [case.record, *follow_ups(case.record, turns - 1)]
        conversation = [t for k, r in enumerate(asked) for t in _turn(r, k == 0)]
        records.append({"id": case.record["id"], "video": name, "conversations": conversation})
    (out / "videos.json").write_text(json.dumps(records, indent=1) + "\n")
    rng = np.random.default_rng(seed)
    names, size = list(COLOURS), (params or SynthParams()).size
    with (out / "images.jsonl").open("w") as lines:
        for k in range(images):
            shown = [names[i] for i in rng.integers(0, len(names), 2 if k % 2 else 1)]
            files = []
            for j, colour in enumerate(shown):
                files.append(f"colour_{k:04d}_{j}.png")
                Image.new("RGB", (size, size), COLOURS[colour]).save(out / "images" / files[-1])
            asked = "the second image" if len(shown) > 1 else "the image"
            question = QuestionFormat().render(f"What colour is {asked}?", names)
            conversation = [{"from": "human", "value": f"{question}\n<image>"},  # placeholder at the end, as some sets
                            {"from": "gpt", "value": OPTION_LETTERS[names.index(shown[-1])]}]  # fmt: skip
            record = {"id": f"colour_{k:04d}", "image": files if len(files) > 1 else files[0], "conversations": conversation}
            lines.write(json.dumps(record) + "\n")
    mixture = out / "mixture.yaml"
    named = ["videos.json", "videos"], *([["images.jsonl", "images"]] if images else [])
    mixture.write_text("datasets:\n" + "".join(
        f"  - json_path: {annotations}\n    data_root: {media}\n    sampling_strategy: all\n" for annotations, media in named
    ))  # fmt: skip
    return mixture
