"""A real Redis Cluster for tests: 3 masters + 3 replicas of Debian's redis-server.

Six redis-server processes on free ports in cluster mode, joined with
`redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`. A short
cluster-node-timeout makes a master failover take about two seconds, once every replica has
synced with its master (`RedisCluster.start` waits for that). `RedisCluster.cleanup`
(used by the fixture in a `finally`) stops every process and removes the folders, also when
a test or the start itself failed.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import _stop, ephemeral_low, free_port, wait_for

MASTERS = 3
# Failure detection after this many ms, then a replica's election: small for a fast test,
# above a loaded machine's scheduling hiccups so no failover happens by accident.
NODE_TIMEOUT_MS = 2000


# A node also listens on port + 10000 (its cluster bus), so both must be free and <= 65535.
BUS_PORT_OFFSET = 10000


def free_cluster_port() -> int:
    """A port whose cluster-bus twin (port + 10000) is free too, both below the kernel's
    ephemeral range (servers.free_port says why)."""
    for _ in range(200):
        port = free_port()
        if port + BUS_PORT_OFFSET >= ephemeral_low():
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + BUS_PORT_OFFSET))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class ClusterNodeProcess:
    """One redis-server of the cluster."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.workdir / "nodes.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--save",
                "",
                "--appendonly",
                "no",
                # A replica's first sync starts at once (Redis waits 5 s by default to batch
                # replicas into one transfer).
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def command(self, *args: str, timeout: float = 5) -> str:
        """Run one redis-cli command against this node; its output ('' if unreachable)."""
        cmd = ["redis-cli", "-p", str(self.port), *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ""
        return done.stdout.strip()

    def ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            raise RuntimeError(f"redis-server on port {self.port} exited with {code}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).endswith(b"+PONG\r\n")
        except OSError:
            return False

    def synced(self) -> bool:
        """A replica that holds its master's data set (and so can be promoted)."""
        info = self.command("INFO", "replication")
        return "master_link_status:up" in info and "master_sync_in_progress:0" in info

    def role(self) -> str:
        """ "master" or "slave" as the node itself says."""
        return self.command("ROLE").split("\n", 1)[0]

    def kill(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGKILL)


@dataclass
class RedisCluster:
    """The whole cluster; `url` is the relay's redis+cluster:// URL listing every node."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="parley-rc-")))
    nodes: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisCluster:
        for i in range(2 * MASTERS):
            node = ClusterNodeProcess(free_cluster_port(), self.workdir / str(i))
            self.nodes.append(node)
            node.start()
        for node in self.nodes:
            wait_for(node.ping, timeout=30, what=f"cluster node on port {node.port}")
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        create = ["redis-cli", "--cluster", "create", *addresses]
        done = subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        wait_for(self.healthy, timeout=30, what="cluster_state:ok on every node")
        # cluster_state:ok comes before the replicas' first sync. A replica that has not synced
        # refuses to take over ("Disconnected from master for longer than allowed"): a master
        # killed then leaves its slots down, and the whole cluster answers CLUSTERDOWN.
        replicas = [n for n in self.nodes if n.role() == "slave"]
        assert len(replicas) == MASTERS, [n.role() for n in self.nodes]
        wait_for(lambda: all(n.synced() for n in replicas), timeout=30, what="replicas synced")
        return self

    def healthy(self) -> bool:
        """Every running node says the cluster is ok and it knows 3 masters."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            info = node.command("CLUSTER", "INFO")
            if "cluster_state:ok" not in info or f"cluster_size:{MASTERS}" not in info:
                return False
        return True

    def master_of(self, key: str) -> ClusterNodeProcess:
        """The node that is master for `key`'s slot right now."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            slot = int(node.command("CLUSTER", "KEYSLOT", key))
            for line in node.command("CLUSTER", "NODES").splitlines():
                parts = line.split()
                if "master" not in parts[2] or "fail" in parts[2]:
                    continue
                for rng in parts[8:]:
                    lo, _, hi = rng.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no master for {key!r}")

    def flush(self) -> None:
        """Empty every master (their replicas follow): a fresh data set for the next test."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None and node.role() == "master":
                node.command("FLUSHALL")

    def cleanup(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
