"""TFSwarmSpawner: TFSpawner on a Docker Swarm, one service per server.

Everything but the engine is TFSpawner's: settings, profiles, the form and
its validation, uids, the spawn plan, the boot queue and the one rollback.
What differs is here: the service built from the plan (``swarmspec``), a
cluster-wide GPU pool of (node, UUID) read from the nodes' generic resources,
placement on the node that holds the user's volume, and a task's state read
as one sentence for the user.

GPUs are the hub's own pool, not Swarm's generic-resource scheduler: Engine
20.10's manager does not record which GPU it gave a task, so a service names
its GPUs by UUID (``NVIDIA_VISIBLE_DEVICES``) and is pinned to their node by
a ``node.id==`` constraint. The UUIDs are in the service's labels, which win
after a hub restart, as on one engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from traitlets import List, Unicode, default

from . import (
    containerspec,
    gpupool,
    hubstate,
    identity,
    imageref,
    messages,
    profiles,
    swarmspec,
    volumes,
)
from .engine.swarmengine import SwarmEngine
from .gpupool import GPU, GPUPool
from .spawner import TFSpawner
from .volumes import HostDirectory

LABEL_PASSWD = containerspec.LABEL_PREFIX + "passwd"
# The accounts every server sees besides its user: the image's own /etc/passwd
# cannot be read before a task starts, and a config replaces the whole file.
BASE_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
BASE_GROUP = "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n"
_POLL_S = 0.5

# hub_name -> (state, GPU UUID -> node id); one per process, as hubstate keeps it.
_pools: dict[str, tuple[hubstate.HubState, dict[str, str]]] = {}
_pool_lock = asyncio.Lock()
# node id -> times servers were placed there lately, so concurrent starts spread.
_recent_picks: dict[str, list[float]] = {}


node_down = messages.node_down


def task_refused(verdict: swarmspec.TaskVerdict) -> Exception:
    return messages.task_refused(verdict.message, verdict.state == "refused")


def passwd_config(name: str, uid: int, gid: int, home: str) -> tuple[str, bytes, bytes]:
    """``(hash, passwd, group)`` for a server's config mounts; equal users share them."""
    passwd, group = identity.with_user(
        BASE_PASSWD, BASE_GROUP, name=name, uid=uid, gid=gid, home=home
    )
    digest = hashlib.sha256(passwd.encode() + b"\0" + group.encode()).hexdigest()[:20]
    return digest, passwd.encode(), group.encode()


def config_mount(config_id: str, config_name: str, target: str) -> dict:
    return {
        "File": {"Name": target, "UID": "0", "GID": "0", "Mode": 0o444},
        "ConfigID": config_id,
        "ConfigName": config_name,
    }


def pick_node(
    candidates: list[str], score: dict[str, float], home: str | None = None
) -> str | None:
    """The home node if it is a candidate, else the candidate with the lowest score."""
    if home:
        return home if home in candidates else None
    if not candidates:
        return None
    return min(candidates, key=lambda node: (score.get(node, 0), node))


def gpus_on_a_node(
    free: list[str],
    gpu_nodes: dict[str, str],
    count: int,
    usable: list[str],
    score: dict[str, float],
    home: str | None,
    *,
    total: int,
) -> tuple[list[str], str]:
    """``count`` free GPUs all on one usable node, and that node.

    The home node if given; else the node with the most free GPUs, then the
    lowest score (fewest servers), so servers spread. Raises
    ``gpupool.PoolExhausted`` with a sentence for the user.
    """
    free_by_node: dict[str, list[str]] = {}
    for gpu_id in free:
        free_by_node.setdefault(gpu_nodes[gpu_id], []).append(gpu_id)
    most = max((sum(1 for n in gpu_nodes.values() if n == node) for node in usable), default=0)
    if count > most:
        raise gpupool.PoolExhausted(
            f"This profile needs {count} GPUs on one machine, and no machine of the hub that "
            "is up has that many; pick another profile."
        )
    fits = [n for n in usable if len(free_by_node.get(n, [])) >= count]
    spread = {n: (-len(free_by_node[n]), score.get(n, 0)) for n in fits}
    node = pick_node(fits, spread, home)
    if node is not None:
        return free_by_node[node][:count], node
    if home:
        raise gpupool.PoolExhausted(
            f"The machine that holds your files has no {count} free GPU{'s' if count != 1 else ''} "
            "right now; pick a CPU profile or try again later."
        )
    if not any(free_by_node.get(n) for n in usable):
        raise gpupool.PoolExhausted(
            f"All {total} GPUs are in use right now; pick a CPU profile or try again later."
        )
    raise gpupool.PoolExhausted(
        f"No machine has {count} free GPUs right now; pick a CPU profile or try again later."
    )


class TFSwarmSpawner(TFSpawner):
    """Start each user's server as a Docker Swarm service, GPUs from a cluster-wide pool."""

    object_type = "service"
    # Not the parent's client: this one talks to the Swarm manager.
    _client = None

    manager_url = Unicode(
        "",
        config=True,
        help="""The Docker API URL of a Swarm manager; empty uses ``DOCKER_HOST``.

        Example: ``c.TFSwarmSpawner.manager_url = "unix:///var/run/docker.sock"``
        when the hub runs on a manager (as ``deploy/swarm-stack.yaml`` does), or
        ``"tcp://manager1.example.edu:2376"`` with ``tls_config``. The hub needs
        only the manager's API, never a worker's: nodes pull images and make
        named volumes themselves.
        """,
    )

    gpu_resource = Unicode(
        swarmspec.GPU_RESOURCE,
        config=True,
        help="""The generic resource kind under which nodes advertise their GPUs.

        Each GPU node lists its full UUIDs, e.g. ``--node-generic-resource
        NVIDIA-GPU=GPU-<uuid>`` or ``node-generic-resources`` in daemon.json.
        The hub reads them as its GPU pool, one (node, UUID) per GPU, and gives
        each to one server at a time. Caveat: no other service on the swarm
        may ask Swarm's scheduler for this resource; the hub would not see
        which GPU it got.
        """,
    )

    node_constraints = List(
        Unicode(),
        config=True,
        help="""Extra Swarm placement constraints for every server's service.

        Example: ``["node.labels.lab == ml"]``. Servers go only to ready,
        active worker nodes (drain a node to keep new servers off it); a
        constraint no chosen node meets is refused at once with its reason.
        """,
    )

    @default("gpu_pool")
    def _default_gpu_pool(self):
        # The pool comes from the nodes, not from this host's nvidia-smi.
        return []

    @default("network_name")
    def _default_network_name(self):
        return "tfspawner-servers"

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        return True

    @default("remove")
    def _default_remove(self):
        return True

    @default("client_kwargs")
    def _default_client_kwargs(self):
        kwargs = super()._default_client_kwargs()
        if self.manager_url:
            kwargs["base_url"] = self.manager_url
        return kwargs

    # --- the seams -----------------------------------------------------------------

    @property
    def engine(self) -> SwarmEngine:
        return SwarmEngine.shared(self.client, self.engine_threads, self.log)

    async def hub_state(self) -> hubstate.HubState:
        """The hub's GPU pool, built once from the nodes' generic resources."""
        return await (await self._swarm_pool())[0].ready()

    async def _swarm_pool(self) -> tuple[hubstate.HubState, dict[str, str]]:
        name = self.hub_name
        if name not in _pools:
            async with _pool_lock:
                if name not in _pools:
                    nodes = await self.engine.nodes()
                    found = swarmspec.cluster_gpus(nodes, self.gpu_resource)
                    gpus = [
                        GPU(g.uuid, name=f"on node {g.node_id[:12]}", uuid=g.uuid) for g in found
                    ]
                    state = hubstate.HubState(name, GPUPool(gpus), self.engine, self.log)
                    # The admin page and the hub's start-up read the same state.
                    hubstate.register(state)
                    _pools[name] = (state, {g.uuid: g.node_id for g in found})
                    self.log.info(
                        "TFSwarmSpawner: %d GPU(s) on %d node(s) in the pool",
                        len(gpus),
                        len({g.node_id for g in found}),
                    )
        return _pools[name]

    # --- state ---------------------------------------------------------------------

    # The node holding this server's volume; kept after a stop, like the profile.
    swarm_node = Unicode("")
    _node: str | None = None

    def get_state(self):
        state = super().get_state()
        if self.swarm_node:
            state["swarm_node"] = self.swarm_node
        return state

    def load_state(self, state):
        super().load_state(state)
        self.swarm_node = state.get("swarm_node", "")

    def _home_node(self) -> str:
        """Where the user's volume is: this server's record, else a sibling's sharing it."""
        if self.swarm_node or self.settings.storage.per_server:
            return self.swarm_node
        for other in (getattr(self.user, "spawners", None) or {}).values():
            node = getattr(other, "swarm_node", "")
            if node:
                return node
        return ""

    async def _moved_home(self) -> str:
        """The node of the volume's home record, written when an admin moved it."""
        storage = self.settings.storage
        volume = volumes.volume_name(
            self.hub_name, self.user.name, self.name, per_server=storage.per_server
        )
        record = await self.engine.config(swarmspec.home_record_name(self.prefix, volume))
        return (record or {}).get("Labels", {}).get(swarmspec.LABEL_NODE, "")

    # --- placement and GPUs --------------------------------------------------------

    async def _take_gpus(self, profile: profiles.Profile) -> list[str]:
        """Pick the node and, for a GPU profile, its GPUs, from the cluster-wide pool."""
        state, gpu_nodes = await self._swarm_pool()
        await state.ready()
        moved = await self._moved_home()
        nodes = await self.engine.nodes()
        await state.observe()
        servers = await self.engine.managed(self.hub_name)
        # Nothing is awaited from here on: the pool's check and its record are one step.
        by_id = {node["ID"]: node for node in nodes}
        usable = [
            node["ID"]
            for node in nodes
            if swarmspec.node_takes_tasks(node) and (node.get("Spec") or {}).get("Role") == "worker"
        ]
        home = moved or self._home_node()
        if home and home not in usable:
            if home in by_id or home in gpu_nodes.values():
                raise node_down(home)
            self.log.warning("Node %s of %s left the swarm; placing anew", home, self.owner)
            home = ""
        now = time.monotonic()
        score: dict[str, float] = {}
        for server in servers:
            score[server.get("NodeID", "")] = score.get(server.get("NodeID", ""), 0) + 1
        for node, picks in _recent_picks.items():
            picks[:] = [t for t in picks if now - t < 60]
            score[node] = score.get(node, 0) + len(picks)
        state.release(self.owner)
        self.gpu_ids = []
        if not profile.gpus:
            node = pick_node(usable, score, home)
        else:
            ids, node = self._gpus_on_a_node(state.pool, gpu_nodes, profile, usable, score, home)
            state.pool.restore(self.owner, ids, profile=profile.slug)
            state.publish()
            self.gpu_ids = ids
        if node is None:
            raise messages.misconfigured(messages.NO_WORKER)
        _recent_picks.setdefault(node, []).append(now)
        self._node = node
        if self.gpu_ids:
            self._report(f"Assigned GPUs {', '.join(self.gpu_ids)} on node {node[:12]}", 10)
        return list(self.gpu_ids)

    def _gpus_on_a_node(self, pool, gpu_nodes, profile, usable, score, home):
        cap = gpupool.effective_cap(
            self.settings.gpu_limit_per_user,
            dict(self.settings.gpu_limit_per_group),
            self._user_groups(),
        )
        held = pool.held_by_user(self.owner.user)
        if cap is not None and held + profile.gpus > cap:
            raise messages.gpu_unavailable(
                f"You may use at most {cap} GPU{'s' if cap != 1 else ''} at a time and already "
                f"hold {held}; stop another GPU server or pick a CPU profile."
            )
        try:
            return gpus_on_a_node(
                pool.free(), gpu_nodes, profile.gpus, usable, score, home, total=pool.total
            )
        except gpupool.PoolExhausted as e:
            raise messages.gpu_unavailable(str(e)) from None

    # --- image and storage ---------------------------------------------------------

    async def pull_image(self, image):
        # Nodes pull by digest; the running task's image is checked in start_object.
        self._report("The node pulls your server's image", 20)

    async def _prepare_storage(self, plan) -> bool:
        if isinstance(plan.storage, HostDirectory):
            raise messages.misconfigured(messages.HOST_ROOT_ON_SWARM)
        # The node makes the volume when the task mounts it, with the image's notebook
        # directory copied in (world-writable in the TF images) and the volume labels.
        return False

    # --- the service ---------------------------------------------------------------

    async def create_object(self, seed_storage: bool = False):
        plan = self._plan
        node = self._node
        labels = {**plan.labels, swarmspec.LABEL_NODE: node or ""}
        digest, passwd, group = passwd_config(
            self.passwd_name, plan.uid, plan.gid, plan.notebook_dir
        )
        config_labels = {containerspec.LABEL_HUB: self.hub_name, LABEL_PASSWD: self.user.name}
        passwd_name = f"{self.prefix}-passwd-{digest}"
        group_name = f"{self.prefix}-group-{digest}"
        passwd_id = await self.engine.ensure_config(passwd_name, passwd, config_labels)
        group_id = await self.engine.ensure_config(group_name, group, config_labels)
        try:
            spec = swarmspec.service_spec(
                name=self.object_name,
                image=plan.image,
                labels=labels,
                user=plan.user,
                environment=self.get_env(),
                args=await self.get_command(),
                network=self.network_name,
                volumes={plan.storage.source: plan.notebook_dir},
                volume_labels={**plan.labels, containerspec.LABEL_UID: str(plan.uid)},
                node_id=node,
                constraints=list(self.node_constraints),
                mem_limit=plan.mem_limit,
                cpu_limit=plan.cpu_limit,
                pids_limit=self.pids_limit,
                cap_add=self.cap_add,
                shm_size=plan.shm_size,
                gpu_uuids=plan.gpu_ids,
                gpu_resource=self.gpu_resource,
                workdir=plan.notebook_dir,
            )
        except ValueError as e:
            raise messages.misconfigured(e) from None
        spec["TaskTemplate"]["ContainerSpec"]["Configs"] = [
            config_mount(passwd_id, passwd_name, "/etc/passwd"),
            config_mount(group_id, group_name, "/etc/group"),
        ]
        self.object_id = await self.engine.create_service(swarmspec.api_kwargs(spec))
        if node:
            self.swarm_node = node
        return {"Id": self.object_id}

    async def start_object(self):
        """Wait until the task runs; a refused or failed task ends the start with its reason."""
        reported = ""
        while True:
            view = await self.get_object()
            if view is None:
                raise task_refused(swarmspec.TaskVerdict("failed", messages.service_vanished()))
            verdict = view["Verdict"]
            if verdict.state == "running":
                break
            if verdict.final:
                self.log.warning(
                    "Task of %s ended %s: %s",
                    self.owner,
                    (view["Task"] or {}).get("Status", {}).get("State"),
                    (view["Task"] or {}).get("Status", {}).get("Err", ""),
                )
                raise task_refused(verdict)
            state = ((view["Task"] or {}).get("Status") or {}).get("State", "new")
            if state != reported:
                self._report(f"Your server's task is {state}", 85)
                reported = state
            await asyncio.sleep(_POLL_S)
        task = view["Task"]
        running = (task.get("Spec") or {}).get("ContainerSpec", {}).get("Image", "")
        wanted = imageref.parse(self._plan.image)
        if wanted.pinned and imageref.parse(running).digest != wanted.digest:
            raise messages.digest_mismatch(wanted.digest)
        self.swarm_node = task.get("NodeID", "") or self.swarm_node

    async def get_object(self):
        view = await self.engine.server(self.object_name)
        self.object_id = view["Id"] if view else ""
        return view

    async def stop_object(self):
        # Removing the service stops its task; the node keeps the volume.
        await self.remove_object()

    async def remove_object(self):
        await self.engine.remove(self.object_id or self.object_name)
        self.object_id = ""

    async def get_ip_and_port(self):
        view = await self.get_object()
        address = view and swarmspec.task_address(view["Task"] or {}, self.network_name)
        if not address:
            raise task_refused(
                swarmspec.TaskVerdict("failed", messages.no_address(self.network_name))
            )
        return address, self.port

    async def poll(self):
        await self._sync_gpus_with_pool()
        view = await self.get_object()
        if view is None:
            status = 0
        elif not view["Verdict"].final:
            return None
        else:
            verdict = view["Verdict"]
            status = verdict.message or verdict.state
            self.stop_reason = verdict.message
        if not (self._spawn_pending or self._start_pending):
            await self._release_gpus(f"server not running: {status}")
            if view is not None and self.remove:
                await self.remove_object()
        return status
