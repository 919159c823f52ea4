"""The `strata` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from strata.cli.contracts import add_commands as add_contract_commands
from strata.cli.importer import add_commands as add_import_commands
from strata.cli.people import add_commands as add_people_commands
from strata.cli.progress import ProgressBar, step
from strata.cli.prometheus import PrometheusNotInstalled
from strata.cli.reports import add_commands as add_report_commands
from strata.cli.stack import Stack, StackConfig, load_stack_config
from strata.common.config import ConfigError, ServiceConfig, describe
from strata.common.embedded import PortInUseError

EXIT_CONFIG = 2


class _Interrupted(Exception):
    pass


def _install_signal_handlers(stop: threading.Event) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _start_stack(config: StackConfig, prometheus: bool = False) -> Stack:
    stack = Stack(config, report=step, with_prometheus=prometheus)
    services = stack.services
    print(f"Starting Strata ({', '.join(services) if services else 'infrastructure only'})")
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


def cmd_up(args: argparse.Namespace, config: StackConfig) -> int:
    """Bring the stack up and keep it up until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    _install_signal_handlers(stop)
    started = time.monotonic()
    stack = _start_stack(config, prometheus=args.prometheus)
    print(f"Strata is up and healthy in {time.monotonic() - started:.1f}s.")
    if stack.prometheus is not None:
        print(f"  Prometheus: {stack.prometheus.url} (alerts: {stack.prometheus.url}/alerts)")
    print(f"  STRATA_PG_DSN={stack.pg_dsn}")
    print(f"  STRATA_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}")
    if not stack.services:
        print("  (no service is implemented in this build yet: infrastructure only)")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(1.0):
            failed = stack.failed_processes()
            if failed:
                names = ", ".join(f"{sp.name} (see {sp.log_path})" for sp in failed)
                print(f"A service exited: {names}; stopping.", file=sys.stderr)
                return 1
    finally:
        print("Stopping Strata...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return 0


def cmd_check(args: argparse.Namespace, config: StackConfig) -> int:
    """Probe a running stack (or the one described by STRATA_PG_DSN/KAFKA_BOOTSTRAP)."""

    pg_dsn, bootstrap = config.pg_dsn, config.kafka_bootstrap
    state_file = config.home / "stack.json"
    if (not pg_dsn or not bootstrap) and state_file.exists():
        state = json.loads(state_file.read_text())
        pg_dsn = pg_dsn or state["pg_dsn"]
        bootstrap = bootstrap or state["kafka_bootstrap"]
    if not pg_dsn or not bootstrap:
        print(
            "strata check: no running stack found (start one with `strata up`, or set "
            "STRATA_PG_DSN and STRATA_KAFKA_BOOTSTRAP)",
            file=sys.stderr,
        )
        return 1
    return _probe_and_report(pg_dsn, bootstrap, args.count, None)


def _probe_and_report(pg_dsn: str, bootstrap: str, count: int, out_dir: Path | None) -> int:
    from strata.cli.probe import run_probe

    bar = ProgressBar("probes", count)
    result = run_probe(pg_dsn, bootstrap, count=count, progress=bar.update)
    bar.close()
    print(
        f"  {result.received}/{result.sent} probes through outbox -> broker -> consumer group; "
        f"{result.duplicates_applied} applied twice; group joined in {result.group_join_s:.1f}s; "
        f"latency p50 {result.p50_latency_ms:.0f} ms, p99 {result.p99_latency_ms:.0f} ms"
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "stack-check.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    return 0 if result.ok else 1


def cmd_demo(args: argparse.Namespace, config: StackConfig) -> int:
    """The main job on embedded defaults."""
    out_dir = Path(args.output)
    started = time.monotonic()
    stack = _start_stack(config)
    try:
        print(
            f"Stack healthy in {time.monotonic() - started:.1f}s. "
            "Checking the event pipe end to end:"
        )
        probes = min(args.probes, 50) if args.fast else args.probes
        code = _probe_and_report(stack.pg_dsn, stack.kafka_bootstrap, probes, out_dir)
        print(f"Stack check: {out_dir / 'stack-check.json'}")
        if code != 0:
            return code
        code = _campaign(stack, args.fast, out_dir)
        if stack.with_web:
            if args.serve:
                _serve(stack)
            else:
                print(
                    "Walk through it in the browser: `strata demo --serve` (make demo SERVE=1) "
                    "keeps the stack up and prints a manager's sign-in link."
                )
        return code
    finally:
        stack.stop()


DEMO_MANAGER = "demo-manager"


def _serve(stack: Stack) -> None:
    """Keep the stack up after the demo: a manager of every project, and a one-time link
    that signs them in to the console."""
    import grpc

    from strata.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

    admin = [("authorization", f"Bearer {stack.admin_token()}")]
    with stack.channel("gateway") as channel:
        gw = gateway_pb2_grpc.AnnotationGatewayStub(channel)
        listed = gw.ListProjects(gateway_pb2.ListProjectsRequest(), metadata=admin)
        projects = [p.project for p in listed.projects]
        try:
            gw.CreateAnnotator(
                gateway_pb2.CreateAnnotatorRequest(
                    annotator_id=DEMO_MANAGER,
                    display_name="the demo's manager",
                    role=common_pb2.ROLE_MANAGER,
                    project=projects[0],
                ),
                metadata=admin,
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        for project in projects:
            gw.AddMember(
                gateway_pb2.AddMemberRequest(
                    project=project, annotator_id=DEMO_MANAGER, role=common_pb2.ROLE_MANAGER
                ),
                metadata=admin,
            )
        link = gw.CreateSignInLink(
            gateway_pb2.CreateSignInLinkRequest(
                project=projects[0], annotator_id=DEMO_MANAGER, ttl_seconds=3600
            ),
            metadata=admin,
        )
    web = stack.web_url
    print(
        f"\nThe stack stays up; Ctrl-C stops it.\n"
        f"  console   {web}/projects/{projects[0]}/console\n"
        f"  sign in as {DEMO_MANAGER} (one-time link, valid for an hour):\n"
        f"            {web}/signin#code={link.code}\n"
        f"  projects  {', '.join(projects)}"
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1.0):
            if stack.failed_processes():
                print("A service stopped; see .strata/logs.")
                return
    except KeyboardInterrupt:
        pass


def _campaign(stack: Stack, fast: bool, out_dir: Path) -> int:
    """The labeling campaigns on digits (active learning and its random baseline)."""
    from strata.cli.progress import StatusLine
    from strata.demo.run import Endpoints, demo, plan

    endpoints = Endpoints(
        grpc={name: stack.address(name) for name in stack.services},
        metrics={
            name: f"http://{stack.config.host}:{stack.ports(name)[1]}/metrics"
            for name in stack.services
        },
        kafka_bootstrap=stack.kafka_bootstrap,
        admin_token=stack.admin_token(),
        tls=stack.client_tls(),
    )
    return demo(endpoints, plan(fast), out_dir, StatusLine())


def cmd_status(args: argparse.Namespace, config: StackConfig) -> int:
    """Health of each service of a running `strata up`."""
    from grpc_health.v1 import health_pb2_grpc

    from strata.cli.connect import client_tls
    from strata.common.grpcserver import check_health
    from strata.common.tls import open_channel

    state_file = config.home / "stack.json"
    if not state_file.exists():
        print("No running stack (no .strata/stack.json); start one with `strata up`.")
        return 1
    state = json.loads(state_file.read_text())
    print(f"postgres  {state['pg_dsn']}\nkafka     {state['kafka_bootstrap']}")
    tls = client_tls(config, state)
    print(
        f"tls       {'mutual, ' + str(state.get('tls_dir')) if tls.enabled else 'OFF (plaintext)'}"
    )
    healthy = True
    for name, svc in state["services"].items():
        with open_channel(svc["grpc"], tls) as channel:
            ok = check_health(health_pb2_grpc.HealthStub(channel))
        healthy &= ok
        print(f"{name:<10}{'SERVING' if ok else 'NOT SERVING':<13}{svc['grpc']}  {svc['metrics']}")
    if state.get("web"):
        ok = _web_ready(state["web"])
        healthy &= ok
        print(f"{'web':<10}{'READY' if ok else 'NOT READY':<13}{state['web']}")
    return 0 if healthy else 1


def _web_ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2.0) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def cmd_topics(args: argparse.Namespace, config: StackConfig) -> int:
    """The topic catalog."""
    from strata.common.topics import ALL_TOPICS

    for t in ALL_TOPICS:
        print(f"{t.name:<28}{t.partitions:>3} partitions  key={t.key:<13}{t.schema}")
    return 0


def config_classes() -> list[type]:
    """Every settings class of the stack and the services, in `strata config` order."""
    from strata.common.tls import TlsConfig
    from strata.gateway.config import GatewayConfig
    from strata.inference.config import InferenceConfig
    from strata.quality.config import QualityConfig
    from strata.sampler.config import SamplerConfig
    from strata.training.config import TrainingConfig
    from strata.web.config import WebConfig

    return [
        StackConfig,
        ServiceConfig,
        TlsConfig,
        GatewayConfig,
        QualityConfig,
        SamplerConfig,
        InferenceConfig,
        TrainingConfig,
        WebConfig,
    ]


def cmd_config(args: argparse.Namespace, config: StackConfig) -> int:
    """Every configuration variable, its default and meaning."""
    for cls in config_classes():
        print(f"# {cls.__name__}")
        for variable, default, help_text in describe(cls):
            print(f"{variable:<36} {default:<12}  {help_text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strata", description="Strata labeling pipeline")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the embedded stack and keep it running")
    up.add_argument(
        "--prometheus",
        action="store_true",
        help="also start Prometheus (if installed) scraping every service, with Strata's alerts",
    )
    up.set_defaults(func=cmd_up)
    demo = sub.add_parser("demo", help="run the main job on embedded defaults")
    demo.add_argument("--output", default="demo-output", help="where results are written")
    demo.add_argument("--fast", action="store_true", help="a smaller run (used by the e2e test)")
    demo.add_argument("--probes", type=int, default=200, help="probe events to send")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the stack up afterwards and print a manager's sign-in link to the console",
    )
    demo.set_defaults(func=cmd_demo)
    check = sub.add_parser("check", help="send probe events through a running stack")
    check.add_argument("--count", type=int, default=100)
    check.set_defaults(func=cmd_check)
    sub.add_parser("status", help="health of a running stack").set_defaults(func=cmd_status)
    sub.add_parser("topics", help="list the Kafka topic catalog").set_defaults(func=cmd_topics)
    sub.add_parser("config", help="list configuration variables").set_defaults(func=cmd_config)
    add_report_commands(sub)
    add_import_commands(sub)
    add_contract_commands(sub)
    add_people_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        config = load_stack_config(os.environ)
    except ConfigError as exc:
        print(f"strata: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.func(args, config))
    except (PortInUseError, PrometheusNotInstalled) as exc:
        print(f"strata: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
