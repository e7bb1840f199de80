"""run.py and conf/: composition (Hydra's compose API), jobs in-process, MLflow records, sweeps as subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from xcomp.compression.compressors import COMPRESSORS, TokenCompressor
from xcomp.compression.schedule import CompressionSchedule
from xcomp.compression.selectors import FrameSelector
from xcomp.experiment.job import run
from xcomp.experiment.schema import register

register()  # as run.py does

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TINY = ["data.n=1", "data.families=[locate,count]", "data.video_frames=16", "frames=16"]
"""A suite of 2 questions on 16-frame videos: the whole job in a few seconds."""


def compose_run(tmp_path: Path, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(
            "run",
            overrides=[f"paths.root={tmp_path}", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", *overrides],
            return_hydra_config=True,
        )


def run_job(cfg) -> float:
    """What @hydra.main does for a single run: set the Hydra config, pass the job config without it."""
    HydraConfig.instance().set_config(cfg)
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    return run(job)


def client(tmp_path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")


def all_runs(tmp_path, experiment="xcomp"):
    c = client(tmp_path)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.parametrize("option", ["dense", "lp", "heuristic", "uniform", "pool", "fastv", "random"])
def test_every_compress_option_builds_a_registered_compressor(tmp_path, option):
    cfg = compose_run(tmp_path, f"compress={option}")
    params = {k: v for k, v in cfg.compress.items() if k != "model"}
    compressor = instantiate(params)
    assert isinstance(compressor, TokenCompressor) and COMPRESSORS[compressor.name] is type(compressor)
    assert cfg.model.name == cfg.compress.model  # model=auto: the method's own default model


def test_axes_interpolate_into_the_groups(tmp_path):
    cfg = compose_run(tmp_path, "seg_len=16", "keep=0.25", "select=qc_local")
    selector = instantiate(cfg.select)
    assert (selector.name, selector.segment_frames, selector.keep) == ("qc", 16, 0.25)
    assert instantiate(compose_run(tmp_path, "select=uniform", "keep=0.25").select).num_kept(64) == 16
    assert isinstance(instantiate(compose_run(tmp_path, "select=all").select), FrameSelector)
    assert compose_run(tmp_path, "compress=heuristic").model.name == "base_tiny"  # training-free on the base
    assert compose_run(tmp_path, "compress=heuristic", "model=xcomp_tiny").model.name == "xcomp_tiny"


def test_experiment_files_are_global_sweeps(tmp_path):
    cfg = compose_run(tmp_path, "+experiment=card_sweep")
    assert cfg.logger.experiment == "card_sweep" and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert dict(cfg.hydra.sweeper.params) == {"compress": "lp,heuristic", "seg_len": "8,16"}


@pytest.mark.parametrize("option", ["cosine", "linear", "parametric"])
def test_schedules_resolve_to_the_model_depth(tmp_path, option):
    cfg = compose_run(tmp_path, f"schedule={option}")
    schedule = instantiate(cfg.schedule, num_layers=28, tokens_per_frame=16)
    assert len(schedule.kept) == 28 and schedule.kept[0] == 16 and schedule.kept[-1] == 1
    if option != "linear":  # the parametric family's defaults are the paper's cosine
        assert schedule == CompressionSchedule.cosine(28)


def test_uniform_frames_are_evenly_spaced():
    from xcomp.compression.selectors import UniformFrames

    kept, scores = UniformFrames(keep=0.25).select(None, None, None, None, 64, 16)
    assert scores is None and kept.tolist() == list(range(2, 64, 4))


def test_random_drop_is_seeded_nested_and_recorded_in_the_saved_config(tmp_path):
    from tests.conftest import frames, prompt_ids, tiny_model
    from xcomp.model.convert import load_model

    model = tiny_model("random_drop", compression_args={"seed": 3}, schedule=[16, 8, 4, 1])
    ids, pixels = prompt_ids(), frames(8)
    out = model(input_ids=ids, pixel_values=pixels, num_frames=[8])
    assert out.tokens_per_layer[:, 0].tolist()[:4] == [7 + 8 * k for k in (16, 8, 4, 1)]  # 7 text tokens
    again = model(input_ids=ids, pixel_values=pixels, num_frames=[8])
    assert torch.equal(out.kept_index, again.kept_index)
    other = tiny_model("random_drop", compression_args={"seed": 4}, schedule=[16, 8, 4, 1])
    assert not torch.equal(out.kept_index, other(input_ids=ids, pixel_values=pixels, num_frames=[8]).kept_index)
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert (loaded.config.compression, loaded.config.compression_args) == ("random_drop", {"seed": 3})
    assert torch.equal(loaded(input_ids=ids, pixel_values=pixels, num_frames=[8]).kept_index, out.kept_index)


@dataclass
class KeepFirst(TokenCompressor):
    """A method defined here, not in the package: each frame keeps its *first* slots."""

    name: ClassVar[str] = "test_keep_first"

    def slot_masks(self, schedule):
        return [torch.arange(schedule.tokens_per_frame) < k for k in schedule.kept]


def test_a_method_defined_outside_the_package_runs_through_run(tmp_path):
    ConfigStore.instance().store(
        group="compress", name="keep_first", node={"_target_": f"{__name__}.KeepFirst", "model": "xcomp_tiny"}
    )
    accuracy = run_job(compose_run(tmp_path, "compress=keep_first", *TINY))
    (record,) = all_runs(tmp_path)
    assert record.info.status == "FINISHED" and record.data.tags["compression"] == "test_keep_first"
    assert record.data.metrics["accuracy"] == accuracy and record.data.metrics["token_layers_ratio"] < 1


def test_a_job_logs_params_tags_metrics_and_artifacts(tmp_path):
    objective = run_job(compose_run(tmp_path, "compress=lp", "select=qc_local", "keep=0.5", *TINY))
    (record,) = all_runs(tmp_path)
    data = record.data
    assert record.info.status == "FINISHED" and data.metrics["accuracy"] == objective
    assert data.params["compress._target_"] == "xcomp.compression.compressors.LPComp"
    assert data.params["seg_len"] == "8" and data.params["data.families"] == '["locate", "count"]'
    assert data.tags["model"] == "xcomp_tiny" and data.tags["schedule.kept"] == "[16, 9, 3, 1]"
    assert {"version.torch", "version.transformers", "xcomp.fingerprint"} <= set(data.tags)
    m = data.metrics
    assert m["questions"] == 2 and m["kept_frames"] == 8 and m["sampled_frames"] == 16
    assert 0 < m["token_layers_ratio"] < 0.5 and m["scoring_flops"] > 0 and "accuracy.locate" in m
    assert any(k.startswith("frame_recall_by_depth.") for k in m) and m["seconds.generate"] > 0
    assert abs(m["accuracy_se"] - (m["accuracy"] * (1 - m["accuracy"]) / 2) ** 0.5) < 1e-9
    artifacts = Path(record.info.artifact_uri.removeprefix("file://"))
    rows = [json.loads(line) for line in (artifacts / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["locate_00000", "count_00000"] and all(len(r["kept_frames"]) == 8 for r in rows)
    assert "segment_frames: 8" in (artifacts / "config.yaml").read_text()

    assert run_job(compose_run(tmp_path, "compress=lp", "select=qc_local", "keep=0.5", *TINY)) == objective
    assert len(all_runs(tmp_path)) == 1  # the same job again is skipped, not run twice


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["seg_len=0"], "seg_len must be >= 1"),
        (["keep=1.5"], "keep must be a fraction in (0, 1]"),
        (["frames=7"], "frames must be a multiple of the model's clip length 4"),
        (["model=published", "model.path=/nonexistent/model"], "/nonexistent/model"),
        (["objective=speed"], "objective must be one or a list of"),
        (["schedule=parametric", "schedule.start=3", "schedule.end=2"], "needs 0 <= start < end <= 4 layers"),
        (["video.backend=opencv"], "unknown video backend 'opencv'"),
        (["model.attn_implementation=xformers"], "unknown attn_implementation 'xformers'"),
        (["model.attn_implementation=flash_attention_2"], "flash_attention_2"),
        *([(["device=cuda"], "device=cuda but no CUDA GPU is visible")] if not torch.cuda.is_available() else []),
        (["dtype=fp8"], "dtype one of fp32, bf16, fp16"),
    ],
)
def test_bad_values_are_one_line_and_never_finished(tmp_path, capsys, override, message):
    cfg = compose_run(tmp_path, *TINY, *override)
    with pytest.raises(SystemExit) as exit_info:
        run_job(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert all(r.info.status == "FAILED" for r in all_runs(tmp_path))
    assert not (tmp_path / ".cache").exists()  # nothing was generated


def test_an_unknown_option_or_key_fails_at_composition(tmp_path):
    from hydra.errors import ConfigCompositionException

    for override, error, message in (
        ("compress=zip", ConfigCompositionException, "compress/zip"),
        ("keep=abc", ConfigCompositionException, "keep=abc"),
        ("data.bogus=1", ConfigCompositionException, "data.bogus"),
        ("data.n=many", ConfigCompositionException, "data.n=many"),  # the schema types nested keys too
    ):
        with pytest.raises(error) as info:
            compose_run(tmp_path, override)
        assert message in str(info.value), str(info.value)
    res = subprocess.run([sys.executable, "run.py", "compress=zip"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and "compress/zip" in res.stderr.splitlines()[0], res.stderr
    assert "Traceback" not in res.stderr


def sweep(tmp_path, *overrides):
    command = [
        sys.executable, "run.py", "-m", *overrides, *TINY, f"paths.root={tmp_path}",
        f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def test_card_sweep_killed_and_rerun_has_each_job_finished_once(tmp_path):
    """The card's sweep: 4 children under one parent. SIGKILL after the second job, run it again: the two finished
    jobs are skipped, the rest run (a killed job's run is resumed, not duplicated), and the summary has 4 rows."""
    card = ["compress=lp,heuristic", "seg_len=8,16"]
    proc = sweep(tmp_path, *card)
    done = 0
    for line in proc.stdout:
        done += line.startswith("done: ")
        if done == 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert done == 2, "the sweep ended before its second job"

    proc = sweep(tmp_path, *card)
    out = proc.communicate()[0]
    assert proc.returncode == 0, out[-2000:]
    assert out.count("skip: ") == 2 and out.count("done: ") == 2 and "4 finished, 0 failed" in out
    runs = all_runs(tmp_path)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4 and parent.info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["xcomp.fingerprint"] for r in children}) == 4
    assert sorted((r.data.params["compress.model"], r.data.params["seg_len"]) for r in children) == sorted(
        [("xcomp_tiny", "8"), ("xcomp_tiny", "16"), ("base_tiny", "8"), ("base_tiny", "16")]
    )
    summary = Path(parent.info.artifact_uri.removeprefix("file://")) / "summary.csv"
    import pandas as pd

    table = pd.read_csv(summary)
    assert sorted(zip(table["compress"], table["seg_len"])) == [("heuristic", 8), ("heuristic", 16), ("lp", 8), ("lp", 16)]
    by_run = {r.info.run_id: r.data.metrics["accuracy"] for r in children}
    assert all(by_run[row.run_id] == row.accuracy for row in table.itertuples())
    assert table["token_layers_ratio"].nunique() == 1  # the heuristic on the base spends LP-Comp's token-layers


def test_arms_differing_only_in_an_unread_key_run_one_job_and_each_records_it(tmp_path):
    """qc_global does not read seg_len, select=all not keep: such arms are one job, run once; every arm still has
    its FINISHED run (its own params, the job's metrics and predictions, tagged with the run it reuses)."""
    arms = ["select=qc_global,qc_local", "seg_len=4,8"]
    proc = sweep(tmp_path, *arms)
    out = proc.communicate()[0]
    assert proc.returncode == 0 and "4 finished, 0 failed" in out, out[-2000:]
    assert out.count("done: ") == 3 and out.count("reuse: ") == 1, out[-2000:]
    children = {(r.data.params["select._target_"].rsplit(".", 1)[-1], r.data.params["select.scorer"],
                 r.data.params["seg_len"]): r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags}  # fmt: skip
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children.values())
    first, second = children["QCComp", "global", "4"], children["QCComp", "global", "8"]
    reused, ran = (first, second) if "xcomp.reuses" in first.data.tags else (second, first)
    assert reused.data.tags["xcomp.reuses"] == ran.info.run_id and "xcomp.reuses" not in ran.data.tags
    assert reused.data.tags["xcomp.fingerprint"] == ran.data.tags["xcomp.fingerprint"]
    assert reused.data.metrics == ran.data.metrics and reused.data.tags["compression"] == ran.data.tags["compression"]
    local = {children["QCComp", "local", n].data.tags["xcomp.fingerprint"] for n in ("4", "8")}
    assert len(local) == 2 and ran.data.tags["xcomp.fingerprint"] not in local  # seg_len is read by qc_local
    c = client(tmp_path)
    texts = [Path(c.download_artifacts(r.info.run_id, "predictions.jsonl", str(tmp_path / r.info.run_id))).read_text()
             for r in (ran, reused)]  # fmt: skip
    assert texts[0] == texts[1] and texts[0].count("\n") == 2
    proc = sweep(tmp_path, *reversed(arms))  # again, its axes in another order: nothing runs or is recorded twice
    out = proc.communicate()[0]
    assert proc.returncode == 0 and out.count("skip: ") == 4, out[-2000:]
    assert len([r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]) == 4


def test_an_arm_runs_the_job_itself_when_the_run_it_would_reuse_has_no_predictions(tmp_path):
    def single(*overrides):
        command = [sys.executable, "run.py", "select=qc_global", *overrides, *TINY, f"paths.root={tmp_path}",
                   f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]  # fmt: skip
        res = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    assert "done: " in single("seg_len=4")
    assert "reuse: " in single("seg_len=8")
    (ran,) = [r for r in all_runs(tmp_path) if r.data.params["seg_len"] == "4"]
    shutil.rmtree(Path(ran.info.artifact_uri.removeprefix("file://")))  # its artifacts moved away
    assert "done: " in single("seg_len=16")


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    proc = sweep(tmp_path, "keep=1.5,0.5")
    out = proc.communicate()[0]
    assert proc.returncode == 1 and "1 finished, 1 failed" in out, out[-2000:]
    assert "error: keep=1.5" in out and "Traceback" not in out
    children = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    status = {r.data.params.get("keep"): (r.info.status, r.data.tags.get("xcomp.error", "")) for r in children}
    assert status["0.5"] == ("FINISHED", "") and status["1.5"][0] == "FAILED" and "keep" in status["1.5"][1]


def test_a_jsonl_suite_with_a_limit_and_no_tracking(tmp_path, capsys):
    from xcomp.synth.generate import SynthParams, write_suite

    questions = write_suite(tmp_path / "suite", ["count", "needle"], 2, seed=9, params=SynthParams(frames=16, size=64))
    cfg = compose_run(tmp_path, "data=jsonl", f"data.questions={questions}", "data.limit=3", "frames=16",
                      "logger=none", "select=uniform")  # fmt: skip
    accuracy = run_job(cfg)
    assert 0 <= accuracy <= 1 and "over 3 questions" in capsys.readouterr().out
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".cache" / "data").exists()  # nothing generated
