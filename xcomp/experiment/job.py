"""One job of `run.py`: check the composed config, build the system from it, train it if asked (`train=`), evaluate,
track, return the objective.

Bad input (a value out of range, a missing model, a broken suite) is one `error:` line: a single run exits 1, a
sweep's job is recorded FAILED in MLflow and returns NaN so the other jobs still run (the sweep callback exits
non-zero at the end). A job is identified by what it uses (`schema.job_identity`): one whose fingerprint already
has a FINISHED run (under the same sweep parent) is not run again unless `rerun=true` — skipped when that run is
this arm's, else recorded as this arm's run reusing it (`Tracker.reuse_job`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xcomp.errors import ConfigError, XCompError
from xcomp.experiment import outcome, suites
from xcomp.experiment.callbacks import PARENT_FILE
from xcomp.experiment.components import build
from xcomp.experiment.schema import job_identity
from xcomp.model.attention import check_attn_implementation
from xcomp.tracking import Tracker, arm_overrides, fingerprint, is_arm, masked
from xcomp.video.decode import check_backend

log = logging.getLogger(__name__)

METRICS = (
    "accuracy", "accuracy_se", "token_layers_ratio", "prefill_flops_ratio", "kv_cache_bytes_ratio", "scoring_flops",
)
OBJECTIVES = METRICS + tuple(f"val.{m}" for m in METRICS)
"""Metrics a job can return to a sweeper (`objective=`; ``val.*`` for a job scored on validation, `test=false`)."""


DEVICES = ("auto", "cpu", "cuda")
"""Where an evaluation job runs (`device`)."""
DTYPES = ("fp32", "bf16", "fp16")
"""What an evaluation job computes in (`dtype`)."""


def check(cfg: DictConfig) -> None:
    """Range and cross-field checks that the schema's types cannot express."""
    if cfg.seg_len < 1:
        raise ConfigError(f"seg_len must be >= 1 frame, got {cfg.seg_len}")
    if not 0 < cfg.keep <= 1:
        raise ConfigError(f"keep must be a fraction in (0, 1], got {cfg.keep}")
    if cfg.frames < 1:
        raise ConfigError(f"frames must be >= 1, got {cfg.frames}")
    if cfg.max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {cfg.max_new_tokens}")
    check_backend(cfg.video.backend)
    if cfg.device not in DEVICES or cfg.dtype not in DTYPES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)} and dtype one of {', '.join(DTYPES)}; "
                          f"got {cfg.device}, {cfg.dtype}")  # fmt: skip
    if cfg.eval.workers < 0:
        raise ConfigError(f"eval.workers must be >= 0, got {cfg.eval.workers}")
    if device(cfg) == "cuda" and not torch_cuda():
        raise ConfigError("device=cuda but no CUDA GPU is visible here; use device=cpu (or auto)")
    check_attn_implementation(cfg.model.attn_implementation)
    if cfg.model.attn_implementation == "flash_attention_2" and device(cfg) != "cuda":
        raise ConfigError("flash_attention_2 runs on a CUDA GPU: set device=cuda, or use sdpa or eager on the CPU")
    objectives = objective_names(cfg)
    if not objectives or any(o not in OBJECTIVES for o in objectives):
        raise ConfigError(f"objective must be one or a list of {', '.join(OBJECTIVES)}; got {cfg.objective}")
    prefix = "" if cfg.test else "val."
    if any(o.startswith("val.") == cfg.test for o in objectives):
        raise ConfigError(f"a job with test={cfg.test} is scored on {prefix or 'test '}metrics; objective {cfg.objective}")
    validates = not cfg.test or (cfg.train is not None and cfg.train.val_every)
    if validates and cfg.val.n < 1:
        raise ConfigError(f"val.n must be >= 1 question per family, got {cfg.val.n}")
    if "seed" in cfg.data:  # a generated suite: a case is seeded by (seed, family, index)
        seeds = {"data.seed": cfg.data.seed}
        if cfg.train is not None and "seed" in cfg.train.data:
            seeds["train.data.seed"] = cfg.train.data.seed
        if validates:
            seeds["val.seed"] = cfg.val.seed
        if len(set(seeds.values())) < len(seeds):
            shown = ", ".join(f"{k} = {v}" for k, v in seeds.items())
            raise ConfigError(f"training, validation and test draw from distinct seeds; got {shown}")


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def device(cfg: DictConfig) -> str:
    """The evaluation's device: `device`, with auto resolved (cuda where a GPU is visible)."""
    return ("cuda" if torch_cuda() else "cpu") if cfg.device == "auto" else cfg.device


def objective_names(cfg: DictConfig) -> list[str]:
    """The metric names of `objective` (one, or a list for a multi-objective search)."""
    return [cfg.objective] if isinstance(cfg.objective, str) else list(cfg.objective)


def objective(cfg: DictConfig, metrics) -> float | list[float]:
    """What the job returns to the sweeper: the objective metric(s), NaN where missing."""
    values = [float(metrics.get(name, math.nan)) for name in objective_names(cfg)]
    return values[0] if isinstance(cfg.objective, str) else values


def run(cfg: DictConfig) -> float | list[float]:
    """Evaluate the composed system; returns the value of `cfg.objective` (NaN for a failed sweep job)."""
    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    overrides = list(hydra.overrides.task)
    label = " ".join(overrides) or "(defaults)"
    start = time.perf_counter()
    tracker = run_id = None
    primary = _primary_process()
    if not cfg.progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading and saving weights
    try:
        if cfg.logger.enabled:  # every process looks the job up, so that all skip a finished one together
            tracker = Tracker(cfg.logger.tracking_uri, cfg.logger.experiment, cfg.logger.artifact_root)
        try:
            settings = OmegaConf.to_container(cfg, resolve=True)
            problem = None
        except OmegaConfBaseException as error:  # e.g. a shipped model that is not there: recorded below
            settings, problem = {}, error
        job_key = fingerprint(job_identity(settings) or {"overrides": overrides})
        if tracker is not None:
            parent_id = _parent_id(hydra) if multirun else None
            finished, unfinished = tracker.job_run(job_key, parent_id, overrides)
            own = finished is not None and is_arm(finished, overrides)
            # another arm's run of this job is reused when its predictions can be read (else this arm runs it)
            reused = None if finished is None or own or cfg.rerun else tracker.predictions(finished)
            if not cfg.rerun and (own or reused is not None):
                if primary and own:
                    print(f"skip: {label}: finished as run {finished.info.run_id}", flush=True)
                elif primary:  # another arm ran this job: this arm's run records that it reuses it
                    run_id = tracker.start_job(job_key, settings, overrides, _job_tags(settings, hydra), unfinished, parent_id)
                    tracker.reuse_job(run_id, finished, reused)
                    print(f"reuse: {label}: the same job as {' '.join(arm_overrides(finished)) or '(defaults)'} "
                          f"(run {finished.info.run_id})", flush=True)  # fmt: skip
                return objective(cfg, finished.data.metrics)
            if not primary:  # only rank 0 of a torchrun job tracks it
                tracker = None
            else:
                tags = _job_tags(settings, hydra)
                run_id = tracker.start_job(job_key, settings, overrides, tags, unfinished, parent_id)
        if problem is not None:
            raise problem
        check(cfg)
        compressor, fields = compression(cfg)
        if cfg.train is None:
            metrics, predictions, ran_with = evaluate(cfg, compressor, fields)
            if not primary:
                return math.nan
        else:
            from xcomp.experiment import training

            config = training.train_config(cfg, job_key)  # both checked before any work
            trainer = training.trainer_config(cfg)
            metrics, predictions, ran_with = training.train(cfg, config, trainer, compressor, fields, tracker, run_id)
            if not primary:
                return math.nan
        metrics["seconds.job"] = time.perf_counter() - start
        if "budget" in ran_with:  # the share of dense token-layers a budgeted method spent, beside what it measured
            metrics["budget"] = float(ran_with["budget"])
        if tracker is not None:
            tracker.finish_job(run_id, ran_with, predictions, metrics)
        on = "" if cfg.test else "val."
        print(f"done: {label}: {on}accuracy {metrics[on + 'accuracy']:.3f} ± {metrics[on + 'accuracy_se']:.3f} "
              f"over {metrics[on + 'questions']:.0f} questions", flush=True)  # fmt: skip
        return objective(cfg, metrics)
    except (XCompError, OmegaConfBaseException, OSError) as error:
        message = one_line(error)
        _fail(tracker, run_id, message)
        print(f"error: {label}: {message}" if multirun else f"error: {message}", file=sys.stderr, flush=True)
        if multirun:
            return math.nan
        raise SystemExit(1) from None
    except BaseException as error:  # a bug or an interrupt: recorded, then shown in full
        _fail(tracker, run_id, f"{type(error).__name__}: {error}")
        if multirun and isinstance(error, Exception):
            log.exception("job %s failed", label)
            return math.nan
        raise


def one_line(error: BaseException) -> str:
    """An error as the one line a user reads; an error re-raised from a DataLoader worker (whose first line is
    "Caught VideoError in DataLoader worker process 0.") says what the original said (its last line)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    if lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def compression(cfg: DictConfig):
    """The job's token compressor and the `XCompConfig` fields that switch it on (its schedule resolved against
    the model's layers; `schedule=model` keeps the model's own); checks the frame count against the clip."""
    from xcomp.model.convert import load_config

    config = load_config(cfg.model.path)
    clip = config.local_num_frames
    if cfg.frames % clip:
        raise ConfigError(f"frames must be a multiple of the model's clip length {clip}, got {cfg.frames}")
    compressor = build({k: v for k, v in cfg.compress.items() if k != "model"})
    fields = compressor.config_fields()
    if cfg.schedule:
        schedule = build(cfg.schedule, num_layers=config.num_layers, tokens_per_frame=config.tokens_per_frame)
        fields["schedule"] = list(schedule.kept)
    return compressor, fields


def evaluate(cfg: DictConfig, compressor, fields: dict) -> tuple[dict[str, float], list[dict], dict[str, str]]:
    """Answer the suite with the job's model switched to ``compressor`` by ``fields`` (`compression`) and the
    selector of ``cfg``, in Lightning's test loop (each process of a torchrun job its share of the videos); returns
    the metrics, one prediction row per question, and what the model ran with."""
    import torch

    from xcomp.evaluation.lightning import SuiteEvaluation, test
    from xcomp.evaluation.runner import prediction_rows
    from xcomp.model.attention import use_attn_implementation
    from xcomp.model.convert import load_config, load_model
    from xcomp.model.modeling import XCompForCausalLM
    from xcomp.model.processing import XCompProcessor

    path, attn = cfg.model.path, cfg.model.attn_implementation
    config = load_config(path)
    image_size = config.vision_config.image_size
    processor = XCompProcessor.from_pretrained(path, image_size=image_size)
    suite = suites.load(cfg, suites.scored_data(cfg), image_size, config.local_num_frames)
    if cfg.model.random_init:
        torch.manual_seed(cfg.seed)
        model = use_attn_implementation(XCompForCausalLM(config.with_compression(**fields)), attn)
    else:
        model = load_model(path, attn, **fields)
    model = model.to({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.dtype])
    evaluation = SuiteEvaluation(
        processor, selector=build(cfg.select), system=compressor.name, max_new_tokens=cfg.max_new_tokens, test=suite,
        reuse=cfg.reuse, feature_cache=outcome.feature_cache(cfg), workers=cfg.eval.workers,
    )  # fmt: skip
    accelerator = "gpu" if device(cfg) == "cuda" else "cpu"
    test(model, evaluation, accelerator=accelerator, strategy=cfg.trainer.strategy, progress=cfg.progress)
    return outcome.scored(cfg, evaluation.metrics), prediction_rows(evaluation.records), outcome.used(model.config)


def _primary_process() -> bool:
    """False in the other processes of a torchrun job: they train and answer their share; rank 0 tracks."""
    from lightning.fabric.plugins.environments import TorchElasticEnvironment

    return not TorchElasticEnvironment.detect() or TorchElasticEnvironment().global_rank() == 0


def _parent_id(hydra) -> str | None:
    file = Path(hydra.sweep.dir) / PARENT_FILE
    return file.read_text().strip() if file.is_file() else None


def _job_tags(settings: dict, hydra) -> dict[str, str]:
    """The tags of a job's run that come from its config and Hydra: model, method, job number, and for a search's
    trial what found it (study, sampler, storage without its password)."""
    model = settings.get("model", {})
    tags = {
        "model": str(model.get("name", "")),
        "model.path": str(model.get("path", "")),
        "compress": str(settings.get("compress", {}).get("_target_", "")).rsplit(".", 1)[-1],
        "job.num": str(hydra.job.get("num", "")),
    }
    if settings.get("trial") is not None:  # a search's trial: what found it
        sweeper = hydra.sweeper
        tags.update({
            "optuna.trial": str(settings["trial"]),
            "optuna.study": str(sweeper.get("study_name")),
            "optuna.sampler": str(sweeper.get("sampler", {}).get("_target_", "")).rsplit(".", 1)[-1],
            "optuna.storage": masked(sweeper.get("storage")),
        })
    return tags


def _fail(tracker: Tracker | None, run_id: str | None, message: str) -> None:
    """Record the job's run FAILED with ``message``, where it is tracked and its run started."""
    if tracker is not None and run_id is not None:
        tracker.fail_job(run_id, message)
