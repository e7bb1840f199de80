"""A benchmark's results: its rows, their ratios to dense (measured and analytic side by side), the tables, the
target checks and the time / memory plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from xcomp.bench.measure import MIB


@dataclass
class Row:
    """One method at one frame count."""

    method: str
    frames: int
    llm_frames: int
    """Frames whose tokens enter the LLM (QC-Comp keeps a fraction)."""
    video_s: float | None
    """Decoding and resizing `frames` frames from the benchmark video (None: not measured)."""
    vision_s: float
    vision_extrapolated: bool
    qc_s: float | None
    prefill_s: float
    decode_s: float
    """Seconds per decoded token against the prefilled cache."""
    peak_bytes: int
    """Peak working memory (weights excluded) over QC scoring, prefill and decode."""
    kv_bytes: int
    """Measured `XCompCache.nbytes()` after the prefill."""
    tokens_per_layer: list[int]
    """Measured tokens entering each decoder layer."""
    analytic: dict
    """`RunCost` of the LLM prefill over `llm_frames`."""
    qc_flops: float = 0.0
    vision_flops: float = 0.0

    @property
    def ttft_s(self) -> float:
        """Time to first token: video decode + vision + QC scoring + prefill."""
        return (self.video_s or 0.0) + self.vision_s + (self.qc_s or 0.0) + self.prefill_s

    @property
    def total_flops(self) -> float:
        return self.vision_flops + self.qc_flops + self.analytic["llm_prefill_flops"]


@dataclass
class BenchResult:
    """Everything one `xcomp bench` run measured, with the environment it ran in."""

    shape: str
    command: str
    environment: dict
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "shape": self.shape,
            "command": self.command,
            "environment": self.environment,
            "notes": self.notes,
            "rows": [asdict(r) for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: dict) -> BenchResult:
        return cls(
            data["shape"],
            data["command"],
            data["environment"],
            [Row(**r) for r in data["rows"]],
            data["notes"],
        )


MEASURED_COLUMNS = (
    "frames", "method", "LLM frames", "video dec s", "vision s", "QC s", "prefill s", "decode ms/tok",
    "TTFT s", "peak MiB", "KV MiB", "prefill TFLOP", "QC TFLOP", "vision TFLOP",
)  # fmt: skip
RATIO_COLUMNS = (
    "frames", "method", "token-layers", "prefill", "KV bytes", "decode/tok", "peak mem", "TTFT",
    "QC ÷ dense prefill",
)  # fmt: skip


def _s(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pair(measured: float | None, analytic: float | None) -> str:
    """'measured / analytic' ratio cell."""
    left = "n/a" if measured is None else f"{measured:.3f}"
    return left if analytic is None else f"{left} / {analytic:.3f}"


def markdown(header: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ratios(row: Row, dense: Row) -> dict[str, tuple[float | None, float | None]]:
    """Each column of `RATIO_COLUMNS` as (measured, analytic) relative to dense at the same frame count."""
    a, d = row.analytic, dense.analytic
    qc = (
        (row.qc_s / dense.prefill_s, row.qc_flops / d["llm_prefill_flops"])
        if row.qc_s is not None
        else (None, None)
    )
    return {
        "token-layers": (
            sum(row.tokens_per_layer) / sum(dense.tokens_per_layer),
            sum(a["tokens_per_layer"]) / sum(d["tokens_per_layer"]),
        ),
        "prefill": (row.prefill_s / dense.prefill_s, a["llm_prefill_flops"] / d["llm_prefill_flops"]),
        "KV bytes": (row.kv_bytes / dense.kv_bytes, a["kv_cache_bytes"] / d["kv_cache_bytes"]),
        "decode/tok": (
            row.decode_s / dense.decode_s,
            a["decode_flops_per_token"] / d["decode_flops_per_token"],
        ),
        "peak mem": (row.peak_bytes / dense.peak_bytes if dense.peak_bytes else None, None),
        "TTFT": (row.ttft_s / dense.ttft_s, row.total_flops / dense.total_flops),
        "QC ÷ dense prefill": qc,
    }


def format_result(result: BenchResult) -> str:
    """The run as markdown: environment, measured table, ratio table, target checks, notes."""
    env = result.environment
    dense = {r.frames: r for r in result.rows if r.method == "dense"}
    measured_rows, ratio_rows = [], []
    for r in result.rows:
        a = r.analytic
        measured_rows.append([
            str(r.frames), r.method, str(r.llm_frames), _s(r.video_s), _s(r.vision_s) + ("*" if r.vision_extrapolated else ""),
            _s(r.qc_s), _s(r.prefill_s, 3), _s(r.decode_s * 1e3, 1), _s(r.ttft_s), f"{r.peak_bytes / MIB:.1f}",
            f"{r.kv_bytes / MIB:.2f}", f"{a['llm_prefill_flops'] / 1e12:.3g}", f"{r.qc_flops / 1e12:.3g}",
            f"{r.vision_flops / 1e12:.3g}",
        ])  # fmt: skip
        cells = ratios(r, dense[r.frames])
        ratio_rows.append([str(r.frames), r.method] + [_pair(*cells[c]) for c in RATIO_COLUMNS[2:]])
    lines = [
        f"command: `{result.command}`",
        "",
        f"- device: {env['device']}; dtype {env['dtype']}, attention {env['attention']}",
        f"- versions: python {env['python']}, torch {env['torch']}, transformers {env['transformers']}, "
        f"xcomp git {env['git']}",
        f"- model: {env['parameters'] / 1e6:,.1f}M parameters, {env['weight_bytes'] / 2**30:.2f} GiB of weights; "
        f"run {env['date']}, load average {_s(env['load_average_start'])} at start, "
        f"{_s(env.get('load_average_end'))} at end; peak RSS {_s((env.get('peak_rss_bytes') or 0) / 2**30)} GiB",
        "",
        "Measured (seconds are medians; `*` = extrapolated from the frames actually encoded, see notes):",
        "",
        markdown(MEASURED_COLUMNS, measured_rows),
        "",
        "Ratio to dense at the same frame count, `measured / analytic` (analytic: FLOPs or bytes from "
        "`xcomp.accounting`; TTFT analytic = vision + QC + prefill FLOPs):",
        "",
        markdown(RATIO_COLUMNS, ratio_rows),
        "",
    ]
    lines += [f"- {line}" for line in target_checks(result) + result.notes]
    return "\n".join(lines) + "\n"


def target_checks(result: BenchResult) -> list[str]:
    """The issue's two speed targets, checked wherever this run measured them."""
    dense = {r.frames: r for r in result.rows if r.method == "dense"}
    out = []
    for r in result.rows:
        if r.method == "lp_comp" and r.frames >= 1024:
            ratio = r.prefill_s / dense[r.frames].prefill_s
            out.append(
                f"target LP-Comp prefill ≤ 0.60× dense at {r.frames} frames: {ratio:.3f} "
                f"({'met' if ratio <= 0.60 else 'NOT met'}; {result.shape} shape)"
            )
        if r.method == "lp_comp+qc":
            ratio = r.qc_s / dense[r.frames].prefill_s
            analytic = r.qc_flops / dense[r.frames].analytic["llm_prefill_flops"]
            out.append(
                f"target QC scoring ≤ 0.5× one dense prefill at {r.frames} frames: {ratio:.3f} measured, "
                f"{analytic:.3f} analytic ({'met' if ratio <= 0.5 else 'NOT met'})"
            )
    return out


def plot(results: list[BenchResult], path: Path) -> None:
    """Seconds and memory vs frames per method; runs of the same shape, device and dtype share a row of panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[Row]] = {}
    for result in results:
        env = result.environment
        key = f"{result.shape} shape, {env['device'].split(',')[0]}, {env['dtype']}"
        panels.setdefault(key, []).extend(result.rows)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4.2 * len(panels)), squeeze=False)
    for (ax_time, ax_mem), (title, rows) in zip(axes, panels.items()):
        rows = sorted(rows, key=lambda r: r.frames)
        for i, method in enumerate(dict.fromkeys(r.method for r in rows)):
            mine = [r for r in rows if r.method == method]
            x = [r.frames for r in mine]
            ax_time.plot(x, [r.prefill_s + (r.qc_s or 0.0) for r in mine], "o-", color=f"C{i}", label=method)
            ax_mem.plot(x, [r.peak_bytes / MIB for r in mine], "o-", color=f"C{i}", label=method)
            ax_mem.plot(x, [r.kv_bytes / MIB for r in mine], "s--", color=f"C{i}", alpha=0.6)
        dense = [r for r in rows if r.method == "dense"]
        front = [(r.video_s or 0.0) + r.vision_s for r in dense]
        ax_time.plot(
            [r.frames for r in dense], front, "k--", alpha=0.5, label="video decode + vision (all rows)"
        )
        ax_time.set(xscale="log", yscale="log", xlabel="frames", ylabel="seconds",
                    title=f"{title}\nLLM time: QC scoring + prefill")  # fmt: skip
        ax_mem.set(xscale="log", yscale="log", xlabel="frames", ylabel="MiB",
                   title=f"{title}\npeak working memory (solid), KV cache (dashed)")  # fmt: skip
        for ax in (ax_time, ax_mem):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
