from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sepconv_bench.http_load import run_load
from service.process.settings import Settings
from tests.helpers.servers import live_server


def require_wrk() -> None:
    """Skip without wrk on a workstation; in CI a missing wrk is a broken image, not a skip."""
    if shutil.which("wrk") is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("wrk is not on PATH in CI; install it in the image (apt-get install wrk)")
    pytest.skip("wrk is not installed")


@pytest.mark.network
def test_run_load_wrk_stops_at_max_requests(exported_models: Path) -> None:
    require_wrk()
    # An odd cap over two wrk threads: the shares must add up to it, not round it down.
    max_requests = 251
    with live_server(Settings(model_dir=exported_models)) as url:
        result = run_load(
            f"{url}/health/live", "live", 4, 120.0, None, "wrk", max_requests=max_requests
        )
    assert result.generator == "wrk"
    assert result.non_200 == 0 and result.errors == 0
    # A thread stops after its share, but answers already read in the same event-loop pass
    # still count: at most one more per connection.
    assert max_requests <= result.requests <= max_requests + result.concurrency
    # Interrupted once the shares are in, not left running for its 120 s duration.
    assert result.seconds < 60
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
