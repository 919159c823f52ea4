"""Configuration is validated at start and names the variable at fault."""

import dataclasses

import pytest
from strata.cli.stack import load_stack_config
from strata.common.config import ConfigError, ServiceConfig, describe, load_service_config

BASE = {"STRATA_PG_DSN": "postgresql://u@h:5432/db", "STRATA_KAFKA_BOOTSTRAP": "h:9092"}


def test_loads_with_defaults_and_service_specific_ports() -> None:
    cfg = load_service_config("gateway", {**BASE, "STRATA_GATEWAY_GRPC_PORT": "50070"})
    assert cfg.service == "gateway" and cfg.schema == "gateway"
    assert cfg.grpc_port == 50070
    assert cfg.metrics_port == 0
    assert cfg.max_poll_interval_ms <= 10_000, "groups must join in seconds"


def test_config_is_frozen() -> None:
    cfg = load_service_config("quality", BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pg_dsn = "x"  # type: ignore[misc]


@pytest.mark.parametrize("missing", ["STRATA_PG_DSN", "STRATA_KAFKA_BOOTSTRAP"])
def test_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError) as err:
        load_service_config("sampler", env)
    assert err.value.variable == missing
    assert missing in str(err.value) and "not set" in str(err.value)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("STRATA_SAMPLER_GRPC_PORT", "http", "whole number"),
        ("STRATA_SAMPLER_METRICS_PORT", "70000", "at most 65535"),
        ("STRATA_KAFKA_BOOTSTRAP", "localhost", "host:port"),
        ("STRATA_PG_DSN", "my database", "Postgres connection string"),
        ("STRATA_SHUTDOWN_GRACE_S", "soon", "not a number"),
        ("STRATA_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
    ],
)
def test_malformed_variable_is_named_with_the_problem(
    variable: str, value: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_service_config("sampler", {**BASE, variable: value})
    assert err.value.variable == variable
    assert words in str(err.value)


def test_stack_config_defaults_to_embedded_infrastructure() -> None:
    cfg = load_stack_config({})
    assert cfg.pg_dsn == "" and cfg.kafka_bootstrap == ""
    assert cfg.pg_port > 0 and cfg.kafka_port > 0


def test_every_variable_is_documented() -> None:
    for variable, _default, help_text in describe(ServiceConfig):
        assert variable.startswith("STRATA_") and help_text, variable
