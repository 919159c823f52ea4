"""The training service as a real process, killed mid-run: the run resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from strata.common.events import make_event
from strata.common.topics import CONTRACTS, MODELS_PUBLISHED, TRAINING_REQUESTED
from strata.gateway.contract import parse_contract
from strata.v1 import events_pb2

from ..marks import ONE_RAY_AT_A_TIME
from .conftest import kit_service_env, produce, read_topic, start_broker, wait_until
from .inference_support import digits, item_events
from .test_inference import contract
from .training_support import consensus_events

pytestmark = ONE_RAY_AT_A_TIME


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "pgdata", free_port())
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own: the fixed-name consumer group must not wade through every
    other test's events first."""
    broker = start_broker(tmp_path)
    yield broker
    broker.stop()


# Enough that the process is killed mid-run: a one-worker epoch of 300 labels, with its
# checkpoint and progress report, takes a few milliseconds on the warm worker.
EPOCHS = 300


def start(
    pg: EmbeddedPostgres, bootstrap: str, tmp_path: Path, log: Path
) -> subprocess.Popen[bytes]:
    env = kit_service_env(
        pg.dsn,
        bootstrap,
        STRATA_TRAINING_GRPC_PORT=str(free_port()),
        STRATA_TRAINING_METRICS_PORT=str(free_port()),
        STRATA_TRAINING_ARTIFACT_ROOT=f"file://{tmp_path}/artifacts",
        STRATA_TRAINING_RAY_STORAGE=str(tmp_path / "ray"),
        STRATA_TRAINING_EPOCHS=str(EPOCHS),
        STRATA_TRAINING_CHECKPOINT_EVERY_S="0",
        STRATA_TRAINING_MIN_STEPS="0",
        STRATA_TRAINING_POLL_S="0.2",
    )
    with open(log, "ab") as out:
        # Its own session: killing the group takes its local Ray down with it, as a
        # node failure would.
        return subprocess.Popen(
            [sys.executable, "-m", "strata.training"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def query(pg: EmbeddedPostgres, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.dsn, options="-c search_path=training") as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def explained(
    log: Path, pg: EmbeddedPostgres, predicate: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """wait_until; a timeout shows the runs table and the service's log tail."""
    try:
        wait_until(predicate, timeout_s, what)
    except AssertionError as exc:
        runs = query(pg, "SELECT state, epoch, error FROM runs")
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        raise AssertionError(f"{exc}\nruns: {runs}\ntraining log tail:\n{tail}") from None


def test_a_killed_training_process_resumes_its_run_from_the_last_checkpoint(
    own_postgres: EmbeddedPostgres, own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    x, y = digits()
    project = f"k{uuid.uuid4().hex[:8]}"
    log = tmp_path / "training.log"
    proc = start(own_postgres, bootstrap, tmp_path, log)
    try:
        loaded = events_pb2.ContractLoaded(contract=parse_contract(contract(project)))
        produce(bootstrap, [make_event(CONTRACTS, project, loaded)])
        produce(bootstrap, item_events(project, x[:300], f"{project}-"))
        produce(
            bootstrap,
            consensus_events(
                project,
                [f"{project}-{i}" for i in range(300)],
                [str(v) for v in y[:300]],
                [0.95] * 300,
                [["a", "b"]] * 300,
            ),
        )
        wait_until(
            lambda: query(own_postgres, "SELECT count(*) FROM labels")[:1] == [(300,)],
            120,
            "labels stored",
        )
        request = events_pb2.TrainingRequested(project=project, consensus_labels=300)
        produce(bootstrap, [make_event(TRAINING_REQUESTED, project, request)])
        explained(
            log,
            own_postgres,
            lambda: bool(query(own_postgres, "SELECT 1 FROM runs WHERE epoch >= 3")),
            180,
            "the run past its third epoch",
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        (run_id, state, epoch) = query(own_postgres, "SELECT run_id, state, epoch FROM runs")[0]
        assert state == "running" and 3 <= epoch < EPOCHS

        proc = start(own_postgres, bootstrap, tmp_path, log)
        explained(
            log,
            own_postgres,
            lambda: (
                query(own_postgres, "SELECT state FROM runs")[:1]
                in ([("succeeded",)], [("failed",)])
            ),
            240,
            "the run ended after the restart",
        )
        (state, resumed, final_epoch, error) = query(
            own_postgres, "SELECT state, resumed, epoch, error FROM runs"
        )[0]
        assert state == "succeeded", error
        assert resumed and final_epoch == EPOCHS
        published = read_topic(bootstrap, MODELS_PUBLISHED, lambda m: m.project == project, 1, 30)
        assert [m.run_id for m in published] == [str(run_id)]
        # The ledger came back with the checkpoint: one row per label and group, none twice.
        rows = query(
            own_postgres,
            "SELECT count(*), count(DISTINCT (label_id, layer_group)), min(influence) FROM ledger",
        )[0]
        assert rows[0] == rows[1] == 300 * 3 and rows[2] > 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
