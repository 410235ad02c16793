"""The Swarm manager for the ``tfspawner`` command: blocking calls, plain error messages.

Like ``swarmengine`` it needs the manager's API alone: what runs on a node is
read from the manager's tasks, and work on a node's volumes is done by
throwaway helper services pinned to that node.
"""

from __future__ import annotations

import docker
from docker.errors import DockerException

from .. import containerspec, swarmspec
from ..errors import CommandError
from .swarmengine import listed_state, newest_task, service_view


def connect(client_kwargs: dict) -> SwarmAdmin:
    try:
        client = docker.DockerClient(**client_kwargs)
        client.ping()
        client.api.nodes()
    except DockerException as e:
        raise CommandError(
            f"cannot reach a Swarm manager ({e}); check TFSwarmSpawner.manager_url"
        ) from None
    return SwarmAdmin(client)


def node_name(node: dict) -> str:
    """A node as admins know it: its hostname, else its id."""
    return ((node.get("Description") or {}).get("Hostname")) or node["ID"][:12]


class SwarmAdmin:
    def __init__(self, client: docker.DockerClient):
        self.client = client

    @property
    def address(self) -> str:
        return self.client.api.base_url

    def nodes(self) -> list[dict]:
        return self.client.api.nodes()

    def servers(self, hub_name: str) -> list[dict]:
        """This hub's live servers as records (user, server, GPUs, since), with their node."""
        api = self.client.api
        services = api.services(filters=containerspec.label_filters(hub_name))
        tasks = api.tasks()
        nodes = {node["ID"]: node for node in self.nodes()}
        records = []
        for service in services:
            task = newest_task(t for t in tasks if t.get("ServiceID") == service["ID"])
            view = service_view(service, task, nodes.get((task or {}).get("NodeID")))
            state = listed_state(view)
            if state != "running":
                continue
            created = containerspec.created_ns(view["Created"]) / 1e9 if view["Created"] else 0
            (record,) = containerspec.server_records(
                [
                    {
                        "Id": view["Id"],
                        "Names": ["/" + view["Name"]],
                        "Labels": view["Config"]["Labels"],
                        "State": state,
                        "Created": created,
                    }
                ]
            ) or [None]
            if record is None:
                continue
            record["node"] = view["NodeID"] or view["Config"]["Labels"].get(swarmspec.LABEL_NODE)
            records.append(record)
        return records

    def gpus(self, kind: str) -> list[tuple[dict, str]]:
        """Every (node, GPU UUID) the nodes advertise, the node as inspected."""
        nodes = self.nodes()
        by_id = {node["ID"]: node for node in nodes}
        return [(by_id[g.node_id], g.uuid) for g in swarmspec.cluster_gpus(nodes, kind)]

    def remove(self, service_id: str) -> None:
        self.client.api.remove_service(service_id)


def since(record: dict) -> str:
    return record["since"][:19] if record.get("since") else "-"
