"""A 3-node JetStream cluster of real nats-server processes on loopback ports, for fault tests."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledgerbus.bus.server import EmbeddedServer, ServerConfig, free_port

CLUSTER_NAME = "ledgerbus-test"


@dataclass
class Node:
    name: str
    server: EmbeddedServer
    client_port: int
    cluster_port: int
    http_port: int
    stopped: bool = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def kill(self) -> None:
        self.server.kill()

    def start(self) -> None:
        self.server.owned = False
        self.server.start(timeout=15)

    def pause(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGCONT)
        self.stopped = False

    def stream_state(self, stream: str) -> dict[str, Any] | None:
        """This node's own copy of `stream` (monitoring endpoint /jsz), or None if it has none."""
        url = f"http://127.0.0.1:{self.http_port}/jsz?accounts=true&streams=true"
        with urllib.request.urlopen(url, timeout=2) as r:  # loopback only
            data = json.load(r)
        for acc in data.get("account_details") or []:
            for st in acc.get("stream_detail") or []:
                if st.get("name") == stream:
                    return dict(st["state"])
        return None


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, size: int = 3, sync_interval: str = "always") -> "Cluster":
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        routes = ", ".join(f"nats-route://127.0.0.1:{c}" for _, c, _ in ports)
        cluster = cls()
        for i, (client, route, http) in enumerate(ports):
            name = f"n{i + 1}"
            extra = [
                f"server_name: {name}",
                f"http_port: {http}",
                "cluster {",
                f"  name: {CLUSTER_NAME}",
                f"  listen: 127.0.0.1:{route}",
                f"  routes: [{routes}]",
                "}",
            ]
            cfg = ServerConfig(data_dir=root / name, port=client, sync_interval=sync_interval, extra=extra)
            cluster.nodes.append(Node(name, EmbeddedServer(cfg), client, route, http))
        for n in cluster.nodes:
            n.start()
        return cluster

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        for n in self.nodes:
            if n.stopped:
                n.resume()
            n.server.owned = True
            n.server.stop(timeout=5)
