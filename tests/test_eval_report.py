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
