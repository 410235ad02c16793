"""Pure builders for the engine's create-container call.

Nothing here does I/O; the spawner gathers config, calls these and hands the
result to the engine. Security settings are applied after the admin's extras,
so extra config can add to them but not switch them off.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from . import allowlist
from .allowlist import UnsafeContainerConfig as UnsafeContainerConfig  # callers import it from here
from .gpupool import Owner

LABEL_PREFIX = "tfspawner."
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_HUB = LABEL_PREFIX + "hub"
LABEL_USER = LABEL_PREFIX + "user"
LABEL_SERVER = LABEL_PREFIX + "server"
LABEL_IMAGE = LABEL_PREFIX + "image"
LABEL_GPUS = LABEL_PREFIX + "gpus"
LABEL_PROFILE = LABEL_PREFIX + "profile"
# Short-lived root containers that prepare a new volume.
LABEL_INIT = LABEL_PREFIX + "init"
# The uid a notebook volume was made for.
LABEL_UID = LABEL_PREFIX + "uid"
# A server's normal CPU weight: a boot may run weighted down, and a hub that
# died meanwhile leaves the weight for the next hub to hand back.
LABEL_CPU_SHARES = LABEL_PREFIX + "cpu-shares"
# Docker's weight when none is set (cgroup cpu.shares).
DEFAULT_CPU_SHARES = 1024

# "void" makes the NVIDIA runtime expose no GPU, even when the image says "all"
# and the host's default runtime is nvidia.
NO_GPU = "void"


def labels(
    *,
    hub: str,
    user: str,
    server: str,
    image: str,
    gpu_ids: Iterable[str] = (),
    profile: str = "",
) -> dict:
    """Labels that let the hub find and rebuild its view of a container from the engine."""
    return {
        LABEL_MANAGED: "true",
        LABEL_HUB: hub,
        LABEL_USER: user,
        LABEL_SERVER: server,
        LABEL_IMAGE: image,
        LABEL_PROFILE: profile,
        LABEL_GPUS: ",".join(gpu_ids),
    }


def helper_labels(*, hub: str, user: str, server: str) -> dict:
    """Labels of a short-lived helper container: managed, so the start-up sweep finds leftovers."""
    return {
        LABEL_MANAGED: "true",
        LABEL_HUB: hub,
        LABEL_USER: user,
        LABEL_SERVER: server,
        LABEL_INIT: "true",
    }


def label_filters(hub: str) -> dict:
    """Engine filters for the containers of one hub."""
    return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_HUB}={hub}"]}


def gpus_from_labels(labels: Mapping[str, str]) -> list[str]:
    return [gpu_id for gpu_id in (labels.get(LABEL_GPUS) or "").split(",") if gpu_id]


def cpu_shares(host_config: Mapping[str, Any]) -> int:
    """The CPU weight of a host config, whether a create call's or an inspected one's."""
    return host_config.get("cpu_shares") or host_config.get("CpuShares") or DEFAULT_CPU_SHARES


def labelled_cpu_shares(labels: Mapping[str, str]) -> int | None:
    """The normal CPU weight a server was made with; None when not recorded."""
    value = labels.get(LABEL_CPU_SHARES, "")
    return int(value) if value.isdigit() else None


def owner_from_labels(labels: Mapping[str, str]) -> Owner | None:
    """The server a tfspawner container belongs to, or None for anything else."""
    if labels.get(LABEL_MANAGED) != "true":
        return None
    return Owner(labels.get(LABEL_USER, ""), labels.get(LABEL_SERVER, ""))


def server_records(listed: Iterable[Mapping[str, Any]]) -> list[dict]:
    """The user servers among the engine's container list entries, helpers left out."""
    records = []
    for container in listed:
        labels = container.get("Labels") or {}
        owner = owner_from_labels(labels)
        if owner is None or LABEL_INIT in labels:
            continue
        created = datetime.datetime.fromtimestamp(
            container.get("Created", 0), datetime.timezone.utc
        )
        records.append(
            {
                "user": owner.user,
                "server": owner.server,
                "container": (container.get("Names") or ["/"])[0].lstrip("/"),
                "id": container.get("Id", ""),
                "state": container.get("State", ""),
                "gpus": gpus_from_labels(labels),
                "profile": labels.get(LABEL_PROFILE, ""),
                "image": labels.get(LABEL_IMAGE, ""),
                "since": created.isoformat(),
            }
        )
    return records


# What NVIDIA_VISIBLE_DEVICES means when it names no device.
_NO_DEVICES = {"", NO_GPU, "none"}


def gpus_in_use(info: Mapping[str, Any], pool_ids: Mapping[str, str]) -> tuple[str, ...]:
    """The pool GPUs an inspected container holds, by device request or environment.

    ``pool_ids`` maps every name of a pool GPU (its id and its UUID) to its id.
    A request by ``count`` gets the first GPUs by index, as the engine hands them
    out; ``NVIDIA_VISIBLE_DEVICES`` counts only under the nvidia runtime, the
    only one that reads it.
    """
    host = info.get("HostConfig") or {}
    names: list[str] = []
    everything = False
    for request in host.get("DeviceRequests") or []:
        capabilities = [cap for caps in request.get("Capabilities") or [] for cap in caps]
        if request.get("Driver") != "nvidia" and "gpu" not in capabilities:
            continue
        count = request.get("Count") or 0
        if request.get("DeviceIDs"):
            names += request["DeviceIDs"]
        elif count < 0:
            everything = True
        else:
            names += [str(index) for index in range(count)]
    if host.get("Runtime") == "nvidia":
        for entry in (info.get("Config") or {}).get("Env") or []:
            key, _, value = entry.partition("=")
            if key != "NVIDIA_VISIBLE_DEVICES" or value.strip() in _NO_DEVICES:
                continue
            if value.strip() == "all":
                everything = True
            else:
                names += [name.strip() for name in value.split(",")]
    if everything:
        return tuple(dict.fromkeys(pool_ids.values()))
    return tuple(dict.fromkeys(pool_ids[name] for name in names if name in pool_ids))


def created_ns(created: str) -> int:
    """The engine's RFC 3339 creation time in nanoseconds, for a total order of containers.

    The engine trims trailing zeros of the fraction, so the strings alone do not sort.
    """
    stamp, _, fraction = created.rstrip("Z").partition(".")
    seconds = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc)
    return int(seconds.timestamp()) * 1_000_000_000 + int((fraction + "000000000")[:9])


def gpu_environment(gpu_ids: Iterable[str]) -> dict:
    ids = list(gpu_ids)
    return {"NVIDIA_VISIBLE_DEVICES": ",".join(ids) if ids else NO_GPU}


def device_requests(gpu_ids: Iterable[str]) -> list[dict]:
    """Exact device ids, never ``count``: the engine would hand out GPU 0 to everyone."""
    ids = list(gpu_ids)
    if not ids:
        return []
    return [{"Driver": "nvidia", "DeviceIDs": ids, "Capabilities": [["gpu"]]}]


def check_isolation(host_config: Mapping[str, Any], setting: str = "extra_host_config") -> None:
    """Refuse host config that would give a user container the host, whatever else is allowed."""
    allowlist.check_isolation(host_config, setting)


def helper_host_config(*, binds: Mapping[str, Any] | None = None, cap_add=()) -> dict:
    """Host config for the hub's short-lived helper containers: confined like a user's."""
    config: dict[str, Any] = {
        "binds": dict(binds or {}),
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": 64,
        "mem_limit": "256m",
        "memswap_limit": "256m",
        "device_requests": [],
    }
    if cap_add:
        config["cap_add"] = list(cap_add)
    return config


def host_config(
    *,
    extra: Mapping[str, Any],
    network_mode: str,
    port_bindings: Mapping[int, tuple] | None,
    binds: Mapping[str, Any],
    mounts: list,
    auto_remove: bool,
    mem_limit: int | str | None,
    cpu_limit: float | None,
    pids_limit: int,
    cap_add: Iterable[str],
    gpu_ids: Iterable[str],
    shm_size: int | str | None = None,
) -> dict:
    """Keyword arguments for ``APIClient.create_host_config``."""
    config: dict[str, Any] = {
        "auto_remove": auto_remove,
        "binds": dict(binds),
        "mounts": list(mounts),
        "network_mode": network_mode,
    }
    if port_bindings is not None:
        config["port_bindings"] = dict(port_bindings)
    if mem_limit is not None:
        config["mem_limit"] = mem_limit
        # No swap beyond the limit: a runaway notebook is stopped, not the host slowed.
        config["memswap_limit"] = mem_limit
    if shm_size is not None:
        config["shm_size"] = shm_size
    if cpu_limit is not None:
        period = int(extra.get("cpu_period", 100_000))
        config["cpu_period"] = period
        config["cpu_quota"] = int(cpu_limit * period)
    config.update(extra)
    check_isolation(config)
    security_opt = [opt for opt in config.get("security_opt") or [] if opt != "no-new-privileges"]
    config.update(
        privileged=False,
        cap_drop=["ALL"],
        cap_add=sorted(set(config.get("cap_add") or []) | set(cap_add)),
        security_opt=[*security_opt, "no-new-privileges"],
        pids_limit=pids_limit,
        device_requests=device_requests(gpu_ids),
    )
    if not config["cap_add"]:
        del config["cap_add"]
    return config


def create_kwargs(
    *,
    image: str,
    name: str,
    command: list[str],
    environment: Mapping[str, str],
    labels: Mapping[str, str],
    user: str,
    port: int,
    volumes: list[str],
    extra: Mapping[str, Any],
) -> dict:
    """Keyword arguments for ``APIClient.create_container`` (without ``host_config``)."""
    kwargs: dict[str, Any] = {
        "image": image,
        "name": name,
        "command": list(command),
        "ports": {f"{port}/tcp": None},
        "volumes": list(volumes),
    }
    # These identify, pin and confine the container; extras may not replace them.
    kwargs = {**extra, **kwargs}
    kwargs["environment"] = {**(extra.get("environment") or {}), **environment}
    kwargs["labels"] = {**(extra.get("labels") or {}), **labels}
    kwargs["user"] = user
    return kwargs
