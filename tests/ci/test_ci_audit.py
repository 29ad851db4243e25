"""``.ci/audit`` fails on a known vulnerability and only warns when the service is unreachable.

pip-audit runs for real against a tiny local stand-in for the OSV vulnerability API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import REPOSITORY
from tests.helpers.servers import free_port

pytest.importorskip("pip_audit")
pytestmark = pytest.mark.network

AUDIT = REPOSITORY / ".ci" / "audit"
VULNERABLE_PACKAGE = "numpy"
VULNERABILITY = {
    "id": "TEST-2026-0001",
    "summary": "a made-up advisory for the test",
    "affected": [
        {
            "package": {"name": VULNERABLE_PACKAGE, "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}],
        }
    ],
}


def fake_osv(report_vulnerability: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            hit = report_vulnerability and query["package"]["name"] == VULNERABLE_PACKAGE
            body = json.dumps({"vulns": [VULNERABILITY]} if hit else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(params=[False, True], ids=["clean", "vulnerable"])
def osv_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake_osv(request.param))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query", request.param
    finally:
        server.shutdown()
        server.server_close()


def audit(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AUDIT), *arguments],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_audit_fails_on_a_known_vulnerability_and_passes_when_clean(
    osv_url: tuple[str, bool],
) -> None:
    url, vulnerable = osv_url
    result = audit("-s", "osv", "--osv-url", url)
    if vulnerable:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "TEST-2026-0001" in result.stdout and "fixed in 999.0" in result.stdout
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no known vulnerabilities" in result.stdout
        assert "WARNING" not in result.stderr


def test_audit_warns_and_passes_when_the_service_is_unreachable() -> None:
    closed_port = free_port()
    result = audit("-s", "osv", "--osv-url", f"http://127.0.0.1:{closed_port}/v1/query")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING: dependencies NOT audited" in result.stderr
    assert "could not reach the vulnerability service" in result.stderr
