"""`strata contract load FILE...`: load labeling contracts into the gateway (admin).

Loading the same document again changes nothing; different text under a version that
already exists is refused, since versions are immutable. (On Kubernetes the gateway
loads the mounted contracts itself at start: STRATA_GATEWAY_CONTRACTS_DIR.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

from strata.cli.connect import target
from strata.cli.stack import StackConfig
from strata.v1 import gateway_pb2, gateway_pb2_grpc


def cmd_contract_load(args: argparse.Namespace, config: StackConfig) -> int:
    """Load each file; report each one; exit 1 if any was refused."""
    gateway = target(config, "gateway", args.gateway or "", "a manager's or admin's")
    metadata = gateway.metadata
    failed = 0
    with gateway.channel() as channel:
        stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
        for name in args.files:
            path = Path(name)
            try:
                document = path.read_text()
            except OSError as exc:
                print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
                failed += 1
                continue
            try:
                reply = stub.LoadContract(
                    gateway_pb2.LoadContractRequest(document=document),
                    metadata=metadata,
                    timeout=args.timeout,
                )
            except grpc.RpcError as exc:
                print(f"{path}: {exc.code().name}: {exc.details()}", file=sys.stderr)
                failed += 1
                continue
            print(f"{path}: project {reply.project} contract {reply.version} loaded")
    return 1 if failed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    contract = sub.add_parser("contract", help="labeling contracts")
    verbs = contract.add_subparsers(dest="verb", required=True)
    load = verbs.add_parser("load", help="load contract files (YAML or JSON) into the gateway")
    load.add_argument("files", nargs="+")
    load.add_argument("--gateway", help="gateway host:port (default: the running stack's)")
    load.add_argument("--timeout", type=float, default=30.0, help="seconds per contract")
    load.set_defaults(func=cmd_contract_load)
