"""Framework overhead: the card's sweep answered by the bare pipeline and by `run.py -m`, side by side.

Both sides run as fresh processes (interpreter start and imports included) on the same cached synthetic suite,
each answering it with the four arms of `compress=lp,heuristic seg_len=8,16`; the run.py side also composes the
configs, checks them, and tracks the sweep in an MLflow SQLite store (created beforehand, as a project's store
is after its first run): a parent run, four children, the summary table. Rounds alternate the two sides so machine load hits both alike.

    python -m xcomp.bench.framework --n 25      (from the project root, where run.py is)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = """
import sys
from xcomp.compression.qc_comp import QCComp
from xcomp.data.jsonl import JsonlSuite
from xcomp.evaluation.runner import answer_suite, summarize
from xcomp.evaluation.suite import EvalSuite, frame_sampling
from xcomp.model.convert import load_model
from xcomp.model.processing import XCompProcessor
from xcomp.pipeline import XCompPipeline
from xcomp.shipped import shipped_model

for compression, name in (("lp_comp", "xcomp_tiny"), ("uniform_drop", "base_tiny")):
    path = shipped_model(name)
    for seg_len in (8, 16):
        model = load_model(path, compression=compression)
        processor = XCompProcessor.from_pretrained(path, image_size=model.config.vision_config.image_size)
        source = JsonlSuite(questions=sys.argv[1])
        suite = EvalSuite(source, source.suite(), *frame_sampling(source, 64, processor.image_size, 4))
        pipe = XCompPipeline(model, processor, selector=QCComp(keep=0.5, segment_frames=seg_len))
        print(compression, seg_len, summarize(answer_suite(pipe, suite))["accuracy"])
"""
"""The card's four arms (compress=lp,heuristic x seg_len=8,16) written against the library, in one process."""


CARD = ["compress=lp,heuristic", "seg_len=8,16"]
"""The card's sweep."""


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"error: {' '.join(command[:3])} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - start, res.stdout


def project_root(path: Path) -> Path:
    """The project root the benchmarks run `run.py` in (checked before any work)."""
    root = path.resolve()
    if not (root / "run.py").is_file():
        raise SystemExit(f"error: no run.py in {root}; pass --root")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=25, help="questions per family (4 families)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both sides")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (holds run.py)")
    args = parser.parse_args(argv)
    root = project_root(args.root)
    with tempfile.TemporaryDirectory() as scratch:
        overrides = ["select=qc_local", "keep=0.5", "frames=64", f"data.n={args.n}", f"paths.root={scratch}",
                     "rerun=true"]  # fmt: skip
        store = f"logger.tracking_uri=sqlite:///{scratch}/mlflow.db"
        timed([sys.executable, "run.py", *overrides, "data.n=1", store], root)  # creates the store
        timed([sys.executable, "run.py", *overrides, "logger=none"], root)  # generates the suite
        questions = next(Path(scratch, ".cache", "data").glob("synth-*/questions.jsonl"))
        bare, framework = [], []
        for _ in range(args.rounds):
            seconds, _ = timed([sys.executable, "-c", BARE, str(questions)], root)
            bare.append(seconds)
            seconds, _ = timed([sys.executable, "run.py", "-m", *CARD, *overrides, store], root)
            framework.append(seconds)
    b, f = statistics.median(bare), statistics.median(framework)
    print(f"the card's sweep (4 arms) on {4 * args.n} questions, {args.rounds} rounds (median wall seconds)")
    print("| side | seconds | rounds |\n|---|---:|---|")
    print(f"| bare pipeline | {b:.1f} | {', '.join(f'{s:.1f}' for s in bare)} |")
    print(f"| run.py -m + MLflow | {f:.1f} | {', '.join(f'{s:.1f}' for s in framework)} |")
    print(f"overhead: {f / b:.3f}x ({f - b:+.1f} s per process: imports of Hydra and MLflow, composition, tracking)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
