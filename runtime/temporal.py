"""Connecting to Temporal, and the search attributes the workflow needs there."""

from __future__ import annotations

import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from dunning.contract import SEARCH_ATTRIBUTES
from runtime.settings import Settings

log = structlog.get_logger(__name__)

_INDEXED_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


def connect_config(settings: Settings) -> dict:
    """Client.connect's arguments: the SDK's environment configuration
    (TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE,
    as for the `temporal` CLI), so the same service runs on Temporal Cloud,
    with the address and namespace from our settings."""
    config = dict(ClientConfigProfile.load().to_client_connect_config())
    config["target_host"] = settings.temporal_address
    config["namespace"] = settings.temporal_namespace
    return config


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    if runtime is not None:
        return await Client.connect(**connect_config(settings), runtime=runtime)
    return await Client.connect(**connect_config(settings))


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A runtime exporting Prometheus metrics on DUNNING_METRICS_PORT: the SDK's
    own (task latencies, schedule-to-start, failures) and the service's
    (dunning_* counters from the workflow and activities)."""
    if not settings.metrics_port:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"0.0.0.0:{settings.metrics_port}")))


def search_attribute_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        flags += ["--search-attribute", f"{name}={kind}"]
    return flags


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the contract's search attributes if the server lacks them.

    A workflow that upserts an unregistered attribute fails its workflow tasks
    forever, so the worker checks this before it polls.
    """
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as error:
        # The time-skipping test server can add attributes but not list them.
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {name: _INDEXED_TYPES[kind] for name, kind in SEARCH_ATTRIBUTES.items() if name not in known}
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as error:
        if error.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    log.info("search_attributes_registered", names=sorted(missing))
