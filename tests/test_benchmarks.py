"""The five long-video benchmarks as data sources, on small copies the tests write in each published schema
(tests/benchmark_files.py): parsing with each format's quirks, one-line errors for bad rows and missing videos,
`xcomp data check`, jobs end to end with their breakdowns in MLflow, and the metrics on hand-computed cases."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests import benchmark_files as files
from tests.test_run import ROOT, all_runs, compose_run, run_job
from xcomp.data.source import DataError, source_class
from xcomp.evaluation.breakdowns import clustered_se
from xcomp.evaluation.report import Record
from xcomp.evaluation.runner import STAGES, summarize

TINY = ["frames=16", "select=uniform"]
"""16 frames of the 16-second videos; QC-Comp is not what these tests are about."""
BREAKDOWNS = {
    "lvbench": ["accuracy.question_type.reasoning", "accuracy.question_type.key_information_retrieval",
                "accuracy.type.sport"],
    "videomme": ["accuracy.duration.short", "accuracy.duration.long", "accuracy.domain.Sports",
                 "accuracy.task_type.Counting_Problem"],
    "mlvu": ["accuracy.question_type.plotQA", "accuracy.question_type.count", "accuracy.macro"],
    "longvideobench": ["accuracy.duration_group.15", "accuracy.duration_group.600", "accuracy.question_category.T3O"],
    "egoschema": [],
}  # fmt: skip
"""Metric keys each benchmark's job must log (besides accuracy and its SEs)."""


def source(name: str, root: Path, **settings):
    annotations, videos = files.WRITERS[name](root)
    return source_class(name)(annotations=str(annotations), videos=str(videos), **settings)


def test_each_format_is_read_with_its_quirks(tmp_path):
    lv = source("lvbench", tmp_path / "lv").suite()
    assert [q.video for q in lv.questions] == ["lv_a", "lv_a", "lv_b", "lv_b"]
    first = lv.questions[0]
    assert first.options == ["red", "green", "blue", "yellow"] and first.answer == "A"  # "(A) red" -> text, letter
    assert first.meta["question_type"] == ["key information retrieval", "reasoning"]
    assert lv.paths["lv_a"].name == "lv_a.mp4" and lv.paths["lv_b"].is_dir()  # nested file, frame folder

    annotations, videos = files.lvbench_meta(tmp_path / "meta")
    meta = source_class("lvbench")(annotations=str(annotations), videos=str(videos)).suite()
    assert [q.id for q in meta.questions] == ["lm_a_0", "lm_a_1", "lm_b_0", "lm_b_1"]
    assert meta.questions[1].question == "What colour is square 1?" and meta.questions[1].options[3] == "yellow"
    assert [q.answer for q in meta.questions] == ["A", "B", "B", "C"]

    mme = source("videomme", tmp_path / "mme").suite()
    assert mme.questions[0].options[0] == "red" and mme.paths["yt_b"].suffix == ".MP4"

    mlvu_source = source("mlvu", tmp_path / "mlvu")
    mlvu = mlvu_source.suite()
    assert [q.answer for q in mlvu.questions] == ["A", "B", "B", "C"]  # the answers' texts as letters
    assert mlvu.paths["ml_a.mp4"].parent.name == "1_plotQA" and mlvu.paths["ml_b.mp4"].parent.name == "count"
    assert "8_sub_scene.json" in mlvu_source.notes[0]

    lvb = source("longvideobench", tmp_path / "lvb").suite()
    assert [len(q.options) for q in lvb.questions] == [3, 4, 3, 4]  # "N/A" options dropped
    assert [q.answer for q in lvb.questions] == ["A", "B", "B", "C"]

    ego = source("egoschema", tmp_path / "ego").suite()
    assert [q.answer for q in ego.questions] == ["A", "B", "C", "D"] and len(ego.questions[0].options) == 5


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("lvbench", lambda rows: rows[2].update(answer="(E) purple"), "lvbench.json: row 3: answer:"),
        ("lvbench", lambda rows: rows[1].pop("candidates"), "lvbench.json: row 2: candidates:"),
        ("videomme", lambda rows: rows[3].update(answer="F"), "row 4: answer: 'F' is not one of the letters ABCD"),
        ("videomme", lambda rows: rows[0].update(options=["red", "B. green"]), "row 1: options: option 1 'red'"),
        ("mlvu", lambda files: files["4_count"][1].update(answer="purple"), "4_count.json: row 2: answer:"),
        ("longvideobench", lambda rows: rows[0].update(correct_choice=4), "row 1: correct_choice: 4 is not the index"),
        ("egoschema", lambda rows: rows[1].update(answer=7), "row 2: answer: 7 is not an option index 0-4"),
        ("egoschema", lambda rows: rows[3].update(question_idx="q0"), "row 4: id: 'q0' appears twice (first at"),
        ("videomme", lambda rows: rows[1].update(question_id=None), "row 2: question_id: expected an id"),
        ("mlvu", lambda files: files["1_plotQA"][0].update(candidates=["red", "red", "blue"]),
         "1_plotQA.json: row 1: answer: 'red' matches 2 options"),
    ],
)
def test_a_row_that_does_not_fit_its_schema_names_the_file_row_and_field(tmp_path, name, edit, message):
    annotations, videos = files.WRITERS[name](tmp_path, edit)
    with pytest.raises(DataError) as info:
        source_class(name)(annotations=str(annotations), videos=str(videos)).suite()
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_missing_videos_stop_the_job_or_are_skipped_and_counted(tmp_path, capsys):
    annotations, videos = files.videomme(tmp_path / "mme")
    (videos / "yt_b.MP4").unlink()
    with pytest.raises(DataError, match=r"1 of 2 videos missing under .*data \(yt_b\)"):
        source_class("videomme")(annotations=str(annotations), videos=str(videos)).suite()
    settings = [f"data.annotations={annotations}", f"data.videos={videos}", *TINY]
    with pytest.raises(SystemExit):
        run_job(compose_run(tmp_path, "data=videomme", *settings))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 1 of 2 videos missing"), err
    run_job(compose_run(tmp_path, "data=videomme", "data.missing=skip", *settings))
    finished = [r for r in all_runs(tmp_path) if r.info.status == "FINISHED"]
    assert finished[0].data.metrics["questions_skipped"] == 2 and finished[0].data.metrics["questions"] == 2


def test_limit_takes_the_first_questions_in_video_order(tmp_path):
    suite = source("lvbench", tmp_path, limit=3).suite()
    assert [q.video for q in suite.questions] == ["lv_a", "lv_a", "lv_b"]


@pytest.mark.parametrize("name", list(files.WRITERS))
def test_a_benchmark_job_logs_accuracy_its_cluster_se_and_breakdowns(tmp_path, name):
    annotations, videos = files.WRITERS[name](tmp_path / "data")
    cfg = compose_run(tmp_path, f"data={name}", f"data.annotations={annotations}", f"data.videos={videos}", *TINY)
    assert cfg.data.sampling == "fps" and not cfg.data.score_options and cfg.data.answer_rule == "first_letter"
    run_job(cfg)
    (record,) = all_runs(tmp_path)
    m = record.data.metrics
    assert record.info.status == "FINISHED" and m["questions"] == 4 and m["videos"] == 2
    assert {"accuracy", "accuracy_se", "accuracy_se_cluster", "unparsed", *BREAKDOWNS[name]} <= set(m)
    assert m["sampled_frames"] == 16  # 1 fps over 16 s: a multiple of 8, at most `frames`
    artifacts = Path(record.info.artifact_uri.removeprefix("file://"))
    rows = [json.loads(line) for line in (artifacts / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("meta" in r and "video" in r for r in rows)


def test_the_card_sweep_on_a_benchmark_logs_and_reports_each_arms_breakdowns(tmp_path):
    from xcomp.reporting.sweep import breakdown_tables, sweep_runs

    annotations, videos = files.videomme(tmp_path / "data")
    command = [sys.executable, "run.py", "-m", "compress=lp,heuristic", "seg_len=8,16", "data=videomme",
               f"data.annotations={annotations}", f"data.videos={videos}", "frames=16", f"paths.root={tmp_path}",
               f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "report=sweep", "report.name=mme"]  # fmt: skip
    res = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    runs = all_runs(tmp_path)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    assert all({"accuracy_se_cluster", "accuracy.duration.short", "accuracy.duration.long"} <= set(r.data.metrics)
               for r in children)  # fmt: skip
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    grids = breakdown_tables(sweep_runs(f"sqlite:///{tmp_path}/mlflow.db", "xcomp", parent.info.run_id))
    assert set(grids) == {"duration", "domain", "task_type"} and grids["duration"].shape == (4, 2)
    report = (tmp_path / "reports" / "mme" / "report.md").read_text()
    assert "### By `duration`" in report and "accuracy_se_cluster" in report


def test_an_unknown_benchmark_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "run.py", "data=lvbenchh"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and "data/lvbenchh" in res.stderr.splitlines()[0] and "Traceback" not in res.stderr
    cli = [sys.executable, "-m", "xcomp.cli", "data", "check", "lvbenchh", "--annotations", "x", "--videos", "y"]
    res = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.strip() == (
        "error: unknown benchmark 'lvbenchh'; known: egoschema, jsonl, longvideobench, lvbench, mlvu, synth, videomme"
    )


def test_data_check_counts_questions_videos_missing_and_breakdowns(tmp_path, capsys):
    from xcomp.cli import main

    annotations, videos = files.lvbench(tmp_path)
    args = ["data", "check", "lvbench", "--annotations", str(annotations), "--videos", str(videos)]
    assert main(args) == 0
    facts = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert (facts["questions"], facts["videos"], facts["missing videos"]) == ("4", "2", "0")
    assert facts["question_type.reasoning"] == "4" and facts["question_type.key information retrieval"] == "1"
    (videos / "00000" / "lv_a.mp4").unlink()
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "missing videos: 1\n" in out and "missing: lv_a\n" in out
    assert main([*args, "--allow-missing"]) == 0
    capsys.readouterr()
    broken, _ = files.lvbench(tmp_path / "broken", lambda rows: rows[0].update(answer="(Z) nothing"))
    assert main(["data", "check", "lvbench", "--annotations", str(broken), "--videos", str(videos)]) == 1
    assert capsys.readouterr().err.startswith("error: lvbench.json: row 1: answer:")


def record(video: str, correct: bool, **meta) -> Record:
    return Record("s", 16, 16, 16, f"{video}-{len(meta)}", "", None, "A", "A" if correct else "B", video=video,
                  meta=meta, cost=COST)  # fmt: skip


COST = {
    "token_layers": 1, "dense_token_layers": 1, "prefill_flops": 1, "dense_prefill_flops": 1, "kv_cache_bytes": 1,
    "dense_kv_cache_bytes": 1, "scoring_flops": 0, "option_scoring_flops": 0,
    "seconds": dict.fromkeys(STAGES, 0.0),
}  # fmt: skip


def test_mlvu_headline_is_the_macro_mean_over_task_types():
    records = [record("a", True, question_type="plotQA"), record("b", True, question_type="plotQA"),
               record("c", False, question_type="plotQA"), record("d", False, question_type="count")]  # fmt: skip
    m = summarize(records, ("question_type",), macro="question_type")
    assert m["accuracy"] == 0.5  # micro: 2 of 4
    assert m["accuracy.macro"] == pytest.approx((2 / 3 + 0) / 2)  # M-Avg: plotQA 2/3, count 0
    assert m["accuracy.question_type.plotQA"] == pytest.approx(2 / 3) and m["accuracy.question_type.count"] == 0
    assert m["accuracy.macro_se"] == pytest.approx(math.sqrt((2 / 3) * (1 / 3) / 3) / 2)


def test_a_question_of_several_types_counts_in_each():
    records = [record("a", True, question_type=["entity recognition", "reasoning"]),
               record("a", False, question_type=["reasoning"])]  # fmt: skip
    m = summarize(records, ("question_type",))
    assert m["accuracy.question_type.entity_recognition"] == 1.0 and m["accuracy.question_type.reasoning"] == 0.5


def test_the_clustered_se_counts_questions_of_one_video_as_correlated():
    same = [record("v1", True), record("v1", True), record("v2", False), record("v2", False)]
    # mean 0.5, d = ±0.5; var = 1/3, var/n = 1/12; cross = ((1)² - 0.5 + (-1)² - 0.5) / 16 = 1/16
    assert clustered_se(same) == pytest.approx(math.sqrt(1 / 12 + 1 / 16))
    apart = [record(f"v{i}", c) for i, c in enumerate([True, True, False, False])]
    assert clustered_se(apart) == pytest.approx(math.sqrt(1 / 12))  # one question per video: std / sqrt(n)
    m = summarize(same)
    assert m["accuracy_se"] == pytest.approx(0.25) and m["accuracy_se"] < m["accuracy_se_cluster"]


def test_the_first_letter_rule_and_the_prompts_as_published():
    from xcomp.model.processing import first_letter

    assert [first_letter(t, 4) for t in ("B", "(C) blue", "D. yellow", "The answer is A.", "Because", "E")] == [
        "B", "C", "D", "A", None, None,
    ]  # fmt: skip
    mme = source_class("videomme")(annotations="x", videos="y").question_format.render("Q?", ["red", "blue"])
    assert mme.startswith("These are the frames of a video.") and "\nQuestion: Q?\nOption:\nA. red\nB. blue\n" in mme
    assert mme.endswith("Answer with the option's letter from the given choices directly.")
    mlvu = source_class("mlvu")(annotations="x", videos="y", prompt="lmms_eval").question_format.render("Q?", ["a", "b"])
    assert mlvu == "Q?\n(A) a\n(B) b\nOnly give the best option.\nBest option: ("


def test_the_synthetic_suite_can_have_the_lvbench_shape(tmp_path):
    """Several questions per generated video: the job answers them video by video and clusters their SE."""
    from tests.test_run import TINY as SYNTH_TINY

    run_job(compose_run(tmp_path, *SYNTH_TINY, "data.questions_per_video=3", "select=uniform"))
    (record,) = all_runs(tmp_path)
    m = record.data.metrics
    assert (m["questions"], m["videos"]) == (6, 2) and "accuracy_se_cluster" in m


def test_more_bad_input_is_one_line(tmp_path, capsys):
    """A folder where a file is expected, text that is not UTF-8, `data check` on a generated suite, more processes
    than videos, and a broken video decoded by a worker process: each one line naming what is wrong."""
    from xcomp.cli import main
    from xcomp.errors import ConfigError, XCompError

    annotations, videos = files.videomme(tmp_path / "mme")
    with pytest.raises(ConfigError, match="is a file"):
        source_class("videomme")(annotations=str(annotations.parent), videos=str(videos)).suite()
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"question": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(DataError, match="latin.json: not UTF-8"):
        source_class("lvbench")(annotations=str(latin), videos=str(videos)).suite()
    assert main(["data", "check", "synth", "--annotations", "x", "--videos", "y"]) == 1
    assert capsys.readouterr().err.startswith("error: synth is not read from a benchmark's files; data check takes")

    from xcomp.evaluation.suite import EvalSuite, frame_sampling

    source = source_class("videomme")(annotations=str(annotations), videos=str(videos))
    suite = EvalSuite(source, source.suite(), *frame_sampling(source, 4, 64, 4))
    assert suite.num_frames is None and suite.sampling.max_frames == 4  # fps sampling never above `frames`
    with pytest.raises(XCompError, match="2 videos for 3 processes"):
        suite.loader(0, 3)

    (videos / "yt_a.mp4").write_bytes(b"not a video" * 100)
    settings = [f"data.annotations={annotations}", f"data.videos={videos}", "eval.workers=1", *TINY]
    with pytest.raises(SystemExit):
        run_job(compose_run(tmp_path, "data=videomme", *settings))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "yt_a.mp4" in err[0] and "Caught" not in err[0], err
