"""Real nginx (Debian's `nginx`) in front of a gateway, with deploy/nginx-sidecar.conf as shipped.

`running_nginx()` writes a minimal nginx.conf whose server block serves a site's files and
includes the sidecar snippet (only its upstream port is changed to the test gateway's), or,
with `snippet=lb_location`, the collection `location` of deploy/nginx-lb.conf (only its
upstream changed to the test gateway), on a
plain HTTP port and a TLS port with a throw-away self-signed certificate. Without nginx the
tests skip with the reason, and fail instead under GATEWAY_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import REQUIRE_SERVICES

SNIPPET = Path(__file__).parents[1] / "deploy" / "nginx-sidecar.conf"
UPSTREAM = "127.0.0.1:8080"  # what the shipped snippet points at
LB_CONF = Path(__file__).parents[1] / "deploy" / "nginx-lb.conf"
LB_UPSTREAM = "proxy_pass http://gateway_collect;"  # the load balancer's collection location
START_TIMEOUT_S = 10.0


def nginx_binary() -> str | None:
    found = os.environ.get("GATEWAY_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    return found if os.access(found, os.X_OK) else None


def require_nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        reason = "nginx is not installed (apt-get install nginx)"
        if REQUIRE_SERVICES:
            pytest.fail(f"GATEWAY_TEST_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    return binary


@dataclass(frozen=True)
class Nginx:
    http_origin: str  # http://127.0.0.1:<port>
    https_origin: str  # https://127.0.0.1:<port>, a self-signed certificate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def sidecar_snippet(gateway_port: int) -> str:
    text = SNIPPET.read_text()
    assert text.count(UPSTREAM) == 1, "the snippet's proxy_pass moved: update tests/nginx.py"
    return text.replace(UPSTREAM, f"127.0.0.1:{gateway_port}")


def lb_location(gateway_port: int) -> str:
    """The load balancer's collection `location / { ... }`, as shipped, aimed at one gateway."""
    text = LB_CONF.read_text()
    start = text.rindex("location / {", 0, text.index(LB_UPSTREAM))
    end = text.index("\n    }\n", start) + len("\n    }\n")
    block = text[start:end]
    assert block.count(LB_UPSTREAM) == 1, "nginx-lb.conf's location moved: update tests/nginx.py"
    return block.replace(LB_UPSTREAM, f"proxy_pass http://127.0.0.1:{gateway_port};")


def nginx_conf(
    prefix: Path, site_root: Path, http_port: int, https_port: int, cert: Path, key: Path
) -> str:
    temp = "\n".join(
        f"    {name}_temp_path {prefix}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # One process, no worker switching to `nobody`: it can read the test's private tmp dir.
    return f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    types {{ text/html html; application/javascript js; }}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {site_root};
        include {prefix}/sidecar.conf;
    }}
}}
"""


Snippet = Callable[[int], str]


def _prepare(
    prefix: Path, site_root: Path, gateway_port: int, snippet: Snippet
) -> tuple[Path, int, int]:
    """Write the certificate, the snippet and nginx.conf; returns (nginx.conf, ports)."""
    prefix.mkdir(parents=True)
    cert, key = self_signed(prefix)
    (prefix / "sidecar.conf").write_text(snippet(gateway_port))
    http_port, https_port = free_port(), free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, site_root, http_port, https_port, cert, key))
    return conf, http_port, https_port


def _error_log(prefix: Path) -> str:
    log = prefix / "error.log"
    return log.read_text() if log.exists() else ""


async def _wait_listening(port: int, process: asyncio.subprocess.Process, prefix: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while True:
        if process.returncode is not None:
            raise AssertionError(f"nginx exited: {_error_log(prefix)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise AssertionError(f"nginx did not listen on {port}") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


@contextlib.asynccontextmanager
async def running_nginx(
    prefix: Path, site_root: Path, gateway_port: int, snippet: Snippet = sidecar_snippet
) -> AsyncIterator[Nginx]:
    """nginx serving `site_root` and proxying /df/ to the gateway on `gateway_port` (or, with
    `snippet=lb_location`, proxying everything to it as the load balancer does)."""
    binary = require_nginx()
    conf, http_port, https_port = _prepare(prefix, site_root, gateway_port, snippet)
    args = ["-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    check = await asyncio.create_subprocess_exec(
        binary, "-t", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await check.communicate()
    assert check.returncode == 0, f"nginx -t refused the configuration: {output.decode()}"
    process = await asyncio.create_subprocess_exec(
        binary, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await _wait_listening(http_port, process, prefix)
        await _wait_listening(https_port, process, prefix)
        yield Nginx(f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}")
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
