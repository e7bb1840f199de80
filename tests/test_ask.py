"""`xcomp ask` end to end: a generated video, a saved tiny model, the answer with kept frames and savings."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TOKENIZER_DIR, require, require_decord
from tests.test_cli import run_cli, run_main
from xcomp import XCompConfig, XCompForCausalLM
from xcomp.model.processing import XCompProcessor
from xcomp.synth.generate import SynthParams, write_suite
from xcomp.train.recipe import vocab_for


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    processor = XCompProcessor.from_pretrained(require(TOKENIZER_DIR), image_size=64)
    subset = vocab_for(processor, [("Which object appears?", ["red star", "blue ring"], "A")])
    config = XCompConfig.tiny(num_layers=4, vocab_subset=subset, video_token_id=processor.video_token_id)
    path = tmp_path_factory.mktemp("model")
    XCompForCausalLM(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    jsonl = write_suite(out, "needle", 1, seed=3, params=SynthParams(frames=32, size=64, span=2))
    return out, json.loads(jsonl.read_text().splitlines()[0])


def test_ask_answers_with_kept_frames_and_savings(model_dir, suite):
    out, case = suite
    res = run_cli(
        "ask", str(out / case["video"]), case["question"], "--options", *case["options"],
        "--model", str(model_dir), "--frames", "32", "--keep", "8", "--show-frames",
    )
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    assert "answer" in lines and "choice" in lines
    assert lines["frames"] == "8 kept of 32 sampled"
    kept = [int(item.split("@")[0]) for item in lines["kept frames"].split(", ")]
    assert len(kept) == 8 and kept == sorted(kept) and all(0 <= i < 32 for i in kept)
    assert "x)" in lines["LLM cost vs dense over all 32 frames"]


def _answer_lines(res) -> dict[str, str]:
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    return {key: value for key, value in lines.items() if not key.startswith(("seconds", "time"))}


def test_ask_gives_the_same_frames_and_answer_with_either_video_backend(model_dir, suite):
    require_decord()
    out, case = suite
    ask = ("ask", str(out / case["video"]), case["question"], "--options", *case["options"], "--model", str(model_dir),
           "--frames", "32", "--keep", "8", "--show-frames")  # fmt: skip
    pyav = _answer_lines(run_cli(*ask, "--video-backend", "pyav"))
    decord = _answer_lines(run_cli(*ask, "--video-backend", "decord"))
    assert pyav["kept frames"] == decord["kept frames"] and pyav["answer"] == decord["answer"]
    assert pyav == decord


def test_ask_with_flash_attention_but_no_flash_attn_is_one_line(model_dir, suite, capsys):
    out, case = suite
    video = str(out / case["video"])
    code, err = run_main(
        capsys, "ask", video, "what?", "--model", model_dir, "--attn-implementation", "flash_attention_2"
    )
    assert code != 0 and len(err) == 1 and "flash_attention_2" in err[0] and "pip install" in err[0], err


def test_ask_bad_inputs_are_one_line_errors(model_dir, tmp_path, capsys):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    res = run_cli("ask", str(not_video), "what?", "--model", str(model_dir))  # the whole process: one line
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error:"), res.stderr
    for video, model, extra in [(tmp_path / "missing.mp4", model_dir, []), (tmp_path, model_dir, ["--frames", "6"]),
                                (not_video, tmp_path / "no_model", [])]:  # fmt: skip
        code, err = run_main(capsys, "ask", video, "what?", "--model", model, *extra)
        assert code != 0 and len(err) == 1 and err[0].startswith("error:"), err


def test_ask_bad_question_and_settings_are_one_line_errors(model_dir, suite, capsys):
    out, case = suite
    video = str(out / case["video"])
    for question, extra, message in [
        ("  ", [], "the question is empty"),
        ("what?", ["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
        ("what?", ["--keep", "1.5"], "--keep is a whole number of frames"),
    ]:
        code, err = run_main(capsys, "ask", video, question, "--model", model_dir, *extra)
        assert code == 2 and len(err) == 1 and message in err[0], err


def test_question_that_does_not_fit_the_context(model_dir, suite):
    out, case = suite
    long_question = "x " * 33000  # one token each: more than the 32,768 positions of the tiny model
    res = run_cli("ask", str(out / case["video"]), long_question, "--model", str(model_dir), "--frames", "32")
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: prompt needs"), res.stderr[-500:]


def test_unparsable_answer_picks_the_option_with_the_lowest_answer_loss(model_dir):
    """A random model answers gibberish; its choice is then the option it finds most likely, which must be the one
    whose teacher-forced answer loss (the training collator and loss, a separate code path) is lowest."""
    import numpy as np
    import torch

    from xcomp.pipeline import XCompPipeline
    from xcomp.train.data import QACollator, QASample

    pipe = XCompPipeline.from_pretrained(model_dir)
    frames = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    question, options = "Which object appears?", ["red star", "blue ring", "red ring", "blue star"]
    answer = pipe.answer(frames, question, options, keep=1.0, max_new_tokens=3, fps=1.0)
    assert answer.choice_scored and answer.choice in "ABCD"
    acc = answer.accounting  # four prefills of the prompt plus an option's few tokens, on top of the answering one
    assert 4 * acc["prefill_flops"] < acc["option_scoring_flops"] < 4.4 * acc["prefill_flops"]
    collate = QACollator(pipe.processor)
    losses = []
    for option in options:
        batch = collate([QASample(frames, question, option, options, duration=8.0)])
        n = int((batch["labels"] != -100).sum())
        with torch.no_grad():
            losses.append(float(pipe.model(**batch).loss) * n)
    assert "ABCD"[int(np.argmin(losses))] == answer.choice


def test_pipeline_settings_round_trip_with_the_model(model_dir, tmp_path):
    import json
    import re

    import pytest

    from xcomp.compression.qc_comp import QCComp
    from xcomp.errors import ConfigError
    from xcomp.pipeline import XCompPipeline
    from xcomp.video.sampling import FrameSamplingConfig

    reference = XCompPipeline.from_pretrained(model_dir)  # no pipeline_config.json: the published settings
    selector = reference.selector
    assert (reference.sampling.max_frames, selector.name, selector.keep, selector.keep_frames) == (1024, "qc", 0.25, None)
    sampling = FrameSamplingConfig(min_frames=8, max_frames=24, multiple_of=4, size=64)
    qc = QCComp(keep_frames=12, segment_frames=4, shifts=(0, 2), scorer="global")
    XCompPipeline(reference.model, reference.processor, sampling=sampling, selector=qc).save_pretrained(tmp_path / "m")
    loaded = XCompPipeline.from_pretrained(tmp_path / "m")
    assert loaded.sampling == sampling and loaded.selector == qc
    assert XCompPipeline.from_pretrained(tmp_path / "m", selector=QCComp()).selector == QCComp()  # arguments win
    data = json.loads((tmp_path / "m" / "pipeline_config.json").read_text())
    for key, value, message in [
        ("keep_frames", "twelve", "select: keep_frames: Value 'twelve' of type 'str' could not be converted"),
        ("shifts", [0, "two"], "select: shifts[1]: Value 'two' of type 'str'"),
        ("scorer", "best", "scorer must be 'local' or 'global', got 'best'"),
        ("name", "best", "select: name must be one of all, qc, uniform, got 'best'"),
    ]:
        (tmp_path / "m" / "pipeline_config.json").write_text(json.dumps({**data, "select": {**data["select"], key: value}}))
        with pytest.raises(ConfigError, match=re.escape(message)):
            XCompPipeline.from_pretrained(tmp_path / "m")
    legacy = {"sampling": data["sampling"], "qc": {"keep": 12, "keep_ratio": 0.25, "segment_frames": 4, "shifts": [0, 2],
                                                   "layers": None, "segment_batch": 16, "scorer": "global"}}  # fmt: skip
    (tmp_path / "m" / "pipeline_config.json").write_text(json.dumps(legacy))  # a file written before `select`
    assert XCompPipeline.from_pretrained(tmp_path / "m").selector == qc


def test_set_starts_from_the_models_selector_and_a_fraction_replaces_its_frame_count():
    from xcomp.cli import _set_selector
    from xcomp.compression.qc_comp import QCComp
    from xcomp.compression.selectors import UniformFrames
    from xcomp.errors import ConfigError, XCompError

    saved = QCComp(keep_frames=32, segment_frames=4)
    assert _set_selector(saved, ["qc.scorer=global"]) == QCComp(keep_frames=32, segment_frames=4, scorer="global")
    assert _set_selector(saved, ["qc.keep=0.5"]).num_kept(128) == 64  # not the model's 32 frames
    assert _set_selector(saved, ["uniform.keep=0.25"]) == UniformFrames(keep=0.25)  # another selector: its defaults
    for bad in (["qc.nope=1"], ["qc.scorer=best"], ["qc.keep=0.5", "uniform.keep=0.5"], ["qc"]):
        with pytest.raises((ConfigError, XCompError)):
            _set_selector(saved, bad)
