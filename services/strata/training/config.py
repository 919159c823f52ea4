"""The training service's own settings, on top of the kit's ServiceConfig."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from strata.common.config import parse_address, parse_choice, parse_float, parse_int, setting


def parse_artifact_root(raw: str) -> str:
    raw = raw.strip().rstrip("/")
    if raw.startswith("s3://"):
        return raw
    if raw.startswith("file://"):
        raw = raw[len("file://") :]
    if not raw:
        raise ValueError("must be a file:// or s3:// location, or a directory")
    return "file://" + str(Path(raw).expanduser().resolve())


def parse_directory(raw: str) -> str:
    """A local directory (made absolute) or a storage URI Ray Train reads, e.g. s3://bucket/ray
    (what every node of a multi-node Ray cluster can reach)."""
    value = raw.strip()
    if not value:
        raise ValueError("must be a directory or a storage URI such as s3://bucket/path")
    if "://" in value:
        scheme = value.split("://", 1)[0]
        if scheme not in {"s3", "gs", "abfs", "hdfs"}:
            raise ValueError(f"storage URI scheme must be s3, gs, abfs or hdfs, got {scheme!r}")
        return value
    return str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class TrainingConfig:
    """Where artifacts and Ray runs live, run defaults, who may start runs."""

    gateway_address: str = setting(
        "STRATA_GATEWAY_ADDRESS",
        parse_address,
        "",
        "gateway gRPC host:port that checks callers' bearer tokens (unset: guarded calls "
        "are refused)",
    )
    artifact_root: str = setting(
        "STRATA_TRAINING_ARTIFACT_ROOT",
        parse_artifact_root,
        "file://" + str(Path(".strata/artifacts").resolve()),
        "where model artifacts and TracIn checkpoints are written (file:// path shared "
        "with inference, or s3://bucket/prefix)",
    )
    ray_storage: str = setting(
        "STRATA_TRAINING_RAY_STORAGE",
        parse_directory,
        str(Path(".strata/ray").resolve()),
        "Ray Train's storage for run checkpoints (shared by every Ray node)",
    )
    ray_cpus: int = setting(
        "STRATA_TRAINING_RAY_CPUS",
        parse_int(1, 1024),
        2,
        "CPUs of the local Ray instance started when RAY_ADDRESS is not set",
    )
    num_workers: int = setting(
        "STRATA_TRAINING_NUM_WORKERS",
        parse_int(1, 256),
        1,
        "data-parallel Ray Train workers per run (StartRun may ask for another number)",
    )
    single_worker: str = setting(
        "STRATA_TRAINING_SINGLE_WORKER",
        parse_choice("warm", "ray_train"),
        "warm",
        "how a one-worker run trains: on a long-lived Ray actor with torch loaded (warm: "
        "well under a second of overhead, resumes from its checkpoints like a Ray Train "
        "run) or in a fresh Ray Train worker group (ray_train: about 6 s on 2 cores); "
        "data-parallel runs always use Ray Train",
    )
    epochs: int = setting(
        "STRATA_TRAINING_EPOCHS", parse_int(1, 10_000), 30, "epochs per run by default"
    )
    batch_size: int = setting(
        "STRATA_TRAINING_BATCH_SIZE", parse_int(2, 65_536), 64, "global batch size"
    )
    min_steps: int = setting(
        "STRATA_TRAINING_MIN_STEPS",
        parse_int(0, 10_000_000),
        600,
        "optimizer steps a run takes at least: a run on few labels gets more epochs",
    )
    lr: float = setting("STRATA_TRAINING_LR", parse_float(1e-6, 10.0), 3e-3, "learning rate")
    average_decay: float = setting(
        "STRATA_TRAINING_AVERAGE_DECAY",
        parse_float(0.0, 0.9999),
        0.99,
        "a run publishes the moving average of its weights over its steps at this decay "
        "per step, which steadies test accuracy from one run to the next; 0 publishes the "
        "last step's weights",
    )
    min_labels: int = setting(
        "STRATA_TRAINING_MIN_LABELS",
        parse_int(2, 10_000_000),
        20,
        "accepted labels a project needs before a run is started",
    )
    max_failures: int = setting(
        "STRATA_TRAINING_MAX_FAILURES",
        parse_int(0, 100),
        2,
        "times Ray restarts a run's workers from the last checkpoint before the run fails",
    )
    tracin_checkpoints: int = setting(
        "STRATA_TRAINING_TRACIN_CHECKPOINTS",
        parse_int(1, 100),
        4,
        "checkpoints per run kept for TraceInfluence (spread over the run)",
    )
    checkpoint_every_s: float = setting(
        "STRATA_TRAINING_CHECKPOINT_EVERY_S",
        parse_float(0.0, 86_400.0),
        10.0,
        "a run checkpoints (and reports progress) once this long has passed since its "
        "last checkpoint, and after its last epoch; 0: every epoch",
    )
    concurrent_runs: int = setting(
        "STRATA_TRAINING_CONCURRENT_RUNS",
        parse_int(1, 64),
        2,
        "runs this process trains at once, each of another project (a project's runs "
        "always train one after another); one-worker runs each get a warm actor of their "
        "own, data-parallel runs take Ray's CPUs one run at a time",
    )
    run_lease_s: float = setting(
        "STRATA_TRAINING_RUN_LEASE_S",
        parse_float(5.0, 86_400.0),
        60.0,
        "a running run whose process has not heartbeaten it for this long is queued again "
        "(another replica resumes it from its checkpoint); the process heartbeats every "
        "quarter of it",
    )
    poll_s: float = setting(
        "STRATA_TRAINING_POLL_S",
        parse_float(0.05, 60.0),
        0.5,
        "how often the run loop looks for queued runs",
    )
    ray_train_poll_s: float = setting(
        "STRATA_TRAINING_RAY_TRAIN_POLL_S",
        parse_float(0.05, 10.0),
        0.25,
        "how often Ray Train's controller polls a run's workers (Ray's own default is 2 s): "
        "a run waits for a poll at each step (start, reports, finish), so short runs "
        "finish seconds sooner",
    )
    fault_crash_at_epoch: int = setting(
        "STRATA_TRAINING_FAULT_CRASH_AT_EPOCH",
        parse_int(0, 10_000),
        0,
        "fault injection for tests: a worker of each StartRun run dies as this epoch starts "
        "(the run must resume from its checkpoint); 0, the default, never",
    )
