"""Single-worker runs on a warm Ray actor instead of a fresh Ray Train worker group.

Ray Train starts a controller and a worker group for every `fit` and stops them
after: about 6 s on 2 cores for a run whose steps take half a second, so a
project's model trails its labels. A run with one worker needs no process group,
so it trains on `WarmTrainer`, one long-lived Ray actor per training process with
torch already loaded, through the same worker loop (`train_run`) and with the same
checkpoints: every report is copied to the run's folder in Ray storage (a local
directory or an s3:// URI), a run resumes from the newest one, and when the actor
dies Ray restarts it and the run goes on from there. Data-parallel runs (more than
one worker) still go through Ray Train.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHECKPOINT_PREFIX = "checkpoint_"


class CheckpointStore:
    """A run's checkpoints under `<storage>/<name>/warm/`, on any pyarrow filesystem."""

    def __init__(self, storage: str, name: str) -> None:
        import pyarrow.fs

        self.fs, root = pyarrow.fs.FileSystem.from_uri(storage)
        self.base = f"{root.rstrip('/')}/{name}/warm"

    def _names(self) -> list[str]:
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self.base, allow_not_found=True)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pyarrow.fs.FileType.Directory
            and info.base_name.startswith(CHECKPOINT_PREFIX)
        )

    def latest(self) -> str | None:
        names = self._names()
        return names[-1] if names else None

    def save(self, directory: Path, epoch: int, keep: int = 2) -> None:
        """Copy `directory` in as the checkpoint of `epoch` (written under a temporary
        name, then moved, so a reader never sees half of it); older ones beyond the
        newest `keep` are removed."""
        import pyarrow.fs

        final = f"{CHECKPOINT_PREFIX}{epoch:06d}"
        partial = f"{self.base}/.partial-{final}"
        self.fs.create_dir(partial, recursive=True)
        pyarrow.fs.copy_files(str(directory), partial, destination_filesystem=self.fs)
        target = f"{self.base}/{final}"
        if self.fs.get_file_info(target).type != pyarrow.fs.FileType.NotFound:
            self.fs.delete_dir(target)
        self.fs.move(partial, target)
        for old in self._names()[:-keep]:
            self.fs.delete_dir(f"{self.base}/{old}")

    @contextmanager
    def fetched(self, name: str) -> Iterator[Path]:
        """The checkpoint `name` as a local directory (a copy, removed after)."""
        import pyarrow.fs

        with tempfile.TemporaryDirectory() as tmp:
            pyarrow.fs.copy_files(f"{self.base}/{name}", tmp, source_filesystem=self.fs)
            yield Path(tmp)


class WarmSession:
    """One worker's session whose reports go to a `CheckpointStore`."""

    rank = 0
    world = 1

    def __init__(self, store: CheckpointStore, on_report: Callable[[dict[str, Any]], None]) -> None:
        self.store = store
        self.on_report = on_report
        self.reports: list[dict[str, Any]] = []

    @contextmanager
    def resume(self) -> Iterator[Path | None]:
        name = self.store.latest()
        if name is None:
            yield None
            return
        with self.store.fetched(name) as directory:
            yield directory

    def report(self, metrics: dict[str, Any], directory: Path) -> None:
        self.store.save(directory, int(metrics["epoch"]))
        self.reports.append(dict(metrics))
        self.on_report(metrics)


class WarmTrainer:
    """The actor: trains one run at a time through `train_run` (torch stays loaded)."""

    def __init__(self) -> None:
        import torch  # noqa: F401  (loaded once, here, not at each run)

        from strata.training import distributed  # noqa: F401

    def ready(self) -> bool:
        return True

    def train(
        self, plan: Any, storage: str, name: str, progress: Any | None
    ) -> list[dict[str, Any]]:
        """Train (or resume) `plan`; returns what each report said."""
        from strata.training.distributed import train_run

        def on_report(metrics: dict[str, Any]) -> None:
            if progress is not None:
                progress.after_report(None, [metrics], None)

        session = WarmSession(CheckpointStore(storage, name), on_report)
        train_run(plan, session)
        return session.reports


def wait_ready(actor: Any, timeout_s: float = 120.0) -> None:
    """Return once the actor answers: after its process died, Ray takes a few seconds
    to restart it, and a call meanwhile fails as unavailable (not as another death)."""
    import ray
    from ray.exceptions import ActorUnavailableError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(actor.ready.remote())
            return
        except ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def train_warm(
    actor: Any,
    plan: Any,
    storage: str,
    name: str,
    progress: Any | None,
    max_failures: int,
    on_failure: Callable[[int, Exception], None] = lambda n, exc: None,
) -> list[dict[str, Any]]:
    """Train `plan` on the WarmTrainer `actor`; when its process dies, Ray restarts it
    and the run resumes from its last checkpoint, up to `max_failures` times (then a
    RuntimeError). Returns what each report said."""
    import ray
    from ray.exceptions import RayActorError

    failures = 0
    while True:
        wait_ready(actor)
        try:
            return list(ray.get(actor.train.remote(plan, storage, name, progress)))
        except RayActorError as exc:
            failures += 1
            if failures > max_failures:
                raise RuntimeError(
                    f"training failed on Ray: the worker died {failures} times ({exc})"
                ) from None
            on_failure(failures, exc)


def start_warm_trainer() -> Any:
    """A WarmTrainer actor of this Ray job, restarted by Ray whenever its process dies.

    It asks Ray for no CPU, so it never waits for a data-parallel run of the process's
    other run loop that holds Ray's CPUs: the two runs share the machine's cores."""
    import ray

    return ray.remote(num_cpus=0, max_restarts=-1)(WarmTrainer).remote()
