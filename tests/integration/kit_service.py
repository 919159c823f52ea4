"""A minimal service built only from the kit, run as a real process by the tests."""

import sys

from strata.common.config import ServiceConfig
from strata.common.service import ServiceRuntime, main_guard
from strata.common.topics import PROBE


def build(config: ServiceConfig) -> ServiceRuntime:
    runtime = ServiceRuntime(config)
    runtime.add_consumer({PROBE.name: lambda ctx, event: None})
    return runtime


if __name__ == "__main__":
    sys.exit(main_guard("kitcheck", build))
