"""The engine seam: the only code in tfspawner that talks to a container engine.

``DockerEngine`` (async, for the hub) and ``admin`` (blocking, for the
``tfspawner`` command) talk to one Docker engine. Another engine, such as a
Swarm manager, implements the same ``Engine`` protocol; the spawner, the hub
wiring and the pure modules stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .. import archive
from .dockerengine import DockerEngine, carries_pin, shared_executor
from .errors import EngineUnreachable, ImageAbsent, PullRefused


class Engine(Protocol):
    """What the spawner and the hub need from an engine."""

    async def call(self, method: str, *args, **kwargs) -> Any:
        """A raw call, for the base spawner's own create/start/stop/inspect path."""

    async def server(self, name: str) -> dict | None:
        """One server's container (or task) as inspected; None when there is none."""

    async def managed(self, hub_name: str, *, stopped: bool = False) -> list[dict]:
        """This hub's labelled servers and helpers, as listed (labels, state, created)."""

    async def gpu_holders(self, *, fresh: bool = False) -> list[dict]:
        """Every live object on the engine that may hold GPUs, whoever started it."""

    async def create(self, create_kwargs: dict, host_kwargs: dict) -> str:
        """Create (not start) a server; returns its id."""

    async def remove(self, object_id: str) -> None:
        """Remove a server or helper, running or not; gone already is fine."""

    async def read_text_files(
        self, object_id: str, paths: Iterable[str], *, shared_by: tuple | None = None
    ) -> dict[str, str]:
        """Text files from a created server; ``shared_by`` keys a read that never changes."""

    async def put_files(self, object_id: str, members: list[archive.Member]) -> None:
        """Write files, with owners, into a created server before it starts."""

    async def image(
        self, reference: str, *, may_pull: bool, on_progress: Callable[[int], None]
    ) -> dict:
        """The image as the engine has it, pulled by digest first if absent."""

    async def image_files(self, image: str, path: str, labels: Mapping[str, str]) -> bytes | None:
        """A tar of ``path`` in ``image``; read once per pinned image."""

    async def run_helper(
        self, image: str, script: str, *, binds: dict, labels: Mapping[str, str], cap_add: list
    ) -> tuple[int, str]:
        """Run ``script`` as root in a throwaway, hardened container: (status, logs)."""

    async def volume(self, name: str) -> dict | None: ...

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> dict: ...

    async def remove_volume(self, name: str, *, force: bool = False) -> bool: ...

    async def volumes(self, labels: Iterable[str]) -> list[dict]: ...


__all__ = [
    "DockerEngine",
    "Engine",
    "EngineUnreachable",
    "ImageAbsent",
    "PullRefused",
    "carries_pin",
    "shared_executor",
]
