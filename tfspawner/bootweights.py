"""CPU weights for servers that boot together: the oldest boot goes first.

Containers share the CPU equally by default, so servers that start booting
together finish together, each as late as the last of them: with four slots
on two CPUs, students were let in four at a time. Weighting the booting
containers by age (the oldest at its normal weight, each younger one at half
the one before) lets the oldest finish first, while the younger ones still
use whatever CPU it leaves idle, for example while it waits on the engine. A
server goes back to its normal weight as soon as it answers.

Plain asyncio: the engine's call that sets a container's weight is passed in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from .containerspec import DEFAULT_CPU_SHARES as DEFAULT_SHARES

# The kernel's floor for cgroup cpu.shares.
MIN_SHARES = 2


def boot_shares(normal: int, rank: int) -> int:
    """The weight of the boot with ``rank`` older boots still running."""
    return max(MIN_SHARES, normal >> rank)


@dataclass
class _Boot:
    object_id: str
    normal: int
    applied: int


class BootWeights:
    def __init__(
        self,
        set_shares: Callable[[str, int], Awaitable[None]],
        log: logging.Logger | None = None,
    ):
        self._set_shares = set_shares
        self.log = log or logging.getLogger("tfspawner")
        # Oldest first: dicts keep insertion order.
        self._boots: dict[Hashable, _Boot] = {}
        # One settling at a time, so a stale weight never lands after a newer one.
        self._lock = asyncio.Lock()

    def weights(self) -> dict[Hashable, int]:
        return {key: boot.applied for key, boot in self._boots.items()}

    async def started(self, key: Hashable, object_id: str, normal: int = DEFAULT_SHARES) -> None:
        """A container began its boot at weight ``normal``; weigh it behind the older ones."""
        async with self._lock:
            self._boots.pop(key, None)
            self._boots[key] = _Boot(object_id, normal, applied=normal)
            await self._settle()

    async def ended(self, key: Hashable, *, running: bool) -> None:
        """The boot ended; a server that runs on gets its normal weight back."""
        async with self._lock:
            boot = self._boots.pop(key, None)
            if boot is not None and running and boot.applied != boot.normal:
                await self._apply(boot, boot.normal)
            await self._settle()

    async def _settle(self) -> None:
        for rank, boot in enumerate(list(self._boots.values())):
            want = boot_shares(boot.normal, rank)
            if boot.applied != want:
                await self._apply(boot, want)

    async def _apply(self, boot: _Boot, shares: int) -> None:
        try:
            await self._set_shares(boot.object_id, shares)
        except Exception as e:
            # Gone meanwhile (a stop, a failed boot): nothing to weigh.
            self.log.debug("TFSpawner: CPU weight of %s not set: %s", boot.object_id[:12], e)
        else:
            boot.applied = shares
