"""Report notebooks: a tiny sweep renders reports/<name>/report.md whose numbers are MLflow's; `xcomp report`
renders it again from MLflow alone. Every notebook in notebooks/ is executed here, so a broken one fails CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.test_cli import run_cli, run_main
from tests.test_run import ROOT, TINY
from xcomp.tracking import TAG_PARENT

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))


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


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{root}/mlflow.db"
    command = [sys.executable, "run.py", "-m", "compress=lp,heuristic", *TINY, f"paths.root={root}",
               f"logger.tracking_uri={uri}", "report=sweep", "report.name=tiny"]  # fmt: skip
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
    assert len(rows) == len(runs) == 2
    for row in rows:
        run = runs[runs["tags.xcomp.overrides"].str.contains(f'"{row["arm"]}"', regex=False)].iloc[0]
        for column in ("accuracy", "accuracy_se", "token_layers_ratio", "kv_cache_bytes_ratio"):
            assert float(row[column]) == pytest.approx(run[f"metrics.{column}"], abs=5e-4), column
    assert "Traceback" not in report.read_text() and "Warning" not in report.read_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_xcomp_report_renders_again_from_mlflow_alone(sweep, tmp_path, notebook):
    root, uri = sweep
    res = run_cli("report", "tiny", "--experiment", "xcomp", "--tracking-uri", uri, "--notebook", notebook,
                  "--out", str(tmp_path / "again"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    again = markdown_table(tmp_path / "again" / "report.md", "## Arms")
    first = markdown_table(root / "reports" / "tiny" / "report.md", "## Arms")
    keep = ("arm", "accuracy", "accuracy_se", "token_layers_ratio")
    assert [{k: r[k] for k in keep} for r in again] == [{k: r[k] for k in keep} for r in first]


def test_a_relative_store_is_read_from_where_report_was_asked(sweep, tmp_path, monkeypatch):
    root, _ = sweep
    monkeypatch.chdir(root)
    res = run_cli("report", "tiny", "--experiment", "xcomp", "--tracking-uri", "sqlite:///mlflow.db",
                  "--out", str(tmp_path / "relative"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (tmp_path / "relative" / "mlflow.db").exists()


def test_report_of_an_unknown_experiment_is_one_line(sweep, capsys):
    _, uri = sweep
    code, err = run_main(capsys, "report", "nothing_here", "--experiment", "xcomp", "--tracking-uri", uri)
    assert code != 0 and len(err) == 1 and "no sweep of +experiment=nothing_here" in err[0], err
    code, err = run_main(capsys, "report", "tiny", "--experiment", "xcomp", "--tracking-uri", uri, "--notebook", "nope")
    assert code != 0 and len(err) == 1 and "no report notebook" in err[0], err
