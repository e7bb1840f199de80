"""A new SQLite MLflow store opened by several jobs at the same moment (two sweeps started together)."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.test_run import ROOT

OPEN = """
import sys, time
from pathlib import Path
import mlflow  # imported before the start signal, so that the processes race on the store itself
from xcomp.tracking import Tracker
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.002)
print(Tracker(sys.argv[1], "xcomp").experiment_id)
"""


def test_jobs_opening_a_new_sqlite_store_at_once_all_get_the_same_experiment(tmp_path):
    uri, go = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, uri, str(go)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        for _ in range(3)
    ]
    time.sleep(6)  # every process has imported mlflow and waits
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1
