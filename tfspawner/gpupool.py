"""The exclusive GPU pool: which server holds which GPU.

Pure bookkeeping, with no I/O and no awaits, so every operation is atomic on
the hub's event loop: nothing can run between checking that an id is free and
reserving it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

_GPU_ID = re.compile(r"[0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+|MIG-GPU-[0-9a-fA-F/-]+")


class Owner(NamedTuple):
    """A server: the hub user and the server name ("" for the default server)."""

    user: str
    server: str = ""

    def __str__(self) -> str:
        return f"{self.user}/{self.server}" if self.server else self.user


@dataclass(frozen=True)
class GPU:
    """A GPU in the pool. ``id`` is what the engine and NVIDIA_VISIBLE_DEVICES take."""

    id: str
    name: str = ""
    memory: str = ""
    uuid: str = ""

    def describe(self) -> str:
        details = " ".join(part for part in (self.name, self.memory) if part)
        return f"GPU {self.id} ({details})" if details else f"GPU {self.id}"


@dataclass(frozen=True)
class Holding:
    owner: Owner
    ids: tuple[str, ...]
    since: float
    profile: str = ""


@dataclass(frozen=True)
class EngineHolding:
    """GPUs a container on the engine holds, whoever started it.

    ``ours`` is true for this hub's own containers; ``owner`` is set for any
    tfspawner container (``hub`` names which hub started it).
    """

    container: str
    ids: tuple[str, ...]
    since: float
    ours: bool = False
    hub: str = ""
    owner: Owner | None = None
    profile: str = ""


class PoolError(Exception):
    """A request the pool cannot satisfy; ``str()`` is meant for the user."""


class PoolExhausted(PoolError):
    pass


class CapExceeded(PoolError):
    pass


class PoolConflict(PoolError):
    """Restoring ids that another server already holds."""


def parse_gpu_id(value: str) -> str:
    if not isinstance(value, str) or not _GPU_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a GPU id: use an index ('0'), a UUID ('GPU-...') "
            "or a MIG id ('MIG-...')"
        )
    return value


def parse_pool(entries: Iterable) -> list[GPU]:
    """Turn the ``gpu_pool`` config (ids or dicts with metadata) into GPUs; refuse duplicates."""
    gpus: list[GPU] = []
    for entry in entries:
        if isinstance(entry, GPU):
            gpu = entry
        elif isinstance(entry, str):
            gpu = GPU(parse_gpu_id(entry))
        elif isinstance(entry, dict):
            unknown = set(entry) - {"id", "name", "memory", "uuid"}
            if unknown:
                raise ValueError(f"unknown GPU key(s) {sorted(unknown)} in {entry!r}")
            if "id" not in entry:
                raise ValueError(f"GPU entry {entry!r} has no 'id'")
            gpu = GPU(
                parse_gpu_id(entry["id"]),
                str(entry.get("name", "")),
                str(entry.get("memory", "")),
                str(entry.get("uuid", "")),
            )
        else:
            raise ValueError(f"GPU entry {entry!r} must be an id string or a dict")
        if any(g.id == gpu.id for g in gpus):
            raise ValueError(f"GPU {gpu.id} is listed twice")
        gpus.append(gpu)
    return gpus


def effective_cap(global_cap: int | None, group_caps: dict[str, int], groups: Iterable[str]):
    """A user's GPU cap: the most generous of their groups' caps, else the global one.

    ``None`` means no cap.
    """
    caps = [group_caps[g] for g in groups if g in group_caps]
    if caps:
        return max(caps)
    return global_cap


@dataclass
class GPUPool:
    gpus: list[GPU]
    clock: Callable[[], float] = time.time
    _holdings: dict[Owner, Holding] = field(default_factory=dict, init=False)
    # The engine's last answer: every running container holding GPUs of this pool.
    _engine: tuple[EngineHolding, ...] = field(default=(), init=False)

    def __post_init__(self):
        self._by_id = {gpu.id: gpu for gpu in self.gpus}

    # --- views ------------------------------------------------------------------

    @property
    def total(self) -> int:
        return len(self.gpus)

    def gpu(self, gpu_id: str) -> GPU:
        return self._by_id.get(gpu_id) or GPU(gpu_id)

    def describe(self, ids: list[str]) -> str:
        return ", ".join(self.gpu(i).describe() for i in ids)

    def names(self) -> dict[str, str]:
        """Every name of a pool GPU (its id, and its UUID when known) -> its id."""
        found = {gpu.id: gpu.id for gpu in self.gpus}
        found.update({gpu.uuid: gpu.id for gpu in self.gpus if gpu.uuid})
        return found

    def holder(self, gpu_id: str) -> Holding | None:
        for holding in self._holdings.values():
            if gpu_id in holding.ids:
                return holding
        return None

    def external(self) -> dict[str, EngineHolding]:
        """GPUs held on the engine by containers this pool did not hand them to.

        Other hubs' servers, containers no hub started, and this hub's own
        containers that it has lost track of.
        """
        found: dict[str, EngineHolding] = {}
        for engine_holding in self._engine:
            for gpu_id in engine_holding.ids:
                holding = self.holder(gpu_id)
                if engine_holding.ours and holding and holding.owner == engine_holding.owner:
                    continue
                found.setdefault(gpu_id, engine_holding)
        return found

    def free(self) -> list[str]:
        held = {gpu_id for h in self._holdings.values() for gpu_id in h.ids}
        held |= set(self.external())
        return [gpu.id for gpu in self.gpus if gpu.id not in held]

    def held(self) -> dict[Owner, Holding]:
        return dict(self._holdings)

    def ids_of(self, owner: Owner) -> list[str]:
        holding = self._holdings.get(owner)
        return list(holding.ids) if holding else []

    def held_by_user(self, user: str) -> int:
        return sum(len(h.ids) for o, h in self._holdings.items() if o.user == user)

    def in_use_by_profile(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for holding in self._holdings.values():
            counts[holding.profile] = counts.get(holding.profile, 0) + len(holding.ids)
        return counts

    # --- changes ----------------------------------------------------------------

    def observe_engine(self, holdings: Iterable[EngineHolding]) -> None:
        """Replace the engine's view: which containers hold which of this pool's GPUs."""
        self._engine = tuple(holdings)

    def allocate(
        self, owner: Owner, count: int, *, user_cap: int | None = None, profile: str = ""
    ) -> list[str]:
        """Reserve ``count`` free GPUs for ``owner``; an owner holds at most one set."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if owner in self._holdings:
            raise PoolConflict(f"{owner} already holds GPUs {', '.join(self._holdings[owner].ids)}")
        if user_cap is not None:
            held = self.held_by_user(owner.user)
            if held + count > user_cap:
                raise CapExceeded(
                    f"You may use at most {user_cap} GPU{'s' if user_cap != 1 else ''} at a time "
                    f"and already hold {held}; stop another GPU server or pick a CPU profile."
                )
        free = self.free()
        if len(free) < count:
            if count > self.total:
                raise PoolExhausted(
                    f"This profile needs {count} GPUs but the hub has only {self.total}; "
                    "pick another profile."
                )
            busy = (
                f"All {self.total} GPUs are in use right now"
                if not free
                else f"Only {len(free)} of {self.total} GPUs are free right now, and this needs {count}"
            )
            raise PoolExhausted(f"{busy}; pick a CPU profile or try again later.")
        ids = tuple(free[:count])
        self._holdings[owner] = Holding(owner, ids, self.clock(), profile)
        return list(ids)

    def restore(
        self, owner: Owner, ids: Iterable[str], *, since: float | None = None, profile: str = ""
    ) -> None:
        """Mark ``ids`` as held by ``owner`` (after a restart); refuse ids another owner holds."""
        ids = tuple(ids)
        if not ids:
            return
        for gpu_id in ids:
            holding = self.holder(gpu_id)
            if holding is not None and holding.owner != owner:
                raise PoolConflict(f"GPU {gpu_id} is already held by {holding.owner}")
        self._holdings[owner] = Holding(
            owner, ids, self.clock() if since is None else since, profile
        )

    def release(self, owner: Owner) -> list[str]:
        holding = self._holdings.pop(owner, None)
        return list(holding.ids) if holding else []
