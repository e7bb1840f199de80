from xcomp.evaluation.report import Record, depth_table, markdown_table, needle_accuracy_by_depth, plot


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
    assert needle_accuracy_by_depth(records)[("lp", 32)] == [(0.0, 1), (0.0, 1), (1.0, 1), (0.0, 1), (0.0, 1)]
    assert "1.00 (1)" in depth_table(records)
    assert [p.name for p in plot(records, tmp_path)] == ["accuracy_vs_budget.png", "needle_vs_depth.png"]
