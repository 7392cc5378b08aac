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
    (dunning_* counters from the workflow and activities). They listen on
    DUNNING_METRICS_HOST, this machine only unless configured otherwise: the
    counters tell an outsider how many loans are worked and how."""
    address = metrics_address(settings)
    if address is None:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


def metrics_address(settings: Settings) -> str | None:
    """`host:port` the metrics listen on, or None when they are off."""
    if not settings.metrics_port:
        return None
    host = settings.metrics_host
    return f"[{host}]:{settings.metrics_port}" if ":" in host else f"{host}:{settings.metrics_port}"


def search_attribute_flags(attributes: dict[str, str] = SEARCH_ATTRIBUTES) -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for name, kind in attributes.items():
        flags += ["--search-attribute", f"{name}={kind}"]
    return flags


class SearchAttributesMissing(RuntimeError):
    """The namespace lacks a contract search attribute, or has it with another
    type; the message names each one and the command that fixes it."""


async def _registered(client: Client, namespace: str) -> dict[str, str] | None:
    """name -> type of every attribute the namespace has; None where the
    server cannot list them (the time-skipping test server)."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as error:
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        return None
    names = {value: name for name, value in _INDEXED_TYPES.items()}
    found = {**existing.system_attributes, **existing.custom_attributes}
    return {name: names.get(kind, str(kind)) for name, kind in found.items()}


def search_attribute_problems(registered: dict[str, str], namespace: str) -> list[str]:
    """One line per contract attribute the namespace lacks or types otherwise,
    with the `temporal` command that puts it right."""
    problems = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        create = f"temporal operator search-attribute create --namespace {namespace} --name {name} --type {kind}"
        if name not in registered:
            problems.append(f"search attribute {name} ({kind}) is missing; create it: {create}")
        elif registered[name] != kind:
            problems.append(
                f"search attribute {name} is {registered[name]}, the contract needs {kind}; "
                f"remove it and create it again: temporal operator search-attribute remove --namespace {namespace} "
                f"--name {name} --yes && {create}"
            )
    return problems


async def check_search_attributes(client: Client, namespace: str) -> None:
    """Refuse a namespace without every contract search attribute, typed as
    the contract says. A workflow that upserts an attribute the namespace
    lacks fails its workflow tasks for ever, so the loans would quietly stop:
    the worker checks before it polls, and stops naming what is missing."""
    registered = await _registered(client, namespace)
    if registered is None:
        log.warning("search_attributes_unchecked", reason="the server cannot list search attributes")
        return
    problems = search_attribute_problems(registered, namespace)
    if problems:
        raise SearchAttributesMissing(f"namespace {namespace!r} is not ready for the dunning workflow:\n  " + "\n  ".join(problems))


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the contract's search attributes the server lacks: for the
    test servers, the simulator and the benchmark, which start their own.
    A production worker only checks (check_search_attributes): an operator
    sets a namespace up, the worker does not change it."""
    registered = await _registered(client, namespace)
    known = set(registered or ())
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
