"""Configuration is validated at start and names the variable at fault."""

import dataclasses

import pytest
from strata.cli.stack import load_stack_config
from strata.common.bus import KafkaSettings
from strata.common.config import ConfigError, ServiceConfig, describe, load_service_config
from strata.common.service import kafka_settings
from strata.training.config import parse_directory

BASE = {
    "STRATA_PG_DSN": "postgresql://u@h:5432/db",
    "STRATA_KAFKA_BOOTSTRAP": "h:9092",
    "STRATA_TLS_MODE": "plaintext",
    "STRATA_SERVICE_SECRET": "a shared secret",
}


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
        ("STRATA_KAFKA_SECURITY_PROTOCOL", "TLS", "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ],
)
def test_malformed_variable_is_named_with_the_problem(
    variable: str, value: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_service_config("sampler", {**BASE, variable: value})
    assert err.value.variable == variable
    assert words in str(err.value)


def test_tls_is_on_unless_plaintext_is_asked_for() -> None:
    env = {k: v for k, v in BASE.items() if not k.startswith(("STRATA_TLS", "STRATA_SERVICE"))}
    with pytest.raises(ConfigError) as err:
        load_service_config("gateway", env)
    assert err.value.variable == "STRATA_TLS_CERT"
    assert "STRATA_TLS_MODE=plaintext" in str(err.value)
    # Plaintext, explicitly: services then sign who they are with a shared secret.
    with pytest.raises(ConfigError) as err:
        load_service_config("gateway", {**env, "STRATA_TLS_MODE": "plaintext"})
    assert err.value.variable == "STRATA_SERVICE_SECRET"
    cfg = load_service_config("gateway", BASE)
    assert not cfg.tls.enabled and cfg.identity == "gateway"


def test_stack_config_defaults_to_embedded_infrastructure() -> None:
    cfg = load_stack_config({})
    assert cfg.pg_dsn == "" and cfg.kafka_bootstrap == ""
    assert cfg.pg_port > 0 and cfg.kafka_port > 0


def test_every_variable_is_documented() -> None:
    for variable, _default, help_text in describe(ServiceConfig):
        assert variable.startswith("STRATA_") and help_text, variable


def test_kafka_login_settings_reach_every_client() -> None:
    cfg = load_service_config(
        "sampler",
        {
            **BASE,
            "STRATA_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "STRATA_KAFKA_SASL_USERNAME": "strata-sampler",
            "STRATA_KAFKA_SASL_PASSWORD": "pw",
            "STRATA_KAFKA_SSL_CAFILE": "/etc/strata/kafka-ca/ca.crt",
        },
    )
    settings = kafka_settings(cfg)
    assert settings.connection() == {
        "bootstrap_servers": cfg.kafka_bootstrap.split(","),
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "strata-sampler",
        "sasl_plain_password": "pw",
        "ssl_cafile": "/etc/strata/kafka-ca/ca.crt",
    }
    plain = KafkaSettings("b:9092", "c").connection()
    assert plain == {"bootstrap_servers": ["b:9092"], "security_protocol": "PLAINTEXT"}
    with pytest.raises(ValueError, match="STRATA_KAFKA_SASL_USERNAME"):
        KafkaSettings("b:9092", "c", security_protocol="SASL_SSL").connection()
    with pytest.raises(ConfigError, match="STRATA_KAFKA_SASL_USERNAME"):
        kafka_settings(
            load_service_config("sampler", {**BASE, "STRATA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
        )


def test_ray_storage_takes_a_directory_or_a_storage_uri() -> None:
    assert parse_directory("s3://bucket/ray") == "s3://bucket/ray"
    assert parse_directory("relative/dir").startswith("/")
    with pytest.raises(ValueError, match="scheme"):
        parse_directory("ftp://host/ray")
