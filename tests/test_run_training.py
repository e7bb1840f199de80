"""run.py train=...: a training stage inside a job, one MLflow run holding its curve and its test, resumed in
that run after a kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.test_run import ROOT, TINY, all_runs, client, compose_run, run_job
from xcomp.shipped import shipped_model

TRAIN = [
    "train=sct", "train.steps=4", "train.save_every=2", "train.log_every=1", "train.batch_size=2",
    "train.data.num_samples=8", "train.data.fraction=1", "train.data.num_frames=[16]", "train.data.families=[locate]",
]  # fmt: skip
"""SCT of the shipped LP-Comp model for 4 steps of 2 samples."""


def test_a_training_job_logs_its_curve_and_tests_the_trained_model(tmp_path):
    run_job(compose_run(tmp_path, *TRAIN, "train.val_every=2", "val.n=1", *TINY, "data.n=4"))
    (record,) = all_runs(tmp_path)
    c = client(tmp_path)
    assert record.info.status == "FINISHED" and "accuracy" in record.data.metrics
    assert [m.step for m in c.get_metric_history(record.info.run_id, "loss")] == [1, 2, 3, 4]
    assert [m.step for m in c.get_metric_history(record.info.run_id, "val.accuracy")] == [2, 4]
    assert record.data.params["train.init"] == shipped_model("xcomp_tiny")
    trained = record.data.tags["model.trained"]
    assert trained.startswith(str(tmp_path / "outputs" / "train"))
    assert "model/model.safetensors" in {a.path for a in c.list_artifacts(record.info.run_id, "model")}
    before = load_file(f"{shipped_model('xcomp_tiny')}/model.safetensors")
    after = load_file(f"{trained}/model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the test answered with tuned weights

    # Lightning's test loop gives the numbers the spine's evaluation gives for the trained model on the same suite
    run_job(compose_run(tmp_path, "model=xcomp_tiny", f"model.path={trained}", *TINY, "data.n=4"))
    spine = next(r for r in all_runs(tmp_path) if r.info.run_id != record.info.run_id)
    assert spine.info.status == "FINISHED" and "model.trained" not in spine.data.tags
    evaluated = {k: v for k, v in spine.data.metrics.items() if not k.startswith(("seconds.", "cache."))}
    assert {k: record.data.metrics.get(k) for k in evaluated} == evaluated and evaluated["questions"] == 8
    assert 0 < evaluated["accuracy"] < 1 and {"token_layers_ratio", "prefill_flops"} <= evaluated.keys()
    assert any(k.startswith("accuracy_by_depth.") for k in evaluated)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=0", "steps, batch_size and grad_accum must be >= 1"),
        ("train.init=/nonexistent", "init model folder not found: /nonexistent"),
        ("train.init={tmp}/empty", "has no tokenizer files"),
        ("trainer=deepspeed", "needs DeepSpeed: pip install deepspeed"),
        ("trainer.strategy=zip", "unknown trainer.strategy 'zip'"),
        ("trainer=gpu", "no CUDA GPU is visible"),
    ],
)
def test_bad_training_settings_are_one_line_before_any_step(tmp_path, capsys, override, message):
    if override == "trainer=gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        run_job(compose_run(tmp_path, *TRAIN, override.format(tmp=tmp_path), *TINY))
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first.startswith("error: ") and message in first, first
    assert not list((tmp_path / "outputs").glob("train/*/checkpoints"))
    assert all(r.info.status == "FAILED" for r in all_runs(tmp_path))


def killed_and_rerun(command: list[str], root) -> subprocess.CompletedProcess:
    """Start the training job ``command`` (its ``paths.root`` is ``root``), SIGKILL it once it has written the
    checkpoint of step 2 and before it finished, and run it again to the end."""
    job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while not list(root.glob("outputs/train/*/checkpoints/step_0000002.ckpt")):
        assert job.poll() is None, job.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not list(root.glob("outputs/train/*/final"))
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_a_training_job_killed_after_a_checkpoint_resumes_in_the_same_run(tmp_path):
    command = [
        sys.executable, "run.py", *TRAIN, "train.steps=6", *TINY, f"paths.root={tmp_path}",
        f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
    ]  # fmt: skip
    again = killed_and_rerun(command, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    (record,) = all_runs(tmp_path)
    assert record.info.status == "FINISHED"
    steps = [m.step for m in client(tmp_path).get_metric_history(record.info.run_id, "loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6], steps  # each step once, though steps 1-2 ran before the kill


def test_a_ddp_job_under_torchrun_is_one_tracked_run(tmp_path):
    """The supported way to run DDP from run.py: one config under torchrun (sweeps run one process per job).
    Rank 0 tracks; both ranks train (each step consumes 2 x 2 samples) and answer half the test suite each."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "run.py",
        *TRAIN, "trainer=ddp", *TINY, f"paths.root={tmp_path}", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
    ]  # fmt: skip
    res = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, start_new_session=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("done: ") == 1
    (record,) = all_runs(tmp_path)
    samples = client(tmp_path).get_metric_history(record.info.run_id, "samples")
    assert record.info.status == "FINISHED" and [(m.step, m.value) for m in samples] == [(1, 4), (2, 8), (3, 12), (4, 16)]
    assert record.data.metrics["questions"] == 2  # both halves gathered
