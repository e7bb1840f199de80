"""Structured configs (Hydra's ConfigStore) that type-check what conf/ composes.

The primary config `run` and the options of the `model`, `data` and `logger` groups start from these schemas
(`defaults: [<schema>, _self_]`), so a wrong type or an unknown key is an error at composition, before any work.
The `compress`, `schedule` and `select` groups are `_target_` nodes of the components themselves (dataclasses in
`xcomp.compression`), checked when they are instantiated; each `data` option is a `_target_` node of a source
(`xcomp.data`) whose schema is made from the source's dataclass (`source_schema`), so it is typed at composition. Range and cross-field checks are in `job.check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from xcomp.data.source import all_sources
from xcomp.experiment.components import source_schema
from xcomp.reporting.parameters import ReportParameters
from xcomp.reporting.verdict import Claim
from xcomp.shipped import shipped_model
from xcomp.train.config import TrainConfig, TrainerConfig
from xcomp.train.sources.source import all_train_sources


@dataclass
class ModelConfig:
    """Which model answers."""

    name: str = MISSING
    """Label recorded with the run (the `model` tag)."""
    path: str = MISSING
    """Model folder: ours (`save_pretrained`) or a published VideoChat-Flash / XComp one."""
    random_init: bool = False
    """Random weights (seeded by `seed`) in the folder's architecture, with its tokenizer."""
    attn_implementation: str = "sdpa"
    """Attention kernel of the evaluated model: sdpa, eager, or flash_attention_2 (the `gpu` extra, CUDA)."""


@dataclass
class VideoConfig:
    """How video files are decoded."""

    backend: str = "auto"
    """Decoding library: auto (PyAV: decord measured slower, see xcomp.video.decode), pyav, or decord (the decord extra)."""


@dataclass
class CacheConfig:
    """What evaluation keeps on disk between questions, arms and jobs (not part of a job's identity)."""

    features: bool = True
    """Keep the vision tower's merged tokens of each video file (`xcomp.evaluation.features`)."""
    dir: str = MISSING
    """Folder of the feature cache (a shared filesystem when jobs run on several machines)."""
    max_gb: float = 50.0
    """Size cap of the feature cache; the least recently used entries go first."""


@dataclass
class EvalConfig:
    """How an evaluation runs (not part of a job's identity)."""

    workers: int = 1
    """Processes decoding videos ahead of the model (0: in the main process)."""


@dataclass
class ValConfig:
    """The validation suite of a training job (`train.val_every` > 0): the test suite's synthetic settings with
    another seed and size, so that choosing by validation never looks at the test questions."""

    n: int = 8
    """Questions per family."""
    seed: int = 23
    """Generation seed (must differ from the test suite's and the training data's)."""


@dataclass
class SearchConfig:
    """An Optuna search over the job's config (group `search`): what its sweeper reads (`hydra.sweeper.*`)."""

    n_trials: int = 24
    """Trials of the study in total, over restarts and workers."""
    n_jobs: int = 1
    """Trials this worker runs at once (> 1 with a parallel launcher: hydra/launcher=joblib)."""
    storage: str | None = MISSING
    """Study storage URL (SQLite beside mlflow.db by default; postgresql://... for several workers)."""
    study_name: str = MISSING
    """Study created or continued in the storage."""
    seed: int | None = 0
    """Seed of the sampler."""
    budget: float = 1.0
    """Largest visual token-layer share of dense a schedule may have (search=schedule_budget)."""


@dataclass
class LoggerConfig:
    """Where runs are tracked."""

    enabled: bool = True
    """Track runs in MLflow (False: print the metrics only)."""
    tracking_uri: str = MISSING
    """MLflow tracking URI (SQLite file or server)."""
    experiment: str = "xcomp"
    """MLflow experiment name."""
    artifact_root: str | None = MISSING
    """Folder for the artifacts of experiments this run creates (None: the tracking server's own store)."""


@dataclass
class ReportConfig:
    """The report a sweep renders when it ends (`xcomp report NAME` renders it again from MLflow alone)."""

    name: str = MISSING
    """Report folder under `paths.reports` (an experiment names its own)."""
    notebook: str = "sweep_report"
    """Notebook in notebooks/ (jupytext percent .py with a `parameters` cell) that renders it."""
    title: str = ReportParameters.title
    """The report's heading."""
    claims: list[Claim] = field(default_factory=list)
    """What the experiment claims; the report opens with each one's verdict (`xcomp.reporting.verdict`)."""
    cost: str = ReportParameters.cost
    """Cost metric of the accuracy-vs-cost plot (token_layers when arms sample different frame counts)."""
    numbers: list[str] = field(default_factory=list)
    """Logged config values (e.g. train.data.fraction) the report draws accuracy curves over."""
    rerun_of: str | None = None
    """Report this sweep repeats (e.g. on a fresh data seed): its latest sweep's arms are compared with these."""


@dataclass
class PathsConfig:
    """Where things live (excluded from job fingerprints)."""

    root: str = MISSING
    """Project root: MLflow store, caches and outputs sit under it."""
    cache: str = MISSING
    """Generated data."""
    reports: str = MISSING
    """Rendered reports, one folder each (`report.name`)."""
    train: str = MISSING
    """Training folders of jobs (checkpoints, the trained model), named by job fingerprint unless `train.output_dir` is set."""


UNTRACKED = {"identity": "untracked"}
"""Field metadata: the field does not change a job's result (where things live, how it is tracked, run or shown)."""
INTERPOLATED = {"identity": "interpolated"}
"""Field metadata: a sweep axis the job reads only through the groups that interpolate it (``${keep}``), whose
resolved values hold it; an arm whose groups do not read it (``select=qc_global`` and ``seg_len``) is the same job."""


def job_identity(settings: dict) -> dict:
    """What identifies a job (its fingerprint's input): its resolved ``settings`` without the `UNTRACKED` and
    `INTERPOLATED` fields of `RunConfig` (and without ``hydra``), so arms that differ only in a key nobody reads are
    one job."""
    tracked = {f.name for f in fields(RunConfig) if "identity" not in f.metadata}
    return {k: v for k, v in settings.items() if k in tracked}


@dataclass
class RunConfig:
    """One job: a model (optionally trained first), a token compressor, a schedule, a frame selector, a suite."""

    model: ModelConfig = MISSING
    """The model (group `model`)."""
    compress: Any = MISSING
    """Token compressor, a `_target_` node (group `compress`); its `model` key names the model `model=auto` uses."""
    schedule: Any = MISSING
    """Tokens per frame entering each layer, a `_target_` node returning a `CompressionSchedule` (group `schedule`)."""
    select: Any = MISSING
    """Frame selector, a `_target_` node (group `select`)."""
    data: Any = MISSING
    """The QA suite, a `_target_` node of a source in `xcomp.data` (group `data`)."""
    video: VideoConfig = field(default_factory=VideoConfig)
    """Video decoding of the suites' files."""
    logger: LoggerConfig = field(default=MISSING, metadata=UNTRACKED)
    """Tracking (group `logger`)."""
    train: Any = None
    """Training before the test, a `TrainConfig` (group `train`: sct, base), or None (`train=none`)."""
    trainer: TrainerConfig = MISSING
    """How Lightning runs that training (group `trainer`)."""
    val: ValConfig = field(default_factory=ValConfig)
    """Validation suite of a training job."""
    test: bool = True
    """Answer the test suite after training (False: the job's metrics are its last validation, as in a search)."""
    report: ReportConfig | None = field(default=None, metadata=UNTRACKED)
    """The report rendered at the end of the sweep (group `report`, selected by experiment files), or None."""
    search: SearchConfig | None = field(default=None, metadata=UNTRACKED)
    """The Optuna search this job belongs to (group `search`), or None."""
    trial: int | None = None
    """The job's Optuna trial number (set by the search's sweeper; part of the job's identity)."""
    paths: PathsConfig = field(default_factory=PathsConfig, metadata=UNTRACKED)
    """Project paths."""
    seg_len: int = field(default=8, metadata=INTERPOLATED)
    """QC-Comp segment length in frames (sweep axis, read through `select`)."""
    keep: float = field(default=0.5, metadata=INTERPOLATED)
    """Fraction of sampled frames the selector keeps (sweep axis, read through `select`)."""
    frames: int = 64
    """Frames sampled per video (sweep axis; a multiple of the model's clip length)."""
    seed: int = 0
    """Seed of random initialisation and random methods (sweep axis)."""
    budget: float | None = field(default=None, metadata=INTERPOLATED)
    """Share of the dense model's visual token-layers the budgeted methods spend (sweep axis; null: LP-Comp's
    cosine share at the model's layer count; read through `compress`)."""
    max_new_tokens: int = 8
    """Answer length limit."""
    objective: Any = field(default="accuracy", metadata=UNTRACKED)
    """Metric the job returns to the sweeper, or a list of them (a multi-objective search)."""
    rerun: bool = field(default=False, metadata=UNTRACKED)
    """Run again even when a FINISHED run of the same job exists."""
    reuse: bool = True
    """Do question-independent work once per video (false: every question on its own, the reference path)."""
    device: str = "auto"
    """Where an evaluation job runs: auto (a CUDA GPU when there is one), cpu, or cuda."""
    dtype: str = "fp32"
    """Weights and activations of an evaluation job: fp32, bf16 or fp16."""
    eval: EvalConfig = field(default_factory=EvalConfig, metadata=UNTRACKED)
    """How an evaluation runs."""
    cache: CacheConfig = field(default_factory=CacheConfig, metadata=UNTRACKED)
    """The evaluation's disk caches."""
    progress: bool = field(default=False, metadata=UNTRACKED)
    """Show progress bars."""


def register() -> None:
    """Store the schemas (run.yaml and the group options name them in their defaults) and the `${xcomp_model:NAME}`
    resolver of conf/; what `run.py` (or anything that composes conf/) calls before Hydra composes."""
    OmegaConf.register_new_resolver("xcomp_model", shipped_model, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    for name, source in all_sources().items():
        cs.store(group="data", name=f"{name}_schema", node=source_schema(source))
    for name, source in all_train_sources().items():
        cs.store(group="train/data", name=f"{name}_schema", node=source_schema(source))
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)
    cs.store(group="report", name="report_schema", node=ReportConfig)
    cs.store(group="train", name="train_schema", node=TrainConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
