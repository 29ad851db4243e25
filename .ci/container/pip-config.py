"""Print a pip.conf for containers built on this host: its network indexes, proxy and timeout.

Local indexes (file:// URLs, find-links folders) do not exist inside a container and are
dropped; the CA bundle is copied beside this file's output by .ci/container-check.
"""

from __future__ import annotations

import os
import subprocess
import sys

CONTAINER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
KEPT = ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout")


def host_settings() -> dict[str, str]:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    settings: dict[str, str] = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        settings[name] = value.strip().strip("'\"")
    for name in KEPT:
        variable = "PIP_" + name.upper().replace("-", "_")
        if os.environ.get(variable):
            settings[name] = os.environ[variable]
    if "proxy" not in settings:
        proxy = os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY")
        if proxy:
            settings["proxy"] = proxy
    return settings


def main() -> None:
    lines = ["[global]", f"cert = {CONTAINER_CA_BUNDLE}"]
    for name, value in host_settings().items():
        if name not in KEPT:
            continue
        if name.endswith("index-url"):
            value = " ".join(url for url in value.split() if url.startswith(("http:", "https:")))
        if value:
            lines.append(f"{name.replace('default-timeout', 'timeout')} = {value}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
