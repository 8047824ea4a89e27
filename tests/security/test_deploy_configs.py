"""deploy/nats: the cluster and security configs parse with the real nats-server, and TLS works when
certificates are given (a self-signed certificate made with openssl)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerbus.bus.server import EmbeddedServer, ServerConfig, find_binary
from ledgerbus.errors import ServerError
from ledgerbus.security.deployment import Deployment, TLSFiles
from ledgerbus.security.securebus import SecureBus, provision

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nats"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.pem", directory / "server-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def generate(out: Path, *extra: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ledgerbus.cli.main", "security", "generate", "research", "writing",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "admin" in done.stdout and "research" in done.stdout


def config_valid(conf: Path, data: Path) -> subprocess.CompletedProcess[str]:
    local = conf.with_name("t_" + conf.name)
    local.write_text(conf.read_text().replace('"/data"', f'"{data}"'))
    return subprocess.run([find_binary(), "-t", "-c", str(local)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", ["node1.conf", "node2.conf", "node3.conf", "secure.conf"])
def test_deploy_config_is_valid(tmp_path, name):
    work = tmp_path / "nats"
    shutil.copytree(DEPLOY, work)
    generate(work / "secrets")
    text = (work / name).read_text()
    assert "sync_interval: always" in text
    done = config_valid(work / name, tmp_path / "data")
    assert done.returncode == 0, done.stderr + done.stdout


@needs_openssl
def test_deploy_tls_config_is_valid(tmp_path):
    work = tmp_path / "nats"
    shutil.copytree(DEPLOY, work)
    cert, key = self_signed(tmp_path)
    generate(work / "secrets", "--tls-cert", str(cert), "--tls-key", str(key))
    assert (work / "secrets" / "tls.conf").exists()
    done = config_valid(work / "secure-tls.conf", tmp_path / "data")
    assert done.returncode == 0, done.stderr + done.stdout


def test_generated_seeds_are_private_and_reload(tmp_path):
    dep = Deployment.generate(["research"])
    dep.save(tmp_path)
    assert (tmp_path / "research.nk").stat().st_mode & 0o077 == 0
    again = Deployment.load(tmp_path)
    assert again.trust() == dep.trust()
    assert again.identity("research").seed == dep.identity("research").seed


@needs_openssl
async def test_tls_when_certificates_are_given(tmp_path):
    cert, key = self_signed(tmp_path)
    dep = Deployment.generate(["research"])
    server = await asyncio.to_thread(EmbeddedServer(ServerConfig(
        data_dir=tmp_path / "nats", sync_interval="2m", extra=dep.server_lines(tls=TLSFiles(str(cert), str(key))))).start)
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        admin = await SecureBus.connect_as(server.url, dep, "admin", tls=ctx)
        await provision(admin, dep)
        assert (await admin.js.stream_info(admin.subjects.stream)).config.name == "LEDGER"
        assert admin.nc.is_connected
        await admin.close()
        # A client that does not trust the server's certificate is refused.
        with pytest.raises(ServerError):
            await SecureBus.connect_as(server.url, dep, "research", tls=ssl.create_default_context(), connect_timeout=2)
    finally:
        await asyncio.to_thread(server.stop)
