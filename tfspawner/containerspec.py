"""Pure builders for the engine's create-container call.

Nothing here does I/O; the spawner gathers config, calls these and hands the
result to the engine. Security settings are applied after the admin's extras,
so extra config can add to them but not switch them off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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

# "void" makes the NVIDIA runtime expose no GPU, even when the image says "all"
# and the host's default runtime is nvidia.
NO_GPU = "void"

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


class UnsafeContainerConfig(ValueError):
    """Raised when config would weaken a user container's isolation."""


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


def label_filters(hub: str) -> dict:
    """Engine filters for the containers of one hub."""
    return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_HUB}={hub}"]}


def gpus_from_labels(labels: Mapping[str, str]) -> list[str]:
    return [gpu_id for gpu_id in (labels.get(LABEL_GPUS) or "").split(",") if gpu_id]


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
    """Refuse host config that would give a user container the host."""
    if host_config.get("privileged"):
        raise UnsafeContainerConfig(f"{setting}: privileged containers are not allowed")
    for key in ("network_mode", "pid_mode", "ipc_mode", "userns_mode", "uts_mode"):
        if host_config.get(key) == "host":
            raise UnsafeContainerConfig(f"{setting}: {key}='host' is not allowed")
    binds = host_config.get("binds") or {}
    sources = binds.keys() if isinstance(binds, Mapping) else [b.split(":", 1)[0] for b in binds]
    for source in sources:
        if source.rstrip("/") in DOCKER_SOCKETS or source.rstrip("/") in ("/run", "/var/run"):
            raise UnsafeContainerConfig(
                f"{setting}: mounting the Docker socket ({source}) into a user container "
                "gives the user root on the host"
            )


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
    kwargs.update(extra)
    # These identify and confine the container; extras may not replace them.
    kwargs["environment"] = {**(extra.get("environment") or {}), **environment}
    kwargs["labels"] = {**(extra.get("labels") or {}), **labels}
    kwargs["user"] = user
    return kwargs
