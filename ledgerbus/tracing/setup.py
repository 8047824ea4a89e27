"""Turning tracing on: exporter, sampler and one TracerProvider per service, from OTEL_* or from code.

Off unless configured. Off means the OpenTelemetry no-op tracer and no span objects at all: the bus
checks one module flag per publish. `configure()` turns it on in-process (tests, benchmarks);
`configure_from_env()` reads the standard variables:

  OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   where to send (turns tracing on)
  OTEL_EXPORTER_OTLP_PROTOCOL / …_TRACES_PROTOCOL    http/protobuf (default) or grpc (needs the grpc exporter)
  OTEL_TRACES_EXPORTER        otlp (default), console, none
  OTEL_TRACES_SAMPLER[_ARG]   parentbased_always_on (default), traceidratio, …
  OTEL_SERVICE_NAME           overrides the per-component service name (one process, one service)
  OTEL_SDK_DISABLED=true      forces tracing off

Each component (agent type, orchestrator) is its own service: service.name is a resource attribute,
so each gets its own TracerProvider; they share the exporter's span processor.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.sdk.trace.sampling import (ALWAYS_OFF, ALWAYS_ON, ParentBased, ParentBasedTraceIdRatio, Sampler,
                                              TraceIdRatioBased)

from ledgerbus._version import __version__
from ledgerbus.errors import ConfigError
from ledgerbus.tracing.conventions import INSTRUMENTATION, LB_COMPONENT
from ledgerbus.tracing.ids import PresetIdGenerator

log = logging.getLogger("ledgerbus.tracing")

_NOOP = trace.NoOpTracer()
_IDS = PresetIdGenerator()


@dataclass
class _State:
    processors: list[SpanProcessor]
    sampler: Sampler
    service_name: str | None
    resource: dict[str, Any] = field(default_factory=dict)
    tracers: dict[str, trace.Tracer] = field(default_factory=dict)
    providers: dict[str, TracerProvider] = field(default_factory=dict)
    emitters: dict[str, "Emitter"] = field(default_factory=dict)


@dataclass(frozen=True)
class Emitter:
    """What a leaf span needs to be finished without the SDK's Span object (see instrument.start_send):
    the component's resource and scope, the sampler, and the processors to hand it to."""

    resource: Resource
    scope: InstrumentationScope
    sampler: Sampler
    processors: tuple[SpanProcessor, ...]
    # The sampler always samples a child of a local sampled span (parent-based or always-on), so such a
    # child needs no sampler call: an agent's ACK and RESPONSE under its process span.
    follows_local_parent: bool = False


def _follows_local_parent(sampler: Sampler) -> bool:
    """True when `sampler` is known to sample every child of a local sampled parent. Unknown samplers
    (or a future SDK without these attributes) are asked every time."""
    if sampler is ALWAYS_ON:
        return True
    return isinstance(sampler, ParentBased) and getattr(sampler, "_local_parent_sampled", None) is ALWAYS_ON


_state: _State | None = None
_decided = False  # env read (or configure() called); until then the first check reads the env
_lock = threading.Lock()
_atexit = False

#: Read on every publish: a plain module global so "off" costs one attribute load.
ON = False


def configure(
    exporter: SpanExporter | None = None,
    *,
    sampler: Sampler | None = None,
    batch: bool = True,
    service_name: str | None = None,
    processor: SpanProcessor | None = None,
    resource: dict[str, Any] | None = None,
) -> None:
    """Turn tracing on in this process.

    `exporter`: where spans go (None: from the OTEL_* variables, OTLP by default). `batch=False` exports
    each span as it ends (tests with an InMemorySpanExporter); keep the default for network exporters,
    or the export runs on the event loop. `sampler`: default from OTEL_TRACES_SAMPLER (parent-based
    always-on). `service_name`: one name for every component (default OTEL_SERVICE_NAME, else each
    component — agent type, orchestrator — is its own service).
    """
    global _state, _decided, ON, _atexit
    procs: list[SpanProcessor] = []
    if processor is not None:
        procs.append(processor)
    if exporter is not None:
        procs.append(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    if not procs:
        procs = [BatchSpanProcessor(e) for e in exporters_from_env()]
        if not procs:
            raise ConfigError("tracing: no exporter given and OTEL_TRACES_EXPORTER is 'none'")
    with _lock:
        _shutdown_locked()
        _state = _State(procs, sampler or sampler_from_env(), service_name or os.environ.get("OTEL_SERVICE_NAME") or None,
                        dict(resource or {}))
        _decided = True
        ON = True
        if not _atexit:
            # Batched spans still queued when the process ends would be lost: flush them on the way out.
            atexit.register(shutdown)
            _atexit = True


def configure_from_env(environ: dict[str, str] | None = None) -> bool:
    """Turn tracing on if the OTEL_* variables ask for it; True if it is on. Raises ConfigError on bad values."""
    global _decided
    env = os.environ if environ is None else environ
    if not wanted(env):
        with _lock:
            _decided = True
        return ON
    _configure_with(env)
    return True


def _configure_with(env: Mapping[str, str]) -> None:
    sampler = sampler_from_env(env)  # first: a bad value must not leave exporter threads behind
    configure(processor=_multi([BatchSpanProcessor(e) for e in exporters_from_env(env)]),
              sampler=sampler, service_name=env.get("OTEL_SERVICE_NAME") or None)


def _multi(procs: list[SpanProcessor]) -> SpanProcessor:
    if len(procs) == 1:
        return procs[0]
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor

    multi = SynchronousMultiSpanProcessor()
    for p in procs:
        multi.add_span_processor(p)
    return multi


def wanted(env: Any = None) -> bool:
    """Whether the environment asks for tracing: an OTLP endpoint or an explicit exporter, and not disabled."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def exporters_from_env(env: Any = None) -> list[SpanExporter]:
    env = os.environ if env is None else env
    names = [n.strip().lower() for n in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",") if n.strip()]
    out: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp":
            out.append(otlp_exporter(env))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; use otlp, console or none")
    return out


def otlp_exporter(env: Any = None, endpoint: str | None = None, *, timeout: float | None = None) -> SpanExporter:
    """The OTLP span exporter the protocol variables ask for (HTTP/protobuf unless grpc is named)."""
    env = os.environ if env is None else env
    proto = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
             or "http/protobuf").strip().lower()
    signal = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")  # used as is, per the spec
    base = endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if proto == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = traces_url(endpoint) if endpoint else signal or (traces_url(base) if base else None)
        kw: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        return OTLPSpanExporter(endpoint=url, **kw) if url else OTLPSpanExporter(**kw)
    if proto == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: "
                              "pip install 'ledgerbus[grpc]' (opentelemetry-exporter-otlp-proto-grpc), "
                              "or use http/protobuf on port 4318") from None
        target = endpoint or signal or base
        gkw: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        return GrpcExporter(endpoint=target, **gkw) if target else GrpcExporter(**gkw)
    raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {proto!r}; use http/protobuf or grpc")


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP: a base endpoint gets the signal path appended, as OTEL_EXPORTER_OTLP_ENDPOINT does."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def sampler_from_env(env: Any = None) -> Sampler:
    env = os.environ if env is None else env
    name = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
    arg = env.get("OTEL_TRACES_SAMPLER_ARG")
    ratio = 1.0
    if name.endswith("traceidratio"):
        try:
            ratio = float(arg) if arg not in (None, "") else 1.0
        except ValueError:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be a number in [0, 1], got {arg!r}") from None
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be a number in [0, 1], got {arg!r}")
    samplers: dict[str, Any] = {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBasedTraceIdRatio(ratio),
    }
    if name not in samplers:
        raise ConfigError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}; use one of {', '.join(samplers)}")
    return samplers[name]()  # type: ignore[no-any-return]


def _decide() -> None:
    """First use without configure(): follow the environment; a bad setting logs and leaves tracing off,
    because it must never stop a message being delivered (commands call configure_from_env() and fail)."""
    global _decided
    with _lock:
        if _decided:
            return
    try:
        configure_from_env()
    except ConfigError as exc:
        log.error("tracing stays off: %s", exc)
        with _lock:
            _decided = True


def enabled() -> bool:
    if not _decided:
        _decide()
    return ON


def resource_for(component: str, service_name: str | None = None, extra: dict[str, Any] | None = None) -> Resource:
    attrs = {SERVICE_NAME: service_name or component, LB_COMPONENT: component, **(extra or {})}
    return Resource.create(attrs)


def tracer(component: str) -> trace.Tracer:
    """The tracer of `component` (an agent type, the orchestrator): the no-op tracer when tracing is off."""
    if not enabled():
        return _NOOP
    st = _state
    if st is None:
        return _NOOP
    t = st.tracers.get(component)
    if t is None:
        with _lock:
            provider = TracerProvider(resource=resource_for(component, st.service_name, st.resource),
                                      sampler=st.sampler, id_generator=_IDS, shutdown_on_exit=False)
            for proc in st.processors:
                provider.add_span_processor(proc)
            st.providers[component] = provider
            st.emitters[component] = Emitter(provider.resource, InstrumentationScope(INSTRUMENTATION, __version__),
                                             st.sampler, tuple(st.processors), _follows_local_parent(st.sampler))
            t = st.tracers[component] = provider.get_tracer(INSTRUMENTATION, __version__)
    return t


def emitter(component: str) -> Emitter | None:
    """The leaf-span emitter of `component`, None when tracing is off."""
    st = _state
    if st is None:
        return None
    e = st.emitters.get(component)
    if e is None:
        tracer(component)
        e = st.emitters.get(component)
    return e


def force_flush(timeout_millis: int = 10_000) -> bool:
    st = _state
    return all(p.force_flush(timeout_millis) for p in st.processors) if st else True


def shutdown() -> None:
    """Flush and stop exporting; tracing is off until configured again (the env is read afresh)."""
    global _decided
    with _lock:
        _shutdown_locked()
        _decided = False


def _shutdown_locked() -> None:
    global _state, ON
    st, _state, ON = _state, None, False
    if st is not None:
        for p in st.processors:
            try:
                p.force_flush(5_000)
                p.shutdown()
            except Exception as exc:  # an unreachable collector must not fail shutdown
                log.warning("tracing: flushing on shutdown failed: %s", exc)
