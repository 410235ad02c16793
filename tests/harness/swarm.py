"""The three-node swarm of `scripts/testbed swarm up`, as its .testbed/swarm.env describes it."""

from __future__ import annotations

import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[2]
SWARM_ENV = ROOT / ".testbed" / "swarm.env"
TEST_LABEL = "tfspawner.test.swarm"


def read_swarm_env(path: Path = SWARM_ENV) -> dict[str, str] | None:
    """The variables of swarm.env, or None when the swarm test bed was never brought up."""
    if not path.exists():
        return None
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


@dataclass(frozen=True)
class SwarmNode:
    name: str
    id: str
    host: str
    gpus: tuple[str, ...]

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=30)


@dataclass(frozen=True)
class Swarm:
    host: str
    network: str
    hub_ip: str
    node_label: str
    nodes: tuple[SwarmNode, ...]

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Swarm:
        nodes = []
        for name in ("manager", "worker1", "worker2"):
            prefix = f"TFSPAWNER_TEST_SWARM_{name.upper()}_"
            gpus = tuple(g for g in env.get(prefix + "GPUS", "").split(",") if g)
            nodes.append(SwarmNode(name, env[prefix + "ID"], env[prefix + "HOST"], gpus))
        return cls(
            host=env["TFSPAWNER_TEST_SWARM_HOST"],
            network=env["TFSPAWNER_TEST_SWARM_NETWORK"],
            hub_ip=env["TFSPAWNER_TEST_SWARM_HUB_IP"],
            node_label=env["TFSPAWNER_TEST_SWARM_NODE_LABEL"],
            nodes=tuple(nodes),
        )

    @property
    def workers(self) -> tuple[SwarmNode, ...]:
        return tuple(node for node in self.nodes if node.name != "manager")

    def node(self, node_id: str) -> SwarmNode:
        return next(node for node in self.nodes if node.id == node_id)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=30)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(what: str, probe: Callable[[], object], timeout: float = 60, interval: float = 0.5):
    """Call probe until it returns something true; its last value, or AssertionError naming what."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def only_task(service) -> dict | None:
    tasks = service.tasks()
    return tasks[0] if len(tasks) == 1 else None


def task_in_state(service, *states: str) -> Callable[[], dict | None]:
    """A probe: the service's one task once its state is one of states (fails on a dead end)."""
    ends = {"failed", "rejected", "complete", "shutdown", "orphaned", "remove"}

    def probe():
        task = only_task(service)
        if task is None:
            return None
        state = task["Status"]["State"]
        if state in states:
            return task
        if state in ends:
            raise AssertionError(f"task ended {state}: {task['Status'].get('Err', '')}")
        return None

    return probe


def remove_test_objects(swarm: Swarm) -> None:
    """Services the tests made, then their node-local volumes once the containers are gone."""
    client = swarm.client()
    try:
        for service in client.services.list(filters={"label": TEST_LABEL}):
            service.remove()
    finally:
        client.close()
    for node in swarm.nodes:
        node_client = node.client()
        try:
            wait_for(
                f"test containers gone on {node.name}",
                lambda c=node_client: (
                    not c.containers.list(all=True, filters={"label": TEST_LABEL})
                ),
                timeout=30,
            )
            for volume in node_client.volumes.list(filters={"label": TEST_LABEL}):
                volume.remove(force=True)
        finally:
            node_client.close()
