"""The training-free video token compressors (VisionZip, DyCoke, FastVID, HoliTom, PruneVid): each one's defining
property on hand-made tensors (a uniform drop would fail each), and all of them at one `budget` in a sweep."""

from __future__ import annotations

import math

import pytest
import torch

from tests.test_run import TINY, all_runs, compose_run, run_job
from xcomp.compression.methods.dycoke import DyCoke, temporal_merge
from xcomp.compression.methods.fastvid import FastVID, segments
from xcomp.compression.methods.holitom import HoliTom, matches, windows
from xcomp.compression.methods.prunevid import PruneVid
from xcomp.compression.methods.visionzip import zip_frame

METHODS = ("visionzip", "dycoke", "fastvid", "holitom", "prunevid")


def distinct(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` random, pairwise dissimilar token vectors."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_visionzip_keeps_the_most_attended_tokens_and_merges_the_rest_into_contextual_ones():
    tokens, keys = distinct(16), distinct(16, seed=1)
    saliency = torch.full((16,), 0.01)
    saliency[[3, 9, 14]] = torch.tensor([0.5, 0.3, 0.2])
    out = zip_frame(tokens, saliency, keys, dominant=3, contextual=2)
    assert out.shape == (5, 8)
    assert torch.equal(out[:3], tokens[[3, 9, 14]])  # the dominant tokens, in their order
    rest = [i for i in range(16) if i not in (3, 9, 14)]  # 13 tokens; targets every 6th of them: rest[0], rest[6]
    targets, others = [rest[0], rest[6]], [i for i in rest if i not in (rest[0], rest[6])]
    sim = torch.nn.functional.normalize(keys[others], dim=-1) @ torch.nn.functional.normalize(keys[targets], dim=-1).T
    for j, target in enumerate(targets):
        assigned = [o for o, a in zip(others, sim.argmax(dim=1).tolist()) if a == j]
        expected = tokens[target] + (tokens[assigned].mean(dim=0) if assigned else 0)
        torch.testing.assert_close(out[3 + j], expected)


def test_dycoke_drops_the_tokens_an_adjacent_frame_repeats():
    frames = distinct(4 * 16).view(4, 16, 8).clone()
    frames[1] = frames[0]
    frames[1, [2, 7]] = distinct(2, seed=5)  # frame 1 repeats frame 0 except two tokens
    frames[3] = frames[2] * 2  # frame 3 repeats frame 2 (cosine 1)
    frames[3, 11] = distinct(1, seed=6)
    keep = temporal_merge(frames, kept=2)
    assert keep[0].tolist() == list(range(16))  # the window's first frame is the reference
    assert keep[1].tolist() == [2, 7] and 11 in keep[3].tolist()


def test_dycoke_prunes_the_visual_kv_cache_while_decoding():
    from tests.conftest import tiny_model

    model = tiny_model("dycoke", num_layers=4).eval()
    compressor = DyCoke.from_config(model.config)
    visual = torch.randn(16 * model.config.tokens_per_frame, model.config.text_config.hidden_size)
    ids = torch.tensor([[1, 2, model.config.video_token_id, 3, 4]])
    with torch.no_grad():
        cache = model(input_ids=ids, visual_embeds=[visual], use_cache=True).cache
        assert cache.decode_state is None
        model(input_ids=torch.tensor([[5]]), cache=cache)  # one decoding step
    previous, keep = cache.decode_state  # its attention to the visual keys, and the keys it kept
    kept_visual = keep & cache.key_visual[0]
    assert int(kept_visual.sum()) == math.ceil(int(cache.key_visual[0].sum()) * (1 - 0.7))
    attention = torch.tensor([[0.0, 0.4, 0.1, 0.3, 0.05, 0.15]])
    visual_keys = torch.tensor([[False, True, True, True, True, True]])
    keep, state = compressor.decode_keep(attention, visual_keys, None)
    assert keep.tolist() == [[False, True, False, True, False, False]]  # ceil(5 x 0.3) = 2 most attended
    again, _ = compressor.decode_keep(attention * 1.01, visual_keys, state)
    assert torch.equal(again, keep)  # an attention as similar as the gate reuses the selection
    visual_per_layer = compressor.visual_per_layer(model.config, 16)
    tokens = [n + 5 for n in visual_per_layer]
    start = compressor.decode_prune_layer(model.config)
    assert compressor.decode_keys(model.config, tokens, visual_per_layer)[start] < tokens[start]


def test_fastvid_cuts_segments_where_consecutive_frames_stop_resembling_each_other():
    a, b = distinct(16, seed=1), distinct(16, seed=2)
    frames = torch.stack([a + 0.01 * i for i in range(4)] + [b + 0.01 * i for i in range(4)])
    assert segments(frames, count=2, tau=0.5) == [(0, 4), (4, 8)]
    assert segments(frames, count=1, tau=0.5) == [(0, 4), (4, 8)]  # the drop is below tau
    saliency = torch.zeros(8, 16)
    saliency[:, 5] = 1.0
    out, _ = FastVID(budget=0.25).merge_video(frames.flatten(0, 1), 16, saliency.flatten(), None)
    assert len(out) == 8 * 4
    for f in range(8):  # each frame's most salient token survives unchanged
        assert any(torch.equal(row, frames[f, 5]) for row in out)


def test_holitom_merges_tokens_that_stay_the_same_over_a_window():
    static, config = distinct(10, seed=3), _config()
    frames = torch.stack([torch.cat([static, distinct(6, seed=10 + t)]) for t in range(4)])
    match, similarity = matches(frames)
    assert windows(match, similarity, 4, 0.8, 1024) == [(0, 3)]  # one window saves 10 tokens x 3 frames
    saliency = torch.rand(4 * 16, generator=torch.Generator().manual_seed(0))
    method = HoliTom(budget=0.9, layer=3)
    out, _ = method.merge_video(frames.flatten(0, 1), 16, saliency, config)
    kept_static = [any(torch.allclose(row, s) for row in out) for s in static]
    assert sum(kept_static) > 0 and len(out) < 4 * 16  # static tokens enter once, not once per frame
    assert not any(torch.allclose(out[i], frames[1, 0]) and i >= 10 for i in range(len(out)))


def test_prunevid_keeps_the_tokens_the_question_attends_to_in_each_group():
    config = _config()
    method = PruneVid(budget=14 / 64, layer=1)  # alpha = (b x 16 x 4 - 8 x 1) / (8 x 3) = 1/4
    hidden = torch.randn(1, 10, 8)
    visual = torch.tensor([[False] * 2 + [True] * 8])
    groups = torch.tensor([[-1, -1, 0, 0, 0, 0, 1, 1, 1, 1]])
    attention = torch.zeros(1, 2, 3, 10)
    attention[0, 1, 0, 4] = 0.9  # group 0: token 4 attended by one head and one question token (max, max)
    attention[0, 0, 2, 8] = 0.8  # group 1: token 8
    keep, _ = method.reduce_in_llm(config, hidden, visual, groups, torch.tensor([16]), attention, torch.ones(1, 3, dtype=torch.bool))
    assert keep[0].nonzero().flatten().tolist() == [4, 8]  # alpha -> one of four per group, the attended one


def test_prunevid_merges_a_segments_static_tokens():
    static = distinct(12, seed=4)
    frames = torch.stack([torch.cat([static, distinct(4, seed=20 + t)]) for t in range(8)])
    method = PruneVid(budget=0.5, cluster_ratio=1.0, segment_ratio=0.125)
    out, groups = method.merge_video(frames.flatten(0, 1), 16, None, _config())
    assert len(out) == 12 + 8 * 4 and groups.unique().numel() == 9  # one static group + one per frame
    torch.testing.assert_close(out[:12], static)


def _config():
    from tests.conftest import tiny_model

    return tiny_model("dense", num_layers=4).config


@pytest.mark.parametrize("override, message", [
    ("compress=dycoke budget=0.2", "dycoke cannot reach budget 0.200"),
    ("compress=holitom budget=0.95", "holitom cannot reach budget 0.950"),
    ("compress=visionzip budget=1.5", "visionzip: budget must be in (0, 1]"),
])  # fmt: skip
def test_a_budget_a_method_cannot_reach_is_one_line(tmp_path, capsys, override, message):
    with pytest.raises(SystemExit):
        run_job(compose_run(tmp_path, *override.split(), *TINY))
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first.startswith("error: ") and message in first, first


def test_the_video_baselines_spend_lp_comps_budget(tmp_path):
    import subprocess
    import sys

    from tests.test_run import ROOT

    command = [sys.executable, "run.py", "-m", f"compress={','.join(METHODS)}", "select=all", "data.n=1",
               "data.families=[locate,count]", "data.video_frames=32", "frames=32", f"paths.root={tmp_path}",
               f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    children = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" in r.data.tags]
    runs = {r.data.params["compress._target_"].rsplit(".", 1)[-1].lower(): r for r in children}
    assert sorted(runs) == sorted(METHODS), sorted(runs)
    for name, run in runs.items():
        budget = float(run.data.tags["budget"])
        assert math.isclose(budget, 29 / 64, abs_tol=1e-4)  # LP-Comp's share on the base's 16, 9, 3, 1
        assert run.info.status == "FINISHED" and "accuracy" in run.data.metrics
        assert abs(run.data.metrics["token_layers_ratio"] / budget - 1) <= 0.05, (name, run.data.metrics)
