"""The Swarm manager as the hub's engine: one service per server.

The only code that talks to a Swarm manager for the hub. It needs the
manager's API alone (``TFSwarmSpawner.manager_url``), never a node's engine:
nodes pull images and make named volumes themselves when a task mounts one,
and the hub's lease lives in a Swarm config, which every manager sees.

A service is shown to the spawner and to ``hubstate`` in the shape of a
container: ``server`` returns an inspect-like view (``State.Running``,
``Config.Labels``, ``Config.Env``), ``managed`` a list-like entry. The task
behind it and what it means to a user (``swarmspec.task_verdict``, read with
the task's node, since a node that is down leaves its tasks "running") come
with it under ``Task`` and ``Verdict``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from docker.errors import APIError, NotFound

from .. import containerspec, swarmspec
from .dockerengine import ThreadedEngine

# A task that may still come up, or is up: its service holds what it was given.
_LIVE = {"running", "starting"}


def _created_epoch(created: str) -> float:
    return containerspec.created_ns(created) / 1e9 if created else 0.0


def newest_task(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The service's current task: replicas never restart, so the newest one."""
    found = sorted(tasks, key=lambda t: (t.get("CreatedAt", ""), t.get("ID", "")))
    return found[-1] if found else None


def service_view(
    service: Mapping[str, Any], task: Mapping[str, Any] | None, node: Mapping[str, Any] | None
) -> dict:
    """A service and its task, shaped like a container inspect."""
    spec = service.get("Spec") or {}
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    limits = ((spec.get("TaskTemplate") or {}).get("Resources") or {}).get("Limits") or {}
    if task is None:
        # Just created: the manager has not scheduled it yet.
        verdict = swarmspec.TaskVerdict("starting")
    else:
        verdict = swarmspec.task_verdict(task, node)
    status = (task or {}).get("Status") or {}
    exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return {
        "Id": service["ID"],
        "Name": spec.get("Name", ""),
        "Created": service.get("CreatedAt", ""),
        "State": {
            "Running": verdict.state == "running",
            "Status": verdict.state,
            "ExitCode": exit_code if exit_code is not None else -1,
            "OOMKilled": False,
            "Error": verdict.message,
        },
        "Config": {
            "Labels": dict(spec.get("Labels") or {}),
            "Env": list(container.get("Env") or []),
            "Image": container.get("Image", ""),
            "User": container.get("User", ""),
        },
        "HostConfig": {"Memory": limits.get("MemoryBytes"), "Runtime": "nvidia"},
        "NodeID": (task or {}).get("NodeID", ""),
        "Task": task,
        "Verdict": verdict,
    }


def listed_state(view: Mapping[str, Any]) -> str:
    """A view's state as the container list words it, for the sweep and the records."""
    status = view["State"]["Status"]
    return "running" if status in _LIVE else "exited"


class SwarmEngine(ThreadedEngine):
    """A Swarm manager; one per client, shared by every spawner in the process."""

    pool = "swarm"

    # --- nodes ---------------------------------------------------------------------

    async def nodes(self) -> list[dict]:
        return await self.call("nodes")

    # --- servers -------------------------------------------------------------------

    async def _views(self, services: list[dict]) -> list[dict]:
        if not services:
            return []
        tasks, nodes = await asyncio.gather(self.call("tasks"), self.nodes())
        by_node = {node["ID"]: node for node in nodes}
        by_service: dict[str, list[dict]] = {}
        for task in tasks:
            by_service.setdefault(task.get("ServiceID", ""), []).append(task)
        views = []
        for service in services:
            task = newest_task(by_service.get(service["ID"], []))
            views.append(service_view(service, task, by_node.get((task or {}).get("NodeID"))))
        return views

    async def server(self, name: str) -> dict | None:
        """One server's service, with its task, as a container-like view."""
        try:
            service = await self.call("inspect_service", name)
        except NotFound:
            return None
        tasks = await self.call("tasks", filters={"service": service["ID"]})
        task = newest_task(tasks)
        node = None
        if task is not None and task.get("NodeID"):
            with contextlib.suppress(NotFound):
                node = await self.call("inspect_node", task["NodeID"])
        return service_view(service, task, node)

    async def managed(self, hub_name: str, *, stopped: bool = False) -> list[dict]:
        """This hub's services as container list entries; only live ones unless ``stopped``."""
        services = await self.call("services", filters=containerspec.label_filters(hub_name))
        found = []
        for view in await self._views(services):
            state = listed_state(view)
            if state != "running" and not stopped:
                continue
            found.append(
                {
                    "Id": view["Id"],
                    "Names": ["/" + view["Name"]],
                    "Labels": view["Config"]["Labels"],
                    "State": state,
                    "Created": _created_epoch(view["Created"]),
                    "NodeID": view["NodeID"],
                }
            )
        return found

    async def gpu_holders(self, *, fresh: bool = False) -> list[dict]:
        """Every live service on the swarm, whoever made it, as ``hubstate`` reads holders.

        GPUs named in ``NVIDIA_VISIBLE_DEVICES`` count; a service whose task
        ended, or whose node is down, holds nothing.
        """
        services = await self.call("services")
        return [view for view in await self._views(services) if view["State"]["Status"] in _LIVE]

    async def create_service(self, kwargs: dict) -> str:
        created = await self.call("create_service", **kwargs)
        return created["ID"]

    async def create(self, create_kwargs: dict, host_kwargs: dict) -> str:
        raise NotImplementedError("a swarm runs services: use create_service")

    async def remove(self, object_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.call("remove_service", object_id)

    async def read_text_files(self, object_id, paths, *, shared_by=None) -> dict[str, str]:
        raise NotImplementedError("a service's files cannot be read before its task starts")

    async def put_files(self, object_id, members) -> None:
        raise NotImplementedError("a service's files cannot be written before its task starts")

    # --- images --------------------------------------------------------------------

    async def image(self, reference, *, may_pull, on_progress) -> dict:
        raise NotImplementedError("nodes pull their images themselves")

    async def image_files(self, image, path, labels) -> bytes | None:
        return None

    async def run_helper(self, image, script, *, binds, labels, cap_add) -> tuple[int, str]:
        raise NotImplementedError("no helper containers on a swarm")

    # --- configs: small cluster-wide records ---------------------------------------

    async def config(self, name: str) -> dict | None:
        try:
            found = await self.call("inspect_config", name)
        except NotFound:
            return None
        return {"ID": found["ID"], "Name": name, "Labels": found["Spec"].get("Labels") or {}}

    async def ensure_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        """The id of config ``name``, made with ``data`` unless it exists (names carry a hash)."""
        existing = await self.config(name)
        if existing is not None:
            return existing["ID"]
        try:
            created = await self.call("create_config", name, data, labels=dict(labels))
        except APIError as e:
            # Made by a concurrent spawn of the same content.
            if e.status_code != 409:
                raise
            return (await self.config(name))["ID"]
        return created["ID"]

    async def remove_config(self, name: str) -> bool:
        try:
            await self.call("remove_config", name)
        except NotFound:
            return False
        except APIError as e:
            # Still used by a task that is shutting down: left for a later removal.
            self.log.debug("Config %s not removed yet: %s", name, e)
            return False
        return True

    # The hub's lease (hub.claim_hub_name) is a volume on a single engine; on a
    # swarm the same record is a config, which every manager sees.

    async def volume(self, name: str) -> dict | None:
        return await self.config(name)

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> dict:
        await self.ensure_config(name, b"lease", labels)
        return await self.config(name) or {}

    async def remove_volume(self, name: str, *, force: bool = False) -> bool:
        return await self.remove_config(name)

    async def volumes(self, labels: Iterable[str]) -> list[dict]:
        found = await self.call("configs", filters={"label": list(labels)})
        return [{"Name": c["Spec"]["Name"], "Labels": c["Spec"].get("Labels") or {}} for c in found]
