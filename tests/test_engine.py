"""The evaluation engine: question-independent work done once per video gives the answers of the per-question
reference path (`reuse=false`), and the vision feature cache is shared across jobs, safe to corrupt and bounded."""

from __future__ import annotations

import contextlib

import pytest
import torch

from tests.test_run import all_runs, compose_run, run_job
from xcomp.compression.compressors import all_compressors
from xcomp.compression.qc_comp import QCComp
from xcomp.compression.selectors import AllFrames, UniformFrames
from xcomp.data.synth import SynthSuite
from xcomp.errors import XCompError
from xcomp.evaluation.features import FeatureCache
from xcomp.evaluation.runner import answer_suite
from xcomp.evaluation.suite import EvalSuite, frame_sampling
from xcomp.model.convert import load_model
from xcomp.model.processing import XCompProcessor
from xcomp.pipeline import XCompPipeline
from xcomp.shipped import shipped_model

COMPRESSORS = all_compressors()
"""Every registered compressor (the video baselines of `xcomp.compression.methods` included)."""
SELECTORS = {
    "qc_local": QCComp(keep=0.5, segment_frames=4),
    "qc_global": QCComp(keep=0.5, scorer="global"),
    "uniform": UniformFrames(keep=0.5),
    "all": AllFrames(),
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """2 videos x 3 questions of 16 frames: the LVBench shape in small."""
    source = SynthSuite(families=["locate", "count"], n=1, video_frames=16, seed=5, questions_per_video=3,
                        cache_dir=str(tmp_path_factory.mktemp("data")))  # fmt: skip
    return EvalSuite(source, source.suite(), *frame_sampling(source, 16, 64, 4))


def answers(compression: str, selector, suite, reuse: bool, cache=None):
    path = shipped_model("xcomp_tiny")
    fields = COMPRESSORS[compression]().config_fields()
    model = load_model(path, **fields)
    processor = XCompProcessor.from_pretrained(path, image_size=64)
    pipe = XCompPipeline(model, processor, selector=selector, feature_cache=cache)
    return answer_suite(pipe, suite, reuse=reuse)


def same(a, b):
    assert [(r.id, r.prediction, list(r.kept_frames), r.text) for r in a] == [
        (r.id, r.prediction, list(r.kept_frames), r.text) for r in b
    ]


@pytest.mark.parametrize(
    ("compression", "selector"),
    [*((c, "qc_local") for c in sorted(COMPRESSORS)), *(("lp_comp", s) for s in SELECTORS if s != "qc_local")],
)
def test_reuse_gives_the_reference_paths_answers(suite, compression, selector):
    shared = answers(compression, SELECTORS[selector], suite, reuse=True)
    alone = answers(compression, SELECTORS[selector], suite, reuse=False)
    same(shared, alone)
    per_video = [r.cost["seconds"]["vision"] for r in shared]
    assert sum(s > 0 for s in per_video) == 2  # the tower ran once per video, not per question


def test_the_feature_cache_is_shared_recomputes_a_corrupt_entry_and_stays_under_its_cap(suite, tmp_path):
    cache = FeatureCache(tmp_path / "features", max_bytes=2**30)
    first = answers("lp_comp", SELECTORS["qc_local"], suite, reuse=True, cache=cache)
    assert (cache.hits, cache.misses) == (0, 2)
    other_arm = answers("uniform_drop", SELECTORS["uniform"], suite, reuse=True, cache=cache)  # another arm
    assert (cache.hits, cache.misses) == (2, 2)
    same(first, answers("lp_comp", SELECTORS["qc_local"], suite, reuse=True))  # cached = computed
    same(other_arm, answers("uniform_drop", SELECTORS["uniform"], suite, reuse=True))

    entries = sorted((tmp_path / "features").glob("*/*.safetensors"))
    assert len(entries) == 2
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # a partial write
    again = answers("lp_comp", SELECTORS["qc_local"], suite, reuse=True, cache=cache)
    same(first, again)
    assert (cache.hits, cache.misses, cache.unreadable) == (3, 3, 1)
    assert len(list((tmp_path / "features").glob("*/*.safetensors"))) == 2

    size = entries[1].stat().st_size
    small = FeatureCache(tmp_path / "features", max_bytes=size)  # room for one entry
    entries[1].unlink()  # the second video's features must be written again: past the cap, the other goes
    answers("lp_comp", SELECTORS["all"], suite, reuse=True, cache=small)
    assert small.misses >= 1 and small.hits + small.misses == 2
    assert len(list((tmp_path / "features").glob("*/*.safetensors"))) == 1  # the least recently used went


def test_a_tower_that_changes_gets_new_entries(tmp_path):
    from tests.conftest import tiny_model

    model = tiny_model()
    cache = FeatureCache(tmp_path, max_bytes=2**30)
    before = cache.digest(model.model.vision_tower)
    assert cache.digest(model.model.vision_tower) == before
    with torch.no_grad():
        next(model.model.vision_tower.parameters()).add_(1.0)  # one optimiser step, say
    assert cache.digest(model.model.vision_tower) != before


def test_a_job_logs_cache_hits_and_a_rerun_of_another_arm_hits(tmp_path):
    from tests.test_run import TINY

    run_job(compose_run(tmp_path, *TINY, "compress=lp"))
    run_job(compose_run(tmp_path, *TINY, "compress=heuristic", "model=xcomp_tiny"))  # the same tower weights
    first, second = sorted(all_runs(tmp_path), key=lambda r: r.info.start_time)
    assert (first.data.metrics["cache.misses"], first.data.metrics["cache.hits"]) == (2, 0)
    assert (second.data.metrics["cache.misses"], second.data.metrics["cache.hits"]) == (0, 2)
    reference = compose_run(tmp_path, *TINY, "compress=lp", "reuse=false", "cache.features=false")
    run_job(reference)
    ref = max(all_runs(tmp_path), key=lambda r: r.info.start_time)
    assert ref.data.metrics["accuracy"] == first.data.metrics["accuracy"] and "cache.hits" not in ref.data.metrics



@pytest.mark.parametrize(("compression", "shares"), [("lp_comp", True), ("uniform_drop", True), ("attn_prune", False)])
def test_a_videos_questions_share_the_prefill_before_the_question_unless_the_method_reads_it(suite, compression, shares):
    path = shipped_model("xcomp_tiny")
    model = load_model(path, **COMPRESSORS[compression]().config_fields())
    pipe = XCompPipeline(model, XCompProcessor.from_pretrained(path, image_size=64), selector=AllFrames())
    video = suite.decode(suite.questions[0].video)
    encoded = pipe.encode(video)
    for q in suite.questions[:3]:  # the first video's three questions
        shared = pipe.answer(video, q.question, q.options, max_new_tokens=8, encoded=encoded)
        alone = pipe.answer(video, q.question, q.options, max_new_tokens=8)
        assert (shared.text, shared.choice) == (alone.text, alone.choice)
    assert len(encoded.prefixes) == int(shares)
    with pytest.raises(XCompError, match="keeps tokens by the question") if not shares else contextlib.nullcontext():
        model.prefill_prefix(torch.tensor([1, 2]), encoded.visual)


@pytest.mark.parametrize("compression", sorted(c for c, cls in COMPRESSORS.items() if not cls().reads_question))
@pytest.mark.parametrize("scorer", ["local", "global"])
def test_qc_scores_from_prefilled_windows_equal_whole_windows(compression, scorer):
    """Each window's prefix + frames prefilled once (through the compressor's drops), each question's rows run
    against it: the same frame scores and scoring cost as running every window whole, question after question."""
    from tests.conftest import frames
    from xcomp.compression.qc_comp import score_frames

    model = load_model(shipped_model("xcomp_tiny"), **COMPRESSORS[compression]().config_fields())
    visual = model.model.encode_video(frames(16).to(model.dtype), [16])[0]
    config = QCComp(segment_frames=4, scorer=scorer, layers=(1, 2), segment_batch=3)
    prefix, shared = torch.tensor([5, 6, 7]), {}
    for seed in range(3):  # three questions about the video
        question = torch.randint(1, 100, (5 + seed,), generator=torch.Generator().manual_seed(seed))
        whole = score_frames(model, prefix, question, visual, config)
        prefilled = score_frames(model, prefix, question, visual, config, shared)
        torch.testing.assert_close(prefilled.layer_scores, whole.layer_scores, rtol=1e-4, atol=1e-6)
        assert prefilled.tokens_per_layer == whole.tokens_per_layer and prefilled.windows == whole.windows
    assert len(shared) == 1  # one prefill of the windows served the three questions


def test_a_torchrun_evaluation_shards_whole_videos_and_equals_one_process(tmp_path):
    """`torchrun --nproc_per_node 2 run.py trainer=ddp`: each process answers half of the videos (gloo on the CPU);
    rank 0 gathers the answers and logs the one run, with the predictions of a single process."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_run import ROOT, TINY

    settings = [*TINY, "data.questions_per_video=2", "compress=lp", "select=qc_local", "keep=0.5"]

    def predictions(root):
        (record,) = all_runs(root)
        assert record.info.status == "FINISHED"
        lines = (Path(record.info.artifact_uri.removeprefix("file://")) / "predictions.jsonl").read_text()
        rows = [json.loads(line) for line in lines.splitlines()]
        return record, [(r["id"], r["prediction"], r["kept_frames"], r["text"]) for r in rows]

    run_job(compose_run(tmp_path / "one", *settings))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    two = tmp_path / "two"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "run.py",
               *settings, "trainer=ddp", f"paths.root={two}", f"logger.tracking_uri=sqlite:///{two}/mlflow.db"]  # fmt: skip
    res = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("done: ") == 1
    single, expected = predictions(tmp_path / "one")
    sharded, got = predictions(two)
    assert got == expected and len(got) == 4
    assert sharded.data.metrics["accuracy"] == single.data.metrics["accuracy"]


def _fill(folder: str, rounds: int) -> None:
    cache = FeatureCache(folder, max_bytes=2**30)
    for _ in range(rounds):
        cache.store("ab" + "0" * 30, torch.arange(200_000, dtype=torch.float32))


def test_jobs_writing_and_reading_one_entry_see_it_whole_or_not_at_all(tmp_path):
    """Two processes write the same entry over and over while this one reads it: every read is the whole tensor
    or a miss, never a part of one (each write goes to its own file, renamed into place)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_fill, args=(str(tmp_path), 40)) for _ in range(2)]
    for w in writers:
        w.start()
    reader, whole = FeatureCache(tmp_path, max_bytes=2**30), torch.arange(200_000, dtype=torch.float32)
    while any(w.is_alive() for w in writers):
        features = reader.load("ab" + "0" * 30)
        assert features is None or torch.equal(features, whole)
    assert all(w.exitcode == 0 for w in writers) and reader.hits > 0 and reader.unreadable == 0
    assert [p.name for p in tmp_path.glob("*/*")] == ["ab" + "0" * 30 + ".safetensors"]  # no scratch files left
