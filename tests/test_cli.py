import subprocess
import sys

from tests.conftest import REAL_CONFIG, require
from xcomp.cli import main


def run_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "xcomp.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def run_main(capsys, *args) -> tuple[int, list[str]]:
    """The CLI in this process (no interpreter start and torch import, ~5 s a call): exit code and stderr
    lines. Anything but a one-line `XCompError` still escapes as an exception and fails the test."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_info_on_real_config_prints_accounting():
    res = run_cli("info", "--config", str(require(REAL_CONFIG)), "--frames", "1024")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "total 1,838.1M" in out
    assert "16448 16448 16448 16448 15424" in out
    lp_row = next(line for line in out.splitlines() if line.strip().startswith("lp_comp") and "GiB" in line)
    token_ratio, prefill_ratio, kv_ratio = (float(x) for x in lp_row.split()[-3:])
    assert abs(token_ratio - 0.551) < 0.01 and abs(kv_ratio - 0.551) < 0.01 and prefill_ratio < 0.6


def test_info_bad_config_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    res = run_cli("info", "--config", str(bad))
    assert res.returncode != 0
    assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    res = run_cli("info", "--config", str(tmp_path / "missing.json"))
    assert res.returncode != 0 and res.stderr.strip().startswith("error:")
    for args in [("info", "--config", require(REAL_CONFIG), "--frames", "0"), ("convert", tmp_path, "out")]:
        code, err = run_main(capsys, *args)
        assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err


