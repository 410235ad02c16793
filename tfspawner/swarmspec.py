"""Pure builders and readers for Docker Swarm services: one service per server.

Nothing here does I/O. ``service_spec`` builds the engine's ``POST /services/create``
body from the same inputs as TFSpawner's container spec; ``api_kwargs`` turns it
into docker-py's ``APIClient.create_service`` arguments. The readers turn what
the engine says about tasks and nodes into GPU lists and one sentence for users.

What a Swarm service can and cannot confine on Engine 20.10 (API 1.41):

- ``CapabilityDrop``/``CapabilityAdd`` (API 1.41+), ``Init``, ``Sysctls``,
  ``Ulimits`` (1.41+), ``ReadOnly``, a numeric ``User`` and
  ``Resources.Limits.Pids`` (1.41+) are per service.
- There is no ``ShmSize``: a tmpfs mount at /dev/shm with a size replaces it.
- No ``SecurityOpt``: no-new-privileges per service needs API 1.44 (Engine 25,
  ``Privileges.NoNewPrivileges``). On 20.10 set ``"no-new-privileges": true``
  in every node's daemon.json (the daemon then applies it to all containers).
- No ``MemorySwap``: only ``MemoryBytes``; run GPU nodes without swap.
- No ``DeviceRequests`` or ``--gpus`` (moby#40133) and no per-service runtime:
  GPUs are generic resources, and nvidia must be the nodes' default runtime.
- No privileged mode and no host devices at all, which is what we want.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .containerspec import LABEL_PREFIX, NO_GPU

GPU_RESOURCE = "NVIDIA-GPU"
# The node a server's named volume lives on; its next start goes back there.
LABEL_NODE = LABEL_PREFIX + "node"
# On a home record: the volume it places (``tfspawner volumes move`` writes it).
LABEL_VOLUME = LABEL_PREFIX + "volume"
SHM_PATH = "/dev/shm"
_USER = re.compile(r"^(\d+):(\d+)$")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def resource_env(kind: str = GPU_RESOURCE) -> str:
    """The variable in which a task receives its assigned generic resources."""
    return f"DOCKER_RESOURCE_{kind}"


def parse_bytes(value: int | str) -> int:
    """``"8G"``, ``"512m"`` or a number of bytes, as docker-py's ``mem_limit`` takes it."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", value.lower())
    if not match:
        raise ValueError(f"not a size: {value!r}")
    return int(float(match[1]) * _UNITS[match[2]])


def _check_user(user: str) -> None:
    match = _USER.match(user)
    if not match:
        raise ValueError(f"user must be numeric 'uid:gid', not {user!r}")
    if match[1] == "0":
        raise ValueError("a server never runs as uid 0")


def _check_gpus(gpus: int, gpu_uuids: Sequence[str], constraints: Sequence[str]) -> None:
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"gpus must be a count >= 0, not {gpus!r}")
    if gpus and gpu_uuids:
        raise ValueError("give either a GPU count for Swarm's scheduler or GPU UUIDs, not both")
    # A UUID is only meaningful on the node that has it.
    if gpu_uuids and not any(c.startswith("node.id==") for c in constraints):
        raise ValueError("GPU UUIDs need a node.id placement constraint")


def service_spec(
    *,
    name: str,
    image: str,
    labels: Mapping[str, str],
    user: str,
    environment: Mapping[str, str],
    args: Sequence[str] = (),
    network: str,
    volumes: Mapping[str, str] | None = None,
    volume_labels: Mapping[str, str] | None = None,
    node_id: str | None = None,
    constraints: Sequence[str] = (),
    mem_limit: int | str | None = None,
    mem_guarantee: int | str | None = None,
    cpu_limit: float | None = None,
    cpu_guarantee: float | None = None,
    pids_limit: int,
    cap_add: Iterable[str] = (),
    shm_size: int | str | None = None,
    gpus: int = 0,
    gpu_uuids: Sequence[str] = (),
    gpu_resource: str = GPU_RESOURCE,
    workdir: str | None = None,
    hostname: str | None = None,
) -> dict:
    """The ``POST /services/create`` body of one single-user server.

    ``volumes`` maps named volumes to mount targets; they are ``type=volume``,
    never bind mounts (dockerspawner#536), and local to the node that makes
    them. ``gpus`` asks Swarm's scheduler for that many generic resources
    (never 0, which would take every free GPU of the node); ``gpu_uuids``
    instead names GPUs of a cluster-wide pool of one's own, on the node given
    by ``node_id``. A server without GPUs gets ``NVIDIA_VISIBLE_DEVICES=void``.
    """
    placement = [f"node.id=={node_id}"] if node_id else []
    placement += [c for c in constraints if c not in placement]
    _check_user(user)
    _check_gpus(gpus, gpu_uuids, placement)
    env = dict(environment)
    env.pop(resource_env(gpu_resource), None)
    if gpu_uuids:
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpu_uuids)
    elif gpus:
        # The runtime reads the assigned UUIDs from DOCKER_RESOURCE_* (swarm-resource).
        env.pop("NVIDIA_VISIBLE_DEVICES", None)
    else:
        env["NVIDIA_VISIBLE_DEVICES"] = NO_GPU
    mounts: list[dict[str, Any]] = [
        {
            "Type": "volume",
            "Source": source,
            "Target": target,
            "VolumeOptions": {"Labels": dict(volume_labels or {})},
        }
        for source, target in (volumes or {}).items()
    ]
    if shm_size is not None:
        mounts.append(
            {
                "Type": "tmpfs",
                "Target": SHM_PATH,
                "TmpfsOptions": {"SizeBytes": parse_bytes(shm_size), "Mode": 0o1777},
            }
        )
    container: dict[str, Any] = {
        "Image": image,
        "Labels": dict(labels),
        "Args": list(args),
        "Env": [f"{key}={value}" for key, value in sorted(env.items())],
        "User": user,
        "Mounts": mounts,
        "Init": True,
        "CapabilityDrop": ["ALL"],
        "CapabilityAdd": sorted(set(cap_add)),
    }
    if not container["Args"]:
        del container["Args"]
    if not container["CapabilityAdd"]:
        del container["CapabilityAdd"]
    if workdir:
        container["Dir"] = workdir
    if hostname:
        container["Hostname"] = hostname
    limits: dict[str, Any] = {"Pids": pids_limit}
    reservations: dict[str, Any] = {}
    if mem_limit is not None:
        limits["MemoryBytes"] = parse_bytes(mem_limit)
    if cpu_limit is not None:
        limits["NanoCPUs"] = int(cpu_limit * 1e9)
    if mem_guarantee is not None:
        reservations["MemoryBytes"] = parse_bytes(mem_guarantee)
    if cpu_guarantee is not None:
        reservations["NanoCPUs"] = int(cpu_guarantee * 1e9)
    if gpus:
        reservations["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": gpu_resource, "Value": gpus}}
        ]
    resources: dict[str, Any] = {"Limits": limits}
    if reservations:
        resources["Reservations"] = reservations
    task_template: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": resources,
        # A server that stops stays stopped: the hub, not Swarm, decides on restarts.
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": {"Constraints": placement},
        "Networks": [{"Target": network}],
    }
    return {
        "Name": name,
        "Labels": dict(labels),
        "TaskTemplate": task_template,
        "Mode": {"Replicated": {"Replicas": 1}},
        # No IPVS needed: the hub reaches the task's own address.
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def api_kwargs(spec: Mapping[str, Any]) -> dict:
    """docker-py ``APIClient.create_service`` keyword arguments for a ``service_spec`` body."""
    return {
        "task_template": spec["TaskTemplate"],
        "name": spec["Name"],
        "labels": spec["Labels"],
        "mode": spec["Mode"],
        "endpoint_spec": spec["EndpointSpec"],
    }


# --- GPUs ---------------------------------------------------------------------


class NodeGPU(NamedTuple):
    node_id: str
    uuid: str


def node_gpus(node: Mapping[str, Any], kind: str = GPU_RESOURCE) -> list[str]:
    """The GPU UUIDs a node advertises (``docker node inspect``), in its order."""
    resources = (node.get("Description") or {}).get("Resources") or {}
    found = []
    for entry in resources.get("GenericResources") or []:
        named = entry.get("NamedResourceSpec") or {}
        if named.get("Kind") == kind and named.get("Value"):
            found.append(named["Value"])
    return found


def cluster_gpus(
    nodes: Iterable[Mapping[str, Any]], kind: str = GPU_RESOURCE, ready_only: bool = False
) -> list[NodeGPU]:
    """Every (node id, GPU UUID) of the swarm; with ready_only, only nodes that take tasks."""
    gpus = []
    for node in nodes:
        if ready_only and not node_takes_tasks(node):
            continue
        gpus += [NodeGPU(node["ID"], uuid) for uuid in node_gpus(node, kind)]
    return gpus


def node_takes_tasks(node: Mapping[str, Any]) -> bool:
    status = (node.get("Status") or {}).get("State")
    availability = (node.get("Spec") or {}).get("Availability", "active")
    return status == "ready" and availability == "active"


def assigned_gpus_from_env(
    env: Iterable[str] | Mapping[str, str], kind: str = GPU_RESOURCE
) -> tuple[str, ...]:
    """The GPUs in a container's ``DOCKER_RESOURCE_<kind>`` (``Config.Env`` list or a dict)."""
    key = resource_env(kind)
    if isinstance(env, Mapping):
        value = env.get(key) or ""
    else:
        value = next((e.partition("=")[2] for e in env if e.partition("=")[0] == key), "")
    return tuple(uuid.strip() for uuid in value.split(",") if uuid.strip())


def assigned_gpus_from_task(task: Mapping[str, Any], kind: str = GPU_RESOURCE) -> tuple[str, ...]:
    """The GPUs Swarm's scheduler gave a task, where the task inspect carries them.

    Engine 20.10's API leaves ``AssignedGenericResources`` out of the task, so
    this is empty there: read ``DOCKER_RESOURCE_<kind>`` from the container on
    its node (``assigned_gpus_from_env``) instead.
    """
    found = []
    for entry in task.get("AssignedGenericResources") or []:
        named = entry.get("NamedResourceSpec") or {}
        if named.get("Kind") == kind and named.get("Value"):
            found.append(named["Value"])
    return tuple(found)


def pinned_gpus_from_task(task_or_service: Mapping[str, Any]) -> tuple[str, ...]:
    """The GPU UUIDs a task or service was given by name (``gpu_uuids``), from its spec."""
    spec = task_or_service.get("Spec") or {}
    container = (spec.get("TaskTemplate") or spec).get("ContainerSpec") or {}
    for entry in container.get("Env") or []:
        key, _, value = entry.partition("=")
        if key == "NVIDIA_VISIBLE_DEVICES":
            names = tuple(v.strip() for v in value.split(",") if v.strip())
            return () if set(names) & {NO_GPU, "none", "all"} else names
    return ()


def task_address(task: Mapping[str, Any], network: str) -> str | None:
    """A task's IPv4 address on the named network (without the prefix length)."""
    for attachment in task.get("NetworksAttachments") or []:
        spec = (attachment.get("Network") or {}).get("Spec") or {}
        if spec.get("Name") == network or (attachment.get("Network") or {}).get("ID") == network:
            for address in attachment.get("Addresses") or []:
                return address.partition("/")[0]
    return None


# --- What a task's state means to a user ----------------------------------------


@dataclass(frozen=True)
class TaskVerdict:
    """``state``: running, starting, refused, failed or stopped. ``final``: waiting cannot help."""

    state: str
    message: str = ""
    final: bool = False


_STARTING = {"new", "allocated", "assigned", "accepted", "preparing", "ready", "starting"}
_NODE_GONE = {"down", "disconnected", "unknown"}


def _reason(err: str) -> str:
    """The engine's error as a clause: its first line, trimmed, without a final period."""
    line = (err or "").strip().splitlines()[0] if (err or "").strip() else ""
    line = line.rstrip(". ")
    return line[:197] + "..." if len(line) > 200 else line


def _rejected(err: str) -> str:
    low = err.lower()
    if any(
        s in low for s in ("denied", "unauthorized", "authentication required", "no basic auth")
    ):
        return "The registry refused your server's image to the node (a missing or wrong login); please tell an admin."
    if any(s in low for s in ("no such image", "not found", "manifest unknown", "does not exist")):
        return "Your server's image was not found in its registry; please tell an admin."
    if "mount" in low or "volume" in low:
        return f"Your server's storage could not be mounted ({_reason(err)}); please tell an admin."
    return f"The node refused to start your server ({_reason(err)})."


def _pending(err: str) -> TaskVerdict:
    low = err.lower()
    if "insufficient resources" in low:
        message = "No node has a free GPU or enough memory and CPUs for this profile right now; try again later or choose another profile."
    elif "not available for new tasks" in low:
        message = "The node that holds your files is down or drained; please tell an admin."
    elif "constraints not satisfied" in low:
        message = "No node may run your server (placement constraints); please tell an admin."
    elif "no suitable node" in low:
        message = f"No node can run your server ({_reason(err)})."
    else:
        return TaskVerdict("starting")
    return TaskVerdict("refused", message, final=True)


def task_verdict(task: Mapping[str, Any], node: Mapping[str, Any] | None = None) -> TaskVerdict:
    """What a task's status means, as one sentence a student understands.

    ``node`` is the ``docker node inspect`` of the task's node, when known: a
    node that is down leaves its tasks "running" in the manager's view.
    A pending task that no node can take is refused at once, never waited on.
    """
    status = task.get("Status") or {}
    state = status.get("State", "")
    err = status.get("Err") or ""
    node_state = ((node or {}).get("Status") or {}).get("State")
    if node_state in _NODE_GONE and state in _STARTING | {"running"}:
        return TaskVerdict(
            "failed",
            "The node that runs your server is not answering; your server counts as stopped.",
            final=True,
        )
    if state == "running":
        return TaskVerdict("running")
    if state == "pending":
        return _pending(err)
    if state in _STARTING:
        return TaskVerdict("starting")
    if state == "rejected":
        return TaskVerdict("refused", _rejected(err), final=True)
    if state == "failed":
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        if "non-zero exit" in err and code is not None:
            message = f"Your server stopped right after it started (exit code {code}); please tell an admin."
        else:
            message = f"Your server could not be started ({_reason(err) or 'no reason given'})."
        return TaskVerdict("failed", message, final=True)
    if state == "orphaned":
        return TaskVerdict(
            "failed", "The node that ran your server left the swarm; your server is gone.", True
        )
    if state in {"complete", "shutdown", "remove"}:
        return TaskVerdict("stopped", "Your server has stopped.", final=True)
    return TaskVerdict("failed", f"Your server is in an unknown state ({state!r}).", final=True)


# --- home records ---------------------------------------------------------------


def home_record_name(prefix: str, volume: str) -> str:
    """The Swarm config naming the node that holds ``volume`` after a move.

    A config, because every manager sees it and the hub's next start reads it
    without its database: it wins over the node in the server's saved state.
    """
    return f"{prefix}-home-{hashlib.sha256(volume.encode()).hexdigest()[:20]}"
