from xcomp.evaluation.report import Record, depth_table, event_by_depth, markdown_table, plot, recall


def _records():
    # Needle questions at depths 0.1, 0.3, ..., 0.9; correct only in the middle bin.
    needles = [Record("lp", 32, 512, 4000, f"n{i}", "needle", d, "A", "A" if d == 0.5 else "B")
               for i, d in enumerate([0.1, 0.3, 0.5, 0.7, 0.9])]
    counts = [Record("lp", 32, 512, 4000, f"c{i}", "count", None, "C", "C") for i in range(3)]
    return needles + counts


def test_tables_and_depth_bins(tmp_path):
    records = _records()
    table = markdown_table(records)
    assert "| lp | 32 | 512 | 4000 | 8 | 0.500 | 1.000 | 0.200 |" in table
    assert event_by_depth(records)[("lp", 32)] == [(0.0, 1), (0.0, 1), (1.0, 1), (0.0, 1), (0.0, 1)]
    assert "1.00 (1)" in depth_table(records)
    assert [p.name for p in plot(records, tmp_path)] == ["accuracy_vs_budget.png", "event_accuracy_vs_depth.png"]


def test_recall_by_depth_counts_only_needles_with_frame_selection(tmp_path):
    # QC kept 8 of 32 frames; the needle frame was kept for the first two depths only.
    qc = [Record("qc", 32, 128, 900, f"q{i}", "needle", d, "A", "A", kept_frames=range(8), event_kept=i < 2)
          for i, d in enumerate([0.1, 0.3, 0.5, 0.7, 0.9])]
    dense = [Record("dense", 32, 512, 4000, "d", "needle", 0.1, "A", "A", kept_frames=range(32), event_kept=True)]
    by_depth = event_by_depth(qc + dense, recall)
    assert by_depth[("qc", 32)] == [(1.0, 1), (1.0, 1), (0.0, 1), (0.0, 1), (0.0, 1)]
    assert "0.00 (1)" in depth_table(qc, recall)
    names = [p.name for p in plot(qc + dense, tmp_path)]
    assert names == ["accuracy_vs_budget.png", "event_accuracy_vs_depth.png", "event_recall_vs_depth.png"]


def test_eval_config_errors_name_the_key_and_system(tmp_path):
    import re

    import pytest

    from xcomp.errors import ConfigError
    from xcomp.evaluation.runner import EvalConfig

    head = 'data = "q.jsonl"\noutput_dir = "out"\n'
    system = '[[systems]]\nname = "lp"\nmodel = "m"\n'
    cases = [
        (head + "frames = 32\n" + system, "frames = 32 is not a list of integers"),
        (head + system + 'qc = "yes"\n', "[[systems]] #1: qc = 'yes' is not one of 'none', 'local', 'global'"),
        (head + system + system.replace("lp", "qc") + "keep = 2\n", "system 'qc': keep must be a fraction in (0, 1]"),
        (head + '[[systems]]\nmodel = "m"\n', "[[systems]] #1: missing required keys ['name']"),
        (head, "no [[systems]] to evaluate"),
        ('data = "q.jsonl"\n' + system, "missing required keys ['output_dir']"),
    ]
    path = tmp_path / "eval.toml"
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            EvalConfig.from_file(path)
    path.write_text(head + system)
    assert EvalConfig.from_file(path).systems[0].keep == 0.25


def test_eval_end_to_end_on_the_shipped_model(tmp_path):
    """`xcomp eval` with two systems: every question answered by every system at each of its frame counts, the
    table and plots written, the frames that QC-Comp kept recorded; `--data` evaluates another questions file."""
    import json

    from tests.test_cli import run_cli
    from xcomp.cli import default_model_path
    from xcomp.synth.generate import SynthParams, write_suite

    params = SynthParams(frames=64, size=64, span=2, noise=0.0)
    write_suite(tmp_path / "a", ["needle", "locate"], 2, seed=5, params=params)
    write_suite(tmp_path / "b", ["count"], 3, seed=6, params=params)
    model = default_model_path()
    config = tmp_path / "eval.toml"
    config.write_text(
        f'data = "{tmp_path / "a" / "questions.jsonl"}"\noutput_dir = "{tmp_path / "out"}"\nframes = [16, 32]\n'
        f'[[systems]]\nname = "lp"\nmodel = "{model}"\n'
        f'[[systems]]\nname = "qc"\nmodel = "{model}"\nqc = "local"\nkeep = 0.5\nframes = [64]\n'
    )
    res = run_cli("eval", str(config))
    assert res.returncode == 0, res.stderr[-1000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert sorted({(r["system"], r["frames"]) for r in rows}) == [("lp", 16), ("lp", 32), ("qc", 64)]
    assert len(rows) == 3 * 4 and all(r["prediction"] in list("ABCD") for r in rows)
    assert all(len(r["kept_frames"]) == (32 if r["system"] == "qc" else r["frames"]) for r in rows)
    assert all(isinstance(r["choice_scored"], bool) for r in rows)
    results = (tmp_path / "out" / "results.md").read_text()
    assert "| lp | 32 |" in results and "| qc | 64 |" in results
    assert (tmp_path / "out" / "accuracy_vs_budget.png").stat().st_size > 0

    res = run_cli("eval", str(config), "--data", str(tmp_path / "b" / "questions.jsonl"), "--output-dir",
                  str(tmp_path / "out_b"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-1000:]
    rows = [json.loads(line) for line in (tmp_path / "out_b" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 3 and {r["family"] for r in rows} == {"count"}
