"""`xcomp bench` smoke test: tiny shape, two frame counts; tables complete and consistent with the accounting.

No timing assertions: speed targets are checked in the benchmark's own output, not here.
"""

from __future__ import annotations

import json

import pytest

from xcomp.bench.arguments import method_names
from xcomp.bench.compression import expected_scoring_flops
from xcomp.bench.results import MEASURED_COLUMNS, RATIO_COLUMNS
from xcomp.cli import main
from xcomp.compression.qc_comp import QCComp
from xcomp.model.configuration import XCompConfig

FRAMES = (8, 16)
TEXT = 64


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--shape", "tiny", "--frames", *map(str, FRAMES), "--skip-video", "--warmup", "0"]
    argv += ["--repeats", "1", "--decode-tokens", "1", "--threads", "1", "--text-tokens", str(TEXT)]
    argv += [
        "--markdown",
        str(out / "bench.md"),
        "--json",
        str(out / "bench.json"),
        "--plot",
        str(out / "b.png"),
    ]
    assert main(argv) == 0
    return (out / "bench.md").read_text(), json.loads((out / "bench.json").read_text()), out / "b.png"


def test_tables_have_every_row_and_column(run):
    text, data, plot = run
    for column in MEASURED_COLUMNS + RATIO_COLUMNS:
        assert f"| {column} |" in text or f"| {column} " in text
    rows = {(r["frames"], r["method"]) for r in data["rows"]}
    assert rows == {(n, m) for n in FRAMES for m in method_names()}
    body = [
        line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    ]
    assert len(body) == 2 * len(FRAMES) * len(method_names())  # measured + ratio table
    assert "command: `xcomp bench --shape tiny" in text and "torch" in text and "device:" in text
    assert plot.stat().st_size > 0


def test_measured_tokens_and_kv_bytes_match_the_accounting(run):
    _, data, _ = run
    from xcomp.compression.compressors import all_compressors

    for r in data["rows"]:
        if r["method"] in all_compressors() and all_compressors()[r["method"]].input_dependent:
            continue  # its counts depend on the video: `visual_per_layer` is an expectation
        assert r["tokens_per_layer"] == r["analytic"]["tokens_per_layer"], r["method"]
        assert r["kv_bytes"] == r["analytic"]["kv_cache_bytes"], r["method"]
        assert r["prefill_s"] > 0 and r["decode_s"] > 0 and r["peak_bytes"] > 0


def test_analytic_ratios_are_consistent(run):
    _, data, _ = run
    schedule = XCompConfig.tiny(num_layers=28).compression_schedule()
    rows = {(r["frames"], r["method"]): r for r in data["rows"]}
    for n in FRAMES:
        dense, lp = rows[n, "dense"]["analytic"], rows[n, "lp_comp"]["analytic"]
        uniform = rows[n, "uniform_drop"]["analytic"]
        assert {**uniform, "method": "lp_comp"} == lp  # same schedule, same budget
        expected = (TEXT * 28 + n * sum(schedule.kept)) / (TEXT * 28 + n * 16 * 28)
        assert sum(lp["tokens_per_layer"]) / sum(dense["tokens_per_layer"]) == pytest.approx(expected)
        assert lp["kv_cache_bytes"] / dense["kv_cache_bytes"] == pytest.approx(expected)
        assert rows[n, "pre_pool"]["analytic"]["tokens_per_layer"] == [TEXT + n * 8] * 28
        qc = rows[n, "lp_comp+qc"]
        assert qc["llm_frames"] == round(0.25 * n) and qc["qc_s"] is not None and qc["qc_flops"] > 0
        assert qc["analytic"]["tokens_per_layer"] == [TEXT + qc["llm_frames"] * k for k in schedule.kept]
        lp_config = XCompConfig.tiny(num_layers=28, compression="lp_comp")
        assert qc["qc_flops"] == pytest.approx(expected_scoring_flops(lp_config, n, QCComp(), TEXT))


def test_analytic_mode_builds_no_model(capsys):
    assert main(["bench", "--shape", "tiny", "--frames", "4096", "--analytic"]) == 0
    out = capsys.readouterr().out
    assert all(f"| 4096 | {m} |" in out for m in method_names())


@pytest.fixture
def new_compressor():
    """A compressor defined only in this test file (LP-Comp's suffix under another name), unregistered after."""
    from dataclasses import dataclass
    from typing import ClassVar

    from xcomp.compression.compressors import COMPRESSORS, LPComp

    @dataclass
    class SuffixAgain(LPComp):
        name: ClassVar[str] = "test_suffix_again"

    yield SuffixAgain.name
    COMPRESSORS.pop(SuffixAgain.name)


def test_a_new_compressor_appears_in_bench_and_info_without_other_edits(new_compressor, tmp_path, capsys):
    from xcomp.shipped import shipped_model

    assert main(["info", "--config", shipped_model("base_tiny"), "--frames", "16"]) == 0
    assert f"{new_compressor}:" in capsys.readouterr().out
    argv = ["bench", "--shape", "tiny", "--frames", "8", "--skip-video", "--warmup", "0", "--repeats", "1",
            "--decode-tokens", "1", "--threads", "1", "--json", str(tmp_path / "b.json")]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert any(r["method"] == new_compressor for r in rows)



@pytest.fixture
def new_selector():
    """A frame selector defined only in this test file (the first frames), unregistered after."""
    from dataclasses import dataclass
    from typing import ClassVar

    import torch

    from xcomp.compression.selectors import SELECTORS, FrameSelector

    @dataclass(frozen=True)
    class FirstFrames(FrameSelector):
        name: ClassVar[str] = "test_first"

        def select(self, model, prefix_ids, question_ids, visual, num_frames, k, shared=None):
            return torch.arange(k), None

    yield FirstFrames.name
    SELECTORS.pop(FirstFrames.name)


def test_a_new_selector_is_a_bench_row_with_its_settings(new_selector, tmp_path):
    argv = ["bench", "--shape", "tiny", "--frames", "8", "16", "--skip-video", "--warmup", "0", "--repeats", "1",
            "--decode-tokens", "1", "--threads", "1", "--methods", f"lp_comp+{new_selector}", "lp_comp+qc",
            "--set", f"{new_selector}.keep=0.5", "qc.keep=0.25", "--json", str(tmp_path / "b.json")]  # fmt: skip
    assert main(argv) == 0
    rows = {(r["frames"], r["method"]): r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert [rows[n, f"lp_comp+{new_selector}"]["llm_frames"] for n in (8, 16)] == [4, 8]
    assert [rows[n, "lp_comp+qc"]["llm_frames"] for n in (8, 16)] == [2, 4]
    assert rows[16, f"lp_comp+{new_selector}"]["qc_flops"] == 0 < rows[16, "lp_comp+qc"]["qc_flops"]
    assert main([*argv[:-2], "--set", f"{new_selector}.nope=1"]) == 2  # one line: an unknown field
    assert main([*argv[:-2], "--methods", "lp_comp+nope"]) == 2
