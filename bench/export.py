"""Dataset export at scale: how fast `strata export` writes a project's decided labels in
each format, and how much memory the quality server and the exporting client take.

Starts its own Postgres, broker and gateway (mutual TLS, the tests' local CA) and fills
quality's tables with COPY: `--sizes` accepted items (100,000 then 1,000,000), each with
3 human votes (a third with a pre-label shown), a short text, external id and metadata,
and the ConsensusLabel quality stores (quality's own `consensus_message`). At each size,
for each format, a fresh quality process serves ExportLabels and a fresh client process
runs `strata export`'s `write_export` as the bootstrap admin, so each peak is one
export's alone:

- rows/s and MB/s: decided items and file bytes over the client's wall time;
- peak RSS: each process's high-water mark (VmHWM; the server's also sampled every
  50 ms), beside its RSS just before the export; and each process's CPU seconds.

Streaming holds when the peaks at 1M are about those at 100k, not 10x. Each file is read
back: one row per decided item, every JSONL row complete.

The bench ends by sampling a quality process, idle with the largest project loaded, for
`--idle-s` seconds: its background work (estimates, audits, metric gauges) must not grow
with the project either. Writes bench/results/export.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from harness import client_channel, embedded_stack, gateway_process, report, service_env  # noqa: E402
from strata.cli.progress import ProgressBar  # noqa: E402
from strata.common.embedded import free_port  # noqa: E402
from strata.quality.handlers import consensus_message  # noqa: E402
from strata.quality.store import VoteRow  # noqa: E402
from strata.v1 import common_pb2  # noqa: E402

from tests import pki  # noqa: E402

PROJECT = "bench-export"
CLASSES = [f"c{i}" for i in range(10)]
FORMATS = ("jsonl", "csv", "parquet", "label-studio")
SUFFIX = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "label-studio": "json"}
ANNOTATORS = 200
BATCH = 50_000
EPOCH = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
MB = 1024 * 1024


def item_id(i: int) -> str:
    return f"item-{i:07d}"


def contract() -> common_pb2.LabelingContract:
    c = common_pb2.LabelingContract(
        project=PROJECT,
        version="v1",
        classes=[common_pb2.ClassDefinition(name=n) for n in CLASSES],
        overlap=common_pb2.OverlapPolicy(min=3, max=5),
        consensus_threshold=0.9,
        gold_accuracy_threshold=0.7,
        agreement=common_pb2.AgreementPolicy(metric="krippendorff_alpha", threshold=0.6),
    )
    c.loaded_at.FromDatetime(EPOCH)
    return c


def decision(i: int) -> tuple[str, float, list[float]]:
    """Item i's consensus: its value, score and posterior over CLASSES."""
    value, score = CLASSES[i % len(CLASSES)], 0.93 if i % 4 == 0 else 0.99
    return value, score, [score if c == value else (1 - score) / 9 for c in CLASSES]


def votes(i: int) -> list[tuple[str, str, str]]:
    """(label id, annotator, value) of item i's three votes; one item in four has a dissent."""
    value, crowd = i % len(CLASSES), i % 50
    return [
        (
            f"{item_id(i)}-{k}",
            f"ann-{(crowd * 4 + k * 67) % ANNOTATORS:03d}",
            CLASSES[(value + 1) % len(CLASSES) if i % 4 == 0 and k == 2 else value],
        )
        for k in range(3)
    ]


class Consensus:
    """Item i's ConsensusLabel as quality stores it: a template per (value, crowd,
    dissent) with the item id swapped in (ids have a fixed width: the bytes stay valid)."""

    PLACEHOLDER = item_id(9_999_999)

    def __init__(self) -> None:
        self._templates: dict[tuple[int, int, bool], bytes] = {}

    def __call__(self, i: int) -> bytes:
        key = (i % len(CLASSES), i % 50, i % 4 == 0)
        if key not in self._templates:
            value, score, posterior = decision(i)
            rows = [
                VoteRow(label.replace(item_id(i), self.PLACEHOLDER), who, given, "human", EPOCH)
                for label, who, given in votes(i)
            ]
            msg = consensus_message(
                self.PLACEHOLDER, PROJECT, "v1", "accepted", "dawid_skene", value, score, rows,
                [0.8, 0.9, 0.6], CLASSES, posterior,
            )  # fmt: skip
            msg.decided_at.FromDatetime(EPOCH)
            self._templates[key] = msg.SerializeToString()
        return self._templates[key].replace(self.PLACEHOLDER.encode(), item_id(i).encode())


def item_rows(lo: int, hi: int, consensus: Consensus) -> Iterator[tuple[object, ...]]:
    for i in range(lo, hi):
        value, score, posterior = decision(i)
        decided = EPOCH + timedelta(seconds=i, minutes=5)
        yield (item_id(i), PROJECT, "v1", "accepted", 3, 3, value, score, "dawid_skene",
               CLASSES, posterior, value, decided, "consensus", consensus(i))  # fmt: skip


def vote_rows(lo: int, hi: int) -> Iterator[tuple[object, ...]]:
    for i in range(lo, hi):
        shown = i % 3 == 0  # a pre-label was shown
        for k, (label, who, given) in enumerate(votes(i)):
            yield (label, item_id(i), PROJECT, who, given, "v1", "human",
                   EPOCH + timedelta(seconds=i, milliseconds=k * 1500),
                   1200 + (i * 7 + k) % 4000, 900 + (i * 5 + k) % 3000,
                   CLASSES[i % len(CLASSES)] if shown else None,
                   0.87 if shown else None, "mlp-3" if shown else None)  # fmt: skip


def data_rows(lo: int, hi: int) -> Iterator[tuple[object, ...]]:
    for i in range(lo, hi):
        text = (
            f"Review {i}: the parcel came on day {i % 9 + 1}, the product matched its "
            f"listing {i % 97}, would buy again."
        )
        content = common_pb2.ItemContent(text=text).SerializeToString()
        meta = json.dumps({"source": "bench", "batch": str(i // BATCH)})
        yield (item_id(i), PROJECT, f"shop-{i:08d}", content, meta, EPOCH)


COPY = {
    "items": "item_id, project, ontology_version, state, votes, requested_overlap, value, "
    "consensus_score, method, classes, posterior, majority_value, decided_at, decided_by, "
    "consensus",
    "votes": "label_id, item_id, project, annotator_id, value, ontology_version, source, "
    "submitted_at, duration_ms, active_ms, prelabel_value, prelabel_confidence, prelabel_model",
    "item_data": "item_id, project, external_id, content, metadata, imported_at",
}


def populate(dsn: str, start: int, stop: int) -> float:
    """COPY items start..stop-1 into quality's tables, then ANALYZE; returns seconds."""
    consensus = Consensus()
    began = time.monotonic()
    bar = ProgressBar("populating", stop - start)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for lo in range(start, stop, BATCH):
            hi = min(stop, lo + BATCH)
            batches = {
                "items": item_rows(lo, hi, consensus),
                "votes": vote_rows(lo, hi),
                "item_data": data_rows(lo, hi),
            }
            with conn.transaction(), conn.cursor() as cur:
                for table, rows in batches.items():
                    with cur.copy(f"COPY quality.{table} ({COPY[table]}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            bar.update(hi - start)
        bar.close()
        for table in COPY:
            conn.execute(f"ANALYZE quality.{table}")
    return time.monotonic() - began


class PeakRss:
    """The most resident memory of a process, sampled every 50 ms while in the block."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            while not self._stop.wait(0.05):
                self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# The client: `strata export`'s write_export over the CLI's TLS and bearer token, timed,
# importing what the command imports and nothing of the bench.
CLIENT = """
import json, os, sys, time
from pathlib import Path
from strata.cli.reports import write_export
from strata.common.tls import load_tls_config, open_channel
from strata.v1 import quality_pb2_grpc

def status(field):
    return int(Path("/proc/self/status").read_text().split(field)[1].split()[0]) * 1024

address, project, fmt, path = sys.argv[1:5]
metadata = [("authorization", "Bearer " + os.environ["STRATA_TOKEN"])]
before, cpu = status("VmRSS:"), sum(os.times()[:2])
with open_channel(address, load_tls_config(os.environ)) as channel:
    began = time.perf_counter()
    stub = quality_pb2_grpc.QualityStub(channel)
    records = write_export(stub, metadata, project, fmt, Path(path))
    took = time.perf_counter() - began
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the process that forked.
print(json.dumps({"seconds": took, "records": records, "rss_before": before,
                  "peak": status("VmHWM:"), "cpu": sum(os.times()[:2]) - cpu}))
"""


def start_quality(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """A quality process, once it answers gRPC."""
    args = ["-m", "strata.quality"]
    proc = subprocess.Popen([sys.executable, *args], env=env)
    with client_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=120)
    return proc


def high_water(pid: int) -> int:
    """The most resident memory process `pid` has had (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def export_once(env: dict[str, str], port: int, token: str, fmt: str, path: Path) -> dict[str, Any]:
    """One export by a fresh client from a fresh quality process; its figures."""
    server = start_quality(env, port)
    try:
        time.sleep(1.0)
        process = psutil.Process(server.pid)
        idle, cpu = process.memory_info().rss, sum(process.cpu_times()[:2])
        with PeakRss(server.pid) as sampled:
            done = subprocess.run(
                [sys.executable, "-c", CLIENT, f"127.0.0.1:{port}", PROJECT, fmt, str(path)],
                env={**os.environ, **pki.environ("cli"), "STRATA_TOKEN": token},
                capture_output=True,
                text=True,
                check=False,
            )
        server_cpu = sum(process.cpu_times()[:2]) - cpu
        server_hwm = high_water(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"export {fmt} failed:\n{done.stderr}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    size = path.stat().st_size
    return {
        "seconds": round(got["seconds"], 2),
        "records": got["records"],
        "rows_per_s": round(got["records"] / got["seconds"]),
        "file_mb": round(size / MB, 1),
        "mb_per_s": round(size / MB / got["seconds"], 1),
        "server_idle_rss_mb": round(idle / MB),
        "server_peak_rss_mb": round(server_hwm / MB),
        "server_peak_sampled_mb": round(sampled.peak / MB),
        "server_cpu_s": round(server_cpu, 1),
        "client_start_rss_mb": round(got["rss_before"] / MB),
        "client_peak_rss_mb": round(got["peak"] / MB),
        "client_cpu_s": round(got["cpu"], 1),
    }


def count_rows(fmt: str, path: Path, load_whole: bool) -> int:
    """Rows in an export file, read back as a user would (streaming, except Label Studio
    JSON when `load_whole`); every JSONL row must be complete."""
    if fmt == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open(newline="" if fmt == "csv" else None) as f:
        if fmt == "jsonl":
            n = 0
            for line in f:
                row = json.loads(line)
                if not (row["external_id"] and row["data"].get("text")) or len(row["votes"]) != 3:
                    raise SystemExit(f"incomplete export row: {line[:300]}")
                n += 1
            return n
        if fmt == "csv":
            return sum(1 for _ in csv.reader(f)) - 1
        if load_whole:
            return len(json.load(f))
        # One task a line between "[" and "]": json.dumps without indent writes no newline.
        lines = [line for line in f if line.startswith("{")]
    json.loads(lines[0].rstrip(",\n")), json.loads(lines[-1].rstrip(",\n"))
    return len(lines)


def idle_server(env: dict[str, str], port: int, seconds: float) -> dict[str, int]:
    """A quality process, idle with the project loaded: its RSS and CPU over time."""
    server = start_quality(env, port)
    try:
        process = psutil.Process(server.pid)
        idle, cpu = process.memory_info().rss, sum(process.cpu_times()[:2])
        with PeakRss(server.pid) as peak:
            time.sleep(seconds)
        cpu = sum(process.cpu_times()[:2]) - cpu
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {
        "seconds": int(seconds),
        "rss_at_start_mb": round(idle / MB),
        "peak_rss_mb": round(peak.peak / MB),
        "cpu_s": round(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="decided items, ascending")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--idle-s", type=float, default=60.0, help="0: skip the idle sample")
    parser.add_argument("--name", default="export", help="bench/results/<name>.json")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    formats = args.formats.split(",")

    figures: dict[str, Any] = {"sizes": sizes, "exports": {}}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with embedded_stack(home) as (pg, kafka), gateway_process(pg, kafka) as (gw, meta):
            token = meta[0][1].removeprefix("Bearer ")
            port = free_port()
            env = service_env(
                pg,
                kafka,
                "quality",
                STRATA_QUALITY_GRPC_PORT=str(port),
                STRATA_GATEWAY_ADDRESS=gw,
                STRATA_QUALITY_ESTIMATE_INTERVAL_S="3600",
                STRATA_QUALITY_LABEL_ERROR_INTERVAL_S="86400",
                OMP_NUM_THREADS="1",
            )
            first = start_quality(env, port)  # creates quality's schema
            first.terminate()
            first.wait(timeout=60)
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO quality.contracts VALUES (%s, %s, %s, %s)",
                    (PROJECT, "v1", contract().SerializeToString(), EPOCH),
                )
            done = 0
            for size in sizes:
                took = populate(pg.dsn, done, size)
                print(f"{size:,} decided items in quality ({took:.0f}s to COPY)")
                done = size
                for fmt in formats:
                    path = home / f"labels-{size}.{SUFFIX[fmt]}"
                    print(f"exporting {size:,} as {fmt} ...", flush=True)
                    row = export_once(env, port, token, fmt, path)
                    rows = count_rows(fmt, path, load_whole=size <= 100_000)
                    if rows != size or row["records"] != size:
                        raise SystemExit(f"{fmt}: {rows} rows, {row['records']} sent, not {size}")
                    if fmt == "parquet":
                        row["row_groups"] = pq.ParquetFile(path).metadata.num_row_groups
                    path.unlink()
                    print(f"  {json.dumps(row)}", flush=True)
                    figures["exports"].setdefault(fmt, {})[str(size)] = row
            if args.idle_s:
                print(f"sampling a quality process, idle, {args.idle_s:.0f}s ...")
                figures["idle"] = idle_server(env, port, args.idle_s)
    print_table(figures)
    report(args.name, figures)


def print_table(figures: dict[str, Any]) -> None:
    head = (
        "format          items  rows/s    MB/s   file MB  server peak (idle)  client peak (start)"
    )
    print(head)
    for fmt, by_size in figures["exports"].items():
        for size, r in by_size.items():
            print(
                f"{fmt:<13}{int(size):>9,}{r['rows_per_s']:>8,}{r['mb_per_s']:>8}"
                f"{r['file_mb']:>10}{r['server_peak_rss_mb']:>9} MB ({r['server_idle_rss_mb']})"
                f"{r['client_peak_rss_mb']:>9} MB ({r['client_start_rss_mb']})"
            )


if __name__ == "__main__":
    main()
