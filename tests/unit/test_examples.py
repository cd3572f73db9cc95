"""Every script in examples/ runs offline, exits cleanly, and attempts no network connection.

The docs include the examples verbatim and users copy them, so they run the way a user runs
them: without ``LITELLM_LOCAL_MODEL_COST_MAP`` set. A ``sitecustomize`` on the subprocess's
path (``tests/support/offline``) refuses and records every connection that would leave the
machine; an example that imports litellm before fixedmodel makes litellm try to download its
price list, and that attempt fails the test. (mypy --strict and pyright strict check
examples/ through pyproject.toml's ``files`` / ``include``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Starts other interpreters or engines; run at the newest litellm only (see scripts/test.sh).
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
OFFLINE = ROOT / "tests" / "support" / "offline"


def offline_env(attempts: Path) -> dict[str, str]:
    """The environment of a subprocess that may not reach beyond loopback."""
    env = {key: value for key, value in os.environ.items() if key != "LITELLM_LOCAL_MODEL_COST_MAP"}
    path = [str(OFFLINE), str(ROOT / "src")]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["FIXEDMODEL_NETWORK_ATTEMPTS"] = str(attempts)
    env["PYTHONWARNINGS"] = "error::ResourceWarning"
    return env


def test_the_network_guard_records_and_refuses(tmp_path: Path) -> None:
    # The guard itself: a test that passes because nothing was blocked would prove nothing.
    attempts = tmp_path / "attempts.log"
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 443), timeout=1)\n"
        "except OSError as error:\n"
        "    print('refused', type(error).__name__)\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 443)\n"
        "except OSError:\n"
        "    print('refused name')\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(server.getsockname(), timeout=1).close()\n"
        "server.close()\n"
        "print('loopback ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=offline_env(attempts),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "refused" in result.stdout and "refused name" in result.stdout, result.stdout
    assert "loopback ok" in result.stdout
    recorded = attempts.read_text().splitlines()
    assert any("192.0.2.1" in line for line in recorded), recorded
    assert any("example.com" in line for line in recorded), recorded


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_offline(script: Path, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts.log"
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=offline_env(attempts),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip(), f"{script.name} printed nothing"
    assert "Traceback" not in result.stderr, result.stderr
    tried = attempts.read_text() if attempts.exists() else ""
    assert tried == "", f"{script.name} tried to reach the network:\n{tried}{result.stderr}"
