"""A real Redis Cluster on loopback for tests and benchmarks: started, killed, stopped.

``redis-server`` processes in cluster mode (three primaries with one replica
each by default), joined with ``redis-cli --cluster create``, each in its own
temporary directory, with no persistence.  Ephemeral keys are volatile, so
the cluster runs with ``maxmemory-policy volatile-lru``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis


def _free_port_pair() -> int:
    """A port p such that p and p + 10000 (the cluster bus) are both free now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a redis cluster node")


class LocalCluster:
    """``primaries`` primaries with ``replicas`` replicas each, on 127.0.0.1."""

    def __init__(self, primaries: int = 3, replicas: int = 1, maxmemory: str = "0") -> None:
        self.dir = tempfile.mkdtemp(prefix="tmem-redis-")
        self.procs: dict[int, subprocess.Popen] = {}
        self.ports: list[int] = []
        self.maxmemory = maxmemory
        try:
            for _ in range(primaries * (1 + replicas)):
                self._start_node(_free_port_pair())
            addresses = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            self.wait_ready(primaries, replicas)
        except BaseException:
            self.stop()
            raise

    def _start_node(self, port: int) -> None:
        workdir = os.path.join(self.dir, str(port))
        os.makedirs(workdir)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000", "--save", "", "--appendonly", "no",
                "--dir", workdir, "--maxmemory", self.maxmemory,
                "--maxmemory-policy", "volatile-lru", "--protected-mode", "no",
                "--cluster-replica-validity-factor", "0", "--loglevel", "warning"]  # fmt: skip
        log = open(os.path.join(workdir, "log"), "wb")  # noqa: SIM115 - the process keeps it
        self.procs[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.ports.append(port)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.procs[port].poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)

    @property
    def spec(self) -> str:
        """The ``--tier`` spelling that reaches this cluster."""
        return "redis://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node started."""
        return [("127.0.0.1", p) for p in self.ports]

    def info(self, port: int) -> dict:
        """``CLUSTER INFO`` of one node, as a dict."""
        text = redis.Redis(port=port, socket_timeout=2).execute_command("CLUSTER INFO")
        if isinstance(text, bytes):
            text = text.decode()
        if isinstance(text, dict):
            return text
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def primaries(self) -> list[int]:
        """Ports of the live nodes that are primaries now."""
        out = []
        for port, proc in self.procs.items():
            if proc.poll() is None:
                role = redis.Redis(port=port, socket_timeout=2).execute_command("ROLE")
                if role[0] in (b"master", "master"):
                    out.append(port)
        return out

    def wait_ready(self, primaries: int, replicas: int, timeout: float = 30) -> None:
        """Until every live node says the cluster is ok, with the expected primaries."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                live = [p for p, proc in self.procs.items() if proc.poll() is None]
                ok = all(self.info(p).get("cluster_state") == "ok" for p in live)
                heads = self.primaries()
                if (
                    ok
                    and len(heads) == primaries
                    and all(self.synced_replicas(p) >= replicas for p in heads)
                ):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the redis cluster did not become ready")
            time.sleep(0.1)

    def synced_replicas(self, port: int) -> int:
        """How many replicas of the primary on ``port`` are online and in sync."""
        info = redis.Redis(port=port, socket_timeout=2).info("replication")
        return sum(
            1 for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )  # fmt: skip

    def kill(self, port: int) -> None:
        """Kill one node at once (SIGKILL), as a machine failing."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        """Stop every node and remove their directories."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
