"""A minimal OTLP/HTTP trace receiver for tests: decodes ExportTraceServiceRequest like Jaeger on 4318."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    """Listens on 127.0.0.1 (a free port); `spans` is every span received, as plain dicts."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404, f"no such OTLP path {self.path}")
                    return
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with receiver._cond:
                    receiver.requests.append(req)
                    receiver.content_types.append(self.headers.get("Content-Type", ""))
                    receiver._cond.notify_all()
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def spans(self) -> list[dict[str, Any]]:
        out = []
        with self._cond:
            requests = list(self.requests)
        for req in requests:
            for rs in req.resource_spans:
                resource = {a.key: value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        out.append({
                            "service": resource.get("service.name"), "resource": resource, "name": sp.name,
                            "trace_id": sp.trace_id.hex(), "span_id": sp.span_id.hex(),
                            "parent_id": sp.parent_span_id.hex(), "kind": sp.kind, "status": sp.status.code,
                            "attributes": {a.key: value(a.value) for a in sp.attributes},
                            "events": [e.name for e in sp.events], "scope": ss.scope.name,
                        })
        return out

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least `count` spans arrived (the exporter runs in its own thread)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(len(s.spans) for r in self.requests for rs in r.resource_spans for s in rs.scope_spans) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        return self.spans
