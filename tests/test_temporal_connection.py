"""Where the worker and the CLI connect: local by default, Temporal Cloud (TLS
and an API key) from the same environment variables the `temporal` CLI reads."""

from __future__ import annotations

from runtime.settings import Settings
from runtime.temporal import connect_config


def test_with_nothing_set_it_connects_to_the_local_dev_server(monkeypatch):
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_TLS", "TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", "/nonexistent/temporal.toml")
    config = connect_config(Settings())
    assert config["target_host"] == "localhost:7233" and config["namespace"] == "default"
    assert "api_key" not in config and not config.get("tls")


def test_an_api_key_turns_on_tls_for_temporal_cloud(monkeypatch):
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", "/nonexistent/temporal.toml")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "collections.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "collections.a1b2c")
    monkeypatch.setenv("TEMPORAL_API_KEY", "test-key")
    config = connect_config(Settings())
    assert config["target_host"] == "collections.a1b2c.tmprl.cloud:7233"
    assert config["namespace"] == "collections.a1b2c"
    assert config["api_key"] == "test-key" and config["tls"] is True
