"""One Docker engine, for the hub: every call runs on a shared thread pool.

Process-wide state lives here, shared by every spawner of the hub: the thread
pools, image lookups and pulls in flight (single-flight), files read from
pinned images (read once), and what each live container holds in GPUs
(inspected once per container).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from docker.errors import APIError, ImageNotFound, NotFound

from .. import archive, containerspec, imageref, registryauth
from ..pullprogress import PullFailed, PullProgress
from .errors import ImageAbsent, PullRefused

# Different images pulled at the same time; pulls of one image are shared.
PULL_THREADS = 4
# Containers that may hold GPUs: running ones, and new ones that are about to start.
LIVE_STATES = ["created", "running", "restarting", "paused"]
# A container created this long ago and never started is a dead spawn, not a GPU holder.
CREATED_GRACE_S = 300
# How long a helper container may run.
HELPER_TIMEOUT_S = 120

_executors: dict[str, ThreadPoolExecutor] = {}
_engines: dict[tuple, ThreadedEngine] = {}


def shared_executor(purpose: str, threads: int) -> ThreadPoolExecutor:
    if purpose not in _executors:
        _executors[purpose] = ThreadPoolExecutor(threads, thread_name_prefix=f"tfspawner-{purpose}")
    return _executors[purpose]


def carries_pin(ref: imageref.ImageRef, image_info: Mapping) -> bool:
    """Whether an image, as the engine describes it, is the one ``ref`` pins."""
    return any(ref.matches_repo_digest(entry) for entry in image_info.get("RepoDigests") or [])


@dataclass
class _ImageLookup:
    """One look for a pinned image (and its pull, if absent), shared by concurrent spawns."""

    task: asyncio.Future | None = None
    progress: PullProgress = field(default_factory=PullProgress)
    pulling: bool = False


def _gpu_facts(info: dict) -> dict:
    """The parts of an inspected container that say which GPUs it holds; no secrets kept.

    Its CPU weight too, as first seen: the hub's start-up sweep reads it before
    this hub has changed any.
    """
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    return {
        "Id": info["Id"],
        "Name": (info.get("Name") or "").lstrip("/"),
        "Created": info.get("Created") or "1970-01-01T00:00:00Z",
        "HostConfig": {
            "DeviceRequests": host.get("DeviceRequests"),
            "Runtime": host.get("Runtime"),
            "CpuShares": host.get("CpuShares"),
        },
        "Config": {
            "Env": [e for e in config.get("Env") or [] if e.startswith("NVIDIA_VISIBLE_DEVICES=")],
            "Labels": config.get("Labels") or {},
        },
    }


class ThreadedEngine:
    """An engine client whose blocking calls run on a shared thread pool; one per client."""

    pool = "engine"

    def __init__(self, client, threads: int, log: logging.Logger | None = None):
        self.client = client
        self.executor = shared_executor(self.pool, threads)
        self.log = log or logging.getLogger("tfspawner")

    @classmethod
    def shared(cls, client, threads: int, log: logging.Logger | None = None):
        key = (cls, id(client))
        engine = _engines.get(key)
        if engine is None or engine.client is not client:
            engine = _engines[key] = cls(client, threads, log)
        return engine

    async def call(self, method: str, *args, **kwargs):
        function = getattr(self.client, method)
        return await asyncio.wrap_future(self.executor.submit(function, *args, **kwargs))


class DockerEngine(ThreadedEngine):
    """The hub's Docker engine; one per client, shared by every spawner in the process."""

    def __init__(self, client, threads: int, log: logging.Logger | None = None):
        super().__init__(client, threads, log)
        self._image_lookups: dict[str, _ImageLookup] = {}
        self._reads: dict[tuple, asyncio.Future] = {}
        self._gpu_facts: dict[str, dict] = {}
        self._holders_read: asyncio.Future | None = None

    # --- servers -------------------------------------------------------------------

    async def server(self, name: str) -> dict | None:
        try:
            return await self.call("inspect_container", name)
        except NotFound:
            return None

    async def managed(self, hub_name: str, *, stopped: bool = False) -> list[dict]:
        return await self.call(
            "containers", all=stopped, filters=containerspec.label_filters(hub_name)
        )

    async def gpu_holders(self, *, fresh: bool = False) -> list[dict]:
        """Every live container on the engine, whoever started it, with what holds GPUs.

        Concurrent callers share one read unless ``fresh`` asks for one that
        starts now, after something the caller just did.
        """
        if not fresh and self._holders_read is not None and not self._holders_read.done():
            return await asyncio.shield(self._holders_read)
        read = asyncio.ensure_future(self._list_gpu_holders())
        if not fresh:
            self._holders_read = read
        return await asyncio.shield(read)

    async def _list_gpu_holders(self) -> list[dict]:
        listed = await self.call("containers", all=True, filters={"status": LIVE_STATES})
        now = time.time()
        found = []
        for container in listed:
            created = container.get("Created", now)
            if container.get("State") == "created" and now - created > CREATED_GRACE_S:
                continue
            facts = self._gpu_facts.get(container["Id"])
            if facts is None:
                info = await self.server(container["Id"])
                if info is None:
                    continue
                facts = self._gpu_facts[container["Id"]] = _gpu_facts(info)
            found.append(facts)
        for gone in set(self._gpu_facts) - {container["Id"] for container in listed}:
            self._gpu_facts.pop(gone, None)
        return found

    async def create(self, create_kwargs: dict, host_kwargs: dict) -> str:
        host_config = self.client.create_host_config(**host_kwargs)
        container = await self.call("create_container", host_config=host_config, **create_kwargs)
        return container["Id"]

    async def set_cpu_shares(self, object_id: str, shares: int) -> None:
        """A running container's CPU weight (cgroup cpu.shares), changed in place."""
        await self.call("update_container", object_id, cpu_shares=shares)

    async def remove(self, object_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.call("remove_container", object_id, force=True)

    async def read_text_files(
        self, object_id: str, paths: Iterable[str], *, shared_by: tuple | None = None
    ) -> dict[str, str]:
        paths = tuple(paths)
        read = partial(self._read_text_files, object_id, paths)
        if shared_by is None:
            return await read()
        try:
            return await self._read_once((*shared_by, paths), read)
        except Exception:
            # The shared read used another spawn's container, which may be gone.
            return await read()

    async def _read_text_files(self, object_id: str, paths: tuple[str, ...]) -> dict[str, str]:
        texts = {}
        for path in paths:
            stream, _ = await self.call("get_archive", object_id, path)
            texts[path] = archive.read_text(b"".join(stream), path.rsplit("/", 1)[-1])
        return texts

    async def put_files(self, object_id: str, members: list[archive.Member]) -> None:
        await self.call("put_archive", object_id, "/", archive.build(members))

    async def _read_once(self, key: tuple, read):
        """``await read()``, once per key for as long as it succeeds; callers share it."""
        task = self._reads.get(key)
        if task is None:
            task = self._reads[key] = asyncio.ensure_future(read())
            task.add_done_callback(partial(self._forget_failed_read, key))
        return await asyncio.shield(task)

    def _forget_failed_read(self, key: tuple, read: asyncio.Future) -> None:
        # A failed read is not cached: the next spawn tries again.
        if read.cancelled() or read.exception() is not None:
            self._reads.pop(key, None)

    # --- images --------------------------------------------------------------------

    async def image(
        self, reference: str, *, may_pull: bool, on_progress: Callable[[int], None]
    ) -> dict:
        """The engine's view of a pinned image, pulled by digest first if absent.

        Single-flight: concurrent spawns of one image share one look and at most
        one pull. The look is inside the shared part, so a spawn arriving just
        after a pull finished looks again and finds the image, instead of
        pulling it a second time.
        """
        if reference not in self._image_lookups:
            lookup = _ImageLookup()
            ref = imageref.parse(reference)
            lookup.task = asyncio.ensure_future(self._inspect_or_pull(ref, lookup, may_pull))
            self._image_lookups[reference] = lookup
            lookup.task.add_done_callback(lambda _: self._image_lookups.pop(reference, None))
        lookup = self._image_lookups[reference]
        reported = -1
        while not lookup.task.done():
            if lookup.pulling and lookup.progress.percent != reported:
                reported = lookup.progress.percent
                on_progress(reported)
            await asyncio.wait([lookup.task], timeout=1)
        info = lookup.task.result()
        if lookup.pulling:
            on_progress(100)
        return info

    async def _inspect_or_pull(
        self, ref: imageref.ImageRef, lookup: _ImageLookup, may_pull: bool
    ) -> dict:
        try:
            return await self.call("inspect_image", str(ref))
        except (ImageNotFound, NotFound):
            pass
        if not may_pull:
            raise ImageAbsent(str(ref))
        registry = registryauth.registry_of(ref)
        lookup.pulling = True
        # Not on the engine-call threads, which every spawn, stop and poll needs.
        pulls = shared_executor("pull", PULL_THREADS)
        credentials = None
        try:
            # A credential helper is a subprocess: off the event loop too.
            credentials = await asyncio.wrap_future(pulls.submit(registryauth.lookup, registry))
            self.log.info("Pulling %s by digest (login: %s)", ref, credentials.source)
            await asyncio.wrap_future(
                pulls.submit(self._pull_stream, ref, lookup.progress, credentials)
            )
        except (APIError, PullFailed, registryauth.CredentialError) as e:
            why = registryauth.redact(registryauth.reason(e), credentials)
            refused = isinstance(e, registryauth.CredentialError) or registryauth.refused(why)
            self.log.error(
                "Pulling %s from registry %s failed%s: %s",
                ref,
                registry,
                f" (the registry refused the login: {credentials.source})"
                if refused and credentials is not None
                else "",
                why,
            )
            raise PullRefused(why, registry=registry, login_refused=refused) from None
        try:
            return await self.call("inspect_image", str(ref))
        except (ImageNotFound, NotFound):
            raise PullRefused(
                "the image is not there after the pull", registry=registry, login_refused=False
            ) from None

    def _pull_stream(
        self,
        ref: imageref.ImageRef,
        progress: PullProgress,
        credentials: registryauth.Credentials,
    ) -> None:
        """Runs in the pull pool: follow the engine's pull stream to the end."""
        repository, digest = ref.pull_args()
        # An empty auth_config is an anonymous pull; None would let docker-py
        # fall back on the config it read when the hub started.
        for event in self.client.pull(
            repository,
            tag=digest,
            stream=True,
            decode=True,
            auth_config=credentials.auth_config,
        ):
            progress.update(event)

    async def image_files(self, image: str, path: str, labels: Mapping[str, str]) -> bytes | None:
        read = partial(self._image_files, image, path, labels)
        if imageref.parse(image).pinned:
            return await self._read_once(("image_files", image, path), read)
        return await read()

    async def _image_files(self, image: str, path: str, labels: Mapping[str, str]) -> bytes | None:
        """The image's files at ``path``, from a container that never starts."""
        object_id = await self.create(
            {
                "image": image,
                "network_disabled": True,
                "labels": dict(labels),
                "environment": containerspec.gpu_environment([]),
            },
            containerspec.helper_host_config(),
        )
        try:
            stream, _ = await self.call("get_archive", object_id, path)
            return b"".join(stream)
        except NotFound:
            return None
        finally:
            await self.remove(object_id)

    async def run_helper(
        self, image: str, script: str, *, binds: dict, labels: Mapping[str, str], cap_add: list
    ) -> tuple[int, str]:
        object_id = await self.create(
            {
                "image": image,
                "entrypoint": ["/bin/sh", "-c"],
                "command": [script],
                "user": "0:0",
                "labels": dict(labels),
                "environment": containerspec.gpu_environment([]),
            },
            containerspec.helper_host_config(binds=binds, cap_add=cap_add),
        )
        try:
            await self.call("start", object_id)
            result = await self.call("wait", object_id, timeout=HELPER_TIMEOUT_S)
            status = result.get("StatusCode")
            logs = "" if status == 0 else (await self.call("logs", object_id)).decode("replace")
            return status, logs.strip()
        finally:
            await self.remove(object_id)

    # --- volumes -------------------------------------------------------------------

    async def volume(self, name: str) -> dict | None:
        try:
            return await self.call("inspect_volume", name)
        except NotFound:
            return None

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> dict:
        return await self.call("create_volume", name=name, labels=dict(labels))

    async def remove_volume(self, name: str, *, force: bool = False) -> bool:
        try:
            await self.call("remove_volume", name, force=force)
        except NotFound:
            return False
        return True

    async def volumes(self, labels: Iterable[str]) -> list[dict]:
        found = await self.call("volumes", filters={"label": list(labels)})
        return found.get("Volumes") or []
