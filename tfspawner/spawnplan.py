"""A spawn's decisions in one frozen value, built by a pure function.

The spawner chooses the profile, resolves the uid, takes GPUs from the pool
and then calls ``make``; everything after that (the image, the volume, the
container) reads the plan, and one rollback undoes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import allowlist, containerspec, identity, volumes
from .gpupool import Owner
from .profiles import Profile
from .settings import Settings


@dataclass(frozen=True)
class SpawnPlan:
    owner: Owner
    profile: Profile
    image: str
    uid: int
    gid: int
    gpu_ids: tuple[str, ...]
    mem_limit: int | str | None
    cpu_limit: float | None
    shm_size: int | None
    storage: volumes.NamedVolume | volumes.HostDirectory
    notebook_dir: str
    binds: Mapping[str, Mapping[str, str]]
    env: Mapping[str, str]
    labels: Mapping[str, str]

    @property
    def user(self) -> str:
        """``uid:gid`` for the engine; refuses root."""
        return identity.container_user(self.uid, self.gid)


def make(
    settings: Settings,
    *,
    owner: Owner,
    profile: Profile,
    uid: int,
    gid: int,
    gpu_ids: list[str] | tuple[str, ...],
    notebook_dir: str,
    admin_binds: Mapping[str, Mapping[str, str]],
    mem_limit: int | str | None,
    cpu_limit: float | None,
) -> SpawnPlan:
    """The plan for one start; ``mem_limit`` and ``cpu_limit`` are the spawner's defaults."""
    image = settings.image_of(profile)
    storage = volumes.storage_of(
        settings.hub_name,
        owner.user,
        owner.server,
        per_server=settings.storage.per_server,
        host_root=settings.storage.host_root,
    )
    binds = dict(admin_binds)
    binds[storage.source] = {"bind": notebook_dir, "mode": storage.mode}
    for dataset in profile.datasets:
        binds[dataset.source] = {"bind": dataset.target, "mode": "ro"}
    env = {
        **dict(profile.extra_env),
        **containerspec.gpu_environment(gpu_ids),
        "HOME": notebook_dir,
    }
    labels = containerspec.labels(
        hub=settings.hub_name,
        user=owner.user,
        server=owner.server,
        image=image,
        gpu_ids=gpu_ids,
        profile=profile.slug,
    )
    return SpawnPlan(
        owner=owner,
        profile=profile,
        image=image,
        uid=uid,
        gid=gid,
        gpu_ids=tuple(gpu_ids),
        mem_limit=profile.mem_limit if profile.mem_limit is not None else mem_limit,
        cpu_limit=profile.cpu_limit if profile.cpu_limit is not None else cpu_limit,
        shm_size=settings.shm_size_for(profile),
        storage=storage,
        notebook_dir=notebook_dir,
        binds=MappingProxyType(binds),
        env=MappingProxyType(env),
        labels=MappingProxyType(labels),
    )


def container_call(
    plan: SpawnPlan,
    *,
    name: str,
    command: list[str],
    environment: Mapping[str, str],
    port: int,
    network_mode: str,
    port_bindings: Mapping | None,
    mounts: list,
    pids_limit: int,
    cap_add: list[str],
    extra_host: Mapping,
    extra_create: Mapping,
    allow_unsafe: list[str],
) -> tuple[dict, dict]:
    """``(create_kwargs, host_kwargs)`` for the plan's container, checked against the allowlist.

    Raises ``allowlist.UnsafeContainerConfig`` naming the setting; the admin's
    extras are checked again in the finished call, the spawner's values included.
    """
    host_kwargs = containerspec.host_config(
        extra=extra_host,
        network_mode=network_mode,
        port_bindings=port_bindings,
        binds=plan.binds,
        mounts=mounts,
        auto_remove=False,
        mem_limit=plan.mem_limit,
        cpu_limit=plan.cpu_limit,
        pids_limit=pids_limit,
        cap_add=cap_add,
        gpu_ids=plan.gpu_ids,
        shm_size=plan.shm_size,
    )
    labels = {
        **plan.labels,
        containerspec.LABEL_CPU_SHARES: str(containerspec.cpu_shares(host_kwargs)),
    }
    kwargs = containerspec.create_kwargs(
        image=plan.image,
        name=name,
        command=command,
        environment=environment,
        labels=labels,
        user=plan.user,
        port=port,
        volumes=[],
        extra=extra_create,
    )
    allowlist.check_create_call(host_kwargs, kwargs, allow_unsafe)
    return kwargs, host_kwargs
