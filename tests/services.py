"""Real services for the tests that need them, on 127.0.0.1 only: a PostgreSQL cluster (Debian's `postgresql`
package; `bash .ci/run` installs it) and an MLflow tracking server. Each is started here, waited for, and stopped by
its PID."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH, under /usr/lib/postgresql/N/bin)."""
    found = shutil.which("pg_ctl")
    folders = ([str(Path(found).resolve().parent)] if found else []) + sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return next((Path(f) for f in folders if (Path(f) / "postgres").is_file()), None)


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


@contextlib.contextmanager
def postgres():
    """A throw-away PostgreSQL cluster; yields a function giving the URL of a new database. As root the server runs
    as the `postgres` user (PostgreSQL refuses root), from a folder it owns."""
    pytest.importorskip("psycopg", reason="pip install -e '.[postgres]' (bash .ci/run does)")
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (bash .ci/run installs Debian's postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="xcomp-pg-"))
    if user:
        shutil.chown(folder, user)
    data, port = folder / "data", free_port()
    subprocess.run([bin_dir / "initdb", "-D", data, "-U", "xcomp", "-A", "trust", "--no-sync"], user=user,
                   check=True, capture_output=True)  # fmt: skip
    server = subprocess.Popen(
        [bin_dir / "postgres", "-D", data, "-p", str(port), "-k", folder, "-c", "listen_addresses=127.0.0.1",
         "-c", "fsync=off", "-c", "max_connections=200"],
        user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ready = [bin_dir / "pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", "xcomp"]
        wait_for(lambda: subprocess.run(ready, capture_output=True).returncode == 0, "PostgreSQL")

        def database(name: str) -> str:
            create = [bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "xcomp", name]
            subprocess.run(create, user=user, check=True, capture_output=True)
            return f"postgresql://xcomp@127.0.0.1:{port}/{name}"

        yield database
    finally:
        server.send_signal(signal.SIGINT)  # "fast" shutdown: does not wait for clients to disconnect
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path):
    """`mlflow server` on a free loopback port over ``backend``, artifacts served from ``artifacts``; yields its
    URL and stops it (the whole process group: the server runs its workers as children)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--artifacts-destination",
         str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200, "mlflow server", 120)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def rest(url: str, endpoint: str, body: dict | None = None, **query) -> dict:
    """A call of MLflow's REST API (POST with ``body``, else GET with ``query``)."""
    address = f"{url}/api/2.0/mlflow/{endpoint}"
    if body is None:
        address += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        request = urllib.request.Request(address)
    else:
        request = urllib.request.Request(address, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
