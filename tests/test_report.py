"""Report notebooks: a tiny sweep renders reports/<name>/report.md whose numbers are MLflow's; `xcomp report`
renders it again from MLflow alone. Every notebook in notebooks/ is executed here, so a broken one fails CI."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest

from tests.test_cli import run_cli, run_main
from tests.test_run import ROOT, TINY
from xcomp.tracking import TAG_PARENT

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
SWEEP_NOTEBOOKS = [n for n in NOTEBOOKS if n != "search_report"]
"""Notebooks that render a plain sweep (search_report renders a search: its own test below)."""


def markdown_table(report: Path, heading: str) -> list[dict[str, str]]:
    """The first table after ``heading`` in a rendered report, as rows of cells."""
    lines = report.read_text().splitlines()
    start = lines.index(heading)
    rows = [line for line in lines[start:] if line.startswith("|")]
    table = []
    for line in rows:
        if table and not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header, body = table[0], [r for r in table[2:] if len(r) == len(table[0])]
    end = next((i for i, r in enumerate(body) if r == header), len(body))
    return [dict(zip(header, r)) for r in body[:end]]


CLAIM = "report.claims=[{text:'8-frame segments beat 4',arm:{seg_len:8,keep:0.5},against:{seg_len:4,keep:0.5}}]"
"""The tiny sweep's one claim: its verdict opens the report."""


def arm_run(runs, arm: str):
    """The MLflow run of the arm named ``arm`` ("keep=0.25 seg_len=4"): its overrides include each of arm's."""
    overrides = runs["tags.xcomp.overrides"]
    return runs[[all(f'"{o}"' in tag for o in arm.split()) for tag in overrides]].iloc[0]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{root}/mlflow.db"
    command = [sys.executable, "run.py", "-m", "seg_len=4,8", "keep=0.25,0.5", *TINY, f"paths.root={root}",
               f"logger.tracking_uri={uri}", "report=sweep", "report.name=tiny", CLAIM]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return root, uri


def test_the_sweep_ends_with_a_report_whose_numbers_are_mlflows(sweep):
    root, uri = sweep
    report = root / "reports" / "tiny" / "report.md"
    assert (report.parent / "accuracy_vs_cost.png").stat().st_size > 1000
    rows = markdown_table(report, "## Arms")
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["xcomp"], filter_string=f"tags.`{TAG_PARENT}` != ''")
    assert len(rows) == len(runs) == 4
    for row in rows:
        run = arm_run(runs, row["arm"])
        for column in ("accuracy", "accuracy_se", "token_layers_ratio", "kv_cache_bytes_ratio"):
            assert float(row[column]) == pytest.approx(run[f"metrics.{column}"], abs=5e-4), column
    assert "Traceback" not in report.read_text() and "Warning" not in report.read_text()

    ours, other = arm_run(runs, "keep=0.5 seg_len=8"), arm_run(runs, "keep=0.5 seg_len=4")
    diff = ours["metrics.accuracy"] - other["metrics.accuracy"]
    se = (ours["metrics.accuracy_se"] ** 2 + other["metrics.accuracy_se"] ** 2) ** 0.5
    outcome = "holds" if diff > 2 * se else "does not hold" if diff < -2 * se else "inconclusive"
    lines = report.read_text().splitlines()
    verdicts = lines[lines.index("## Verdicts") + 1 :]
    (line,) = [v for v in verdicts[:3] if v.startswith("- **")]
    assert line.startswith(f"- **{outcome}**: 8-frame segments beat 4 (`") and "seg_len=8" in line.split("`")[1]
    spread = f" ± {ours['metrics.accuracy_se']:.3f}" if se else ","  # two arms without spread: no ± to show
    assert f"accuracy {ours['metrics.accuracy']:.3f}{spread}" in line
    assert lines.index("## Verdicts") < lines.index("## Arms")  # the verdicts come first
    for figure in ("accuracy_over_keep.png", "accuracy_over_seg_len.png", "grid_accuracy.png"):
        assert (report.parent / figure).stat().st_size > 1000, figure  # curves over each number, and the grid


@pytest.mark.parametrize("notebook", SWEEP_NOTEBOOKS)
def test_xcomp_report_renders_again_from_mlflow_alone(sweep, tmp_path, notebook):
    root, uri = sweep
    res = run_cli("report", "tiny", "--experiment", "xcomp", "--tracking-uri", uri, "--notebook", notebook,
                  "--out", str(tmp_path / "again"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    again = markdown_table(tmp_path / "again" / "report.md", "## Arms")
    first = markdown_table(root / "reports" / "tiny" / "report.md", "## Arms")
    keep = ("arm", "accuracy", "accuracy_se", "token_layers_ratio")
    assert [{k: r[k] for k in keep} for r in again] == [{k: r[k] for k in keep} for r in first]
    if notebook == "sweep_report":  # the claims were read back from the sweep's tags
        verdicts = [[v for v in (f / "report.md").read_text().splitlines() if v.startswith("- **")]
                    for f in (tmp_path / "again", root / "reports" / "tiny")]  # fmt: skip
        assert verdicts[0] == verdicts[1] and len(verdicts[0]) == 1


def test_a_relative_store_is_read_from_where_report_was_asked(sweep, tmp_path, monkeypatch):
    root, _ = sweep
    monkeypatch.chdir(root)
    res = run_cli("report", "tiny", "--experiment", "xcomp", "--tracking-uri", "sqlite:///mlflow.db",
                  "--out", str(tmp_path / "relative"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (tmp_path / "relative" / "mlflow.db").exists()
    for name in ("report.md", "report.ipynb"):  # the store is named as asked, not by this machine's path
        text = (tmp_path / "relative" / name).read_text()
        assert str(root) not in text and "sqlite:///mlflow.db" in text


def test_committed_reports_name_no_path_of_the_machine_that_made_them():
    files = [*ROOT.glob("reports/*/report.md"), *ROOT.glob("reports/*/report.ipynb")]
    assert files
    for file in files:
        text = file.read_text()
        assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text, file


def test_report_of_an_unknown_experiment_is_one_line(sweep, capsys):
    _, uri = sweep
    code, err = run_main(capsys, "report", "nothing_here", "--experiment", "xcomp", "--tracking-uri", uri)
    assert code != 0 and len(err) == 1 and "no sweep of +experiment=nothing_here" in err[0], err
    code, err = run_main(capsys, "report", "tiny", "--experiment", "xcomp", "--tracking-uri", uri, "--notebook", "nope")
    assert code != 0 and len(err) == 1 and "no report notebook" in err[0], err


def test_a_fresh_seed_rerun_is_compared_arm_by_arm_with_the_original(sweep, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(sweep[0], root)  # the original sweep's store, so the rerun adds to a copy
    uri = f"sqlite:///{root}/mlflow.db"
    base = [sys.executable, "run.py", "-m", "seg_len=4,8", "keep=0.25,0.5", *TINY, f"paths.root={root}",
            f"logger.tracking_uri={uri}", "report=sweep", "report.name=tiny_seed5", CLAIM]  # fmt: skip
    refused = subprocess.run([*base, "report.rerun_of=nothing_here"], cwd=ROOT, capture_output=True, text=True)
    errors = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 1 and len(errors) == 1 and "no sweep of +experiment=nothing_here" in errors[0], errors

    done = subprocess.run([*base, "report.rerun_of=tiny", "data.seed=5"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    mlflow.set_tracking_uri(uri)
    parents = mlflow.search_runs(experiment_names=["xcomp"], filter_string="tags.`xcomp.report.name` != ''")
    by_name = parents.set_index("tags.xcomp.report.name")["run_id"]
    assert len(parents) == 2 and parents["tags.xcomp.report.original"].dropna().tolist() == [by_name["tiny"]]
    children = {name: mlflow.search_runs(experiment_names=["xcomp"], filter_string=f"tags.`{TAG_PARENT}` = '{run}'")
                for name, run in by_name.items()}  # fmt: skip

    report = root / "reports" / "tiny_seed5" / "report.md"
    rows = markdown_table(report, "## Against the original run")
    assert len(rows) == 4
    within = 0
    for row in rows:
        rerun, first = (arm_run(children[name], row["arm"]) for name in ("tiny_seed5", "tiny"))
        assert float(row["accuracy (rerun)"]) == pytest.approx(rerun["metrics.accuracy"], abs=5e-4)
        assert float(row["accuracy (original)"]) == pytest.approx(first["metrics.accuracy"], abs=5e-4)
        gap = rerun["metrics.accuracy"] - first["metrics.accuracy"]
        combined = math.hypot(rerun["metrics.accuracy_se"], first["metrics.accuracy_se"])
        assert row["within"] == str(abs(gap) <= 2 * combined)
        within += abs(gap) <= 2 * combined
    assert f"**{within} of 4 arms within 2 combined SE**" in report.read_text()

    res = run_cli("report", "tiny", "--experiment", "xcomp", "--tracking-uri", uri, "--rerun-of", "tiny_seed5",
                  "--out", str(tmp_path / "reverse"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]  # an earlier sweep compared after the fact, the other way round
    reverse = markdown_table(tmp_path / "reverse" / "report.md", "## Against the original run")
    assert {r["arm"]: r["within"] for r in reverse} == {r["arm"]: r["within"] for r in rows}


def test_the_schedule_search_experiment_tries_the_cosine_first_and_reports_its_front(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "run.py", "+experiment=schedule_search", "search.n_trials=2", "train.steps=2",
               "val.n=1", *TINY, f"paths.root={tmp_path}", f"logger.tracking_uri={uri}"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["schedule_search"], filter_string=f"tags.`{TAG_PARENT}` != ''")
    runs = runs.set_index(runs["params.trial"].astype(int)).sort_index()
    assert list(runs.index) == [0, 1]
    assert runs.loc[0, "tags.schedule.kept"] == "[16, 14, 9, 3]"  # the enqueued paper cosine is trial 0
    assert runs.loc[0, "params.schedule.shape"] == "cosine" and runs.loc[0, "params.schedule.end"] == "4"

    report = tmp_path / "reports" / "schedule_search" / "report.md"
    assert (report.parent / "fronts.png").stat().st_size > 1000
    rows = {int(r["trial"]): r for r in markdown_table(report, "## Trials")}
    assert sorted(rows) == [0, 1]
    for trial, row in rows.items():
        for column in ("val.accuracy", "val.token_layers_ratio"):
            assert float(row[column]) == pytest.approx(runs.loc[trial, f"metrics.{column}"], abs=5e-4), column
    text = report.read_text()
    verdicts = [line for line in text.splitlines() if line.startswith("- **")]
    assert len(verdicts) == 2 and all("trial=0" in v or "not testable" in v for v in verdicts), verdicts
    assert "Traceback" not in text and "Warning" not in text
    trials = optuna.load_study(study_name="schedule_search", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    repeats = sum("duplicate_of" in t.user_attrs for t in trials)  # the report counts the study's trials, not runs
    assert f"the study has {len(trials)} trials, {repeats} of them repeats" in text.replace("\n", " ")


@pytest.mark.parametrize("notebook", ["sweep_report", "search_report"])
def test_each_notebook_declares_the_report_parameters(notebook):
    """A notebook's `parameters` cell holds exactly `ReportParameters`' names and defaults, so one declaration says
    what every report is given (a parameter added to one notebook and not the dataclass fails here)."""
    import dataclasses

    import jupytext

    from xcomp.reporting.parameters import ReportParameters

    cells = jupytext.read(ROOT / "notebooks" / f"{notebook}.py").cells
    (cell,) = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    declared: dict = {}
    exec(cell.source, {}, declared)
    expected = {f.name: f.default for f in dataclasses.fields(ReportParameters)}
    assert declared == expected

