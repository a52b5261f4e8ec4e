"""TLS on both front doors, with a self-signed certificate made by the openssl command."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from integration_helpers import DIM, batch
from pydantic import ValidationError

from nws_client import SketchClient, SketchConfig
from nws_client.errors import DeadlineExceeded, Unauthenticated, Unavailable
from nws_server.server import SketchServer
from nws_server.settings import Settings

TOKEN = "tls-and-token"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl,
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(certificate: tuple[Path, Path]) -> Iterator[SketchServer]:
    cert, key = certificate
    settings = Settings(
        grpc_port=0,
        rest_port=0,
        device="cpu",
        tls_cert_file=cert,
        tls_key_file=key,
        auth_token=TOKEN,
    )
    with SketchServer(settings) as srv:
        yield srv


def test_a_tls_client_connects_over_grpc(
    tls_server: SketchServer, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    with SketchClient(tls_server.target, timeout=10, tls=cert, auth_token=TOKEN) as client:
        client.create_sketch("secure", SketchConfig(dim=DIM, rows=16, bits=4))
        client.update("secure", *batch(0, 8))
        client.update_async("secure", *batch(1, 8))
        client.flush()
        assert client.get("secure").stats.observations == 16
    with (
        SketchClient(tls_server.target, timeout=10, tls=cert, auth_token="wrong") as client,
        pytest.raises(Unauthenticated),
    ):
        client.list()
    # a plaintext client gets no answer from a TLS port
    with (
        SketchClient(tls_server.target, timeout=3, auth_token=TOKEN) as plain,
        pytest.raises((Unavailable, DeadlineExceeded)),
    ):
        plain.list()


def test_rest_serves_https(tls_server: SketchServer, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    url = tls_server.rest_url
    assert url is not None and url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=url, verify=trust, timeout=10) as https:
        assert https.get("/healthz").status_code == 200
        assert https.get("/v1/sketches").status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert https.get("/v1/sketches", headers=headers).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)


def test_tls_needs_both_files(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    with pytest.raises(ValidationError, match="both"):
        Settings(tls_cert_file=cert)
    with pytest.raises(ValidationError, match="does not exist"):
        Settings(tls_cert_file=cert, tls_key_file=tmp_path / "missing.pem")
    assert Settings(tls_cert_file=cert, tls_key_file=key).tls
