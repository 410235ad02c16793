"""The boot queue: at most a few servers boot at once, first come first served.

Servers that boot together share the CPU, so when a class logs in at once,
every student waits about as long as the last. Letting only ``slots``
servers boot at a time gets the first ones ready sooner, and on a busy host
even the last one, because less CPU goes to contention.

A ticket takes a slot just before its container starts and gives it back
when the server answers HTTP, fails, is cancelled or times out.

Adaptive slots: a server whose boot has already taken more than
``LEND_AFTER`` times the recent median boot is mostly waiting (on a slow
disk, a pull, the network), not computing, so its slot is lent to the next
in line, up to ``max_slots`` (twice ``slots`` by default). The lending is
re-evaluated whenever a waiter wakes (at least once a second), so no timer
is needed and a fake clock tests it.

Plain asyncio, no Docker and no JupyterHub: the spawner enters a ticket,
awaits ``wait`` in the hub's pre-spawn hook and calls ``done`` when the boot
ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Hashable

from prometheus_client import Gauge, Histogram

# A boot this many times longer than the recent median lends its slot.
LEND_AFTER = 2.0
# Boots the estimates are based on.
RECENT_BOOTS = 20
# How often a waiter re-checks its place and the lending, at most.
RECHECK_S = 1.0
OUTCOMES = ("ready", "failed", "cancelled", "timeout")

WAITING = Gauge("tfspawner_boot_queue_waiting", "Servers waiting in line to boot")
BOOTING = Gauge("tfspawner_boot_queue_booting", "Servers booting (holding a boot slot)")
QUEUED_SECONDS = Histogram(
    "tfspawner_boot_queue_wait_seconds",
    "Seconds a server waited in line before its boot began",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
BOOT_SECONDS = Histogram(
    "tfspawner_boot_seconds",
    "Seconds from a boot slot to the server answering HTTP",
    buckets=(1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300),
)


class LeftQueue(Exception):
    """The ticket left the line before its turn: its server was stopped."""


class Ticket:
    def __init__(self, queue: BootQueue, key: Hashable, label: str, entered: float):
        self.queue = queue
        self.key = key
        self.label = label
        self.entered = entered
        self.started: float | None = None
        self.finished = False
        self._changed = asyncio.Event()

    @property
    def place(self) -> int:
        """1 for the next to boot; 0 once booting or finished."""
        return self.queue.place(self.key) if self.started is None and not self.finished else 0

    async def wait(self, on_place: Callable[[int, float | None], None] | None = None) -> None:
        """Return once this ticket holds a slot; raise LeftQueue if it was cancelled."""
        told = None
        while True:
            self.queue.admit()
            if self.started is not None:
                return
            if self.finished:
                raise LeftQueue(self.label)
            place = self.place
            news = (place, _rounded(self.queue.estimate(place)))
            if on_place is not None and news != told:
                told = news
                on_place(place, self.queue.estimate(place))
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), RECHECK_S)

    def done(self, outcome: str) -> None:
        """Leave the line, or give the slot back; only the first call counts."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if self.finished:
            return
        self.finished = True
        self.queue._finish(self, outcome)


def _rounded(seconds: float | None) -> int | None:
    # Tell a waiter again only when the estimate moved by 5 s or more.
    return None if seconds is None else int(seconds // 5)


class BootQueue:
    def __init__(
        self,
        slots: int,
        *,
        max_slots: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if slots < 1:
            raise ValueError("slots must be 1 or more")
        self._slots = slots
        self._max_slots = max_slots
        self.clock = clock
        self._waiting: list[Ticket] = []
        self._booting: dict[Hashable, Ticket] = {}
        self._boots: deque[float] = deque(maxlen=RECENT_BOOTS)

    # --- size ----------------------------------------------------------------------

    @property
    def slots(self) -> int:
        return self._slots

    @slots.setter
    def slots(self, value: int) -> None:
        if value < 1:
            raise ValueError("slots must be 1 or more")
        self._slots = value
        self.admit()

    @property
    def max_slots(self) -> int:
        return max(self._slots, self._max_slots or 2 * self._slots)

    def capacity(self) -> int:
        """Slots now: ``slots``, plus one lent by each boot that is mostly waiting."""
        median = self.median_boot()
        if median is None:
            return self._slots
        now = self.clock()
        lent = sum(1 for t in self._booting.values() if now - t.started > LEND_AFTER * median)
        return min(self.max_slots, self._slots + lent)

    # --- tickets -------------------------------------------------------------------

    def enter(self, key: Hashable, label: str) -> Ticket:
        """Join the end of the line; a ticket already held for ``key`` is cancelled first."""
        self.cancel(key)
        ticket = Ticket(self, key, label, self.clock())
        self._waiting.append(ticket)
        self.admit()
        self._publish()
        return ticket

    def cancel(self, key: Hashable) -> None:
        """Leave the line at once, or give back the slot: a stop or a cancelled spawn."""
        for ticket in [*self._waiting, *self._booting.values()]:
            if ticket.key == key:
                ticket.done("cancelled")

    def place(self, key: Hashable) -> int:
        for place, ticket in enumerate(self._waiting, 1):
            if ticket.key == key:
                return place
        return 0

    def admit(self) -> None:
        """Give free slots to the first in line."""
        admitted = False
        while self._waiting and len(self._booting) < self.capacity():
            ticket = self._waiting.pop(0)
            ticket.started = self.clock()
            self._booting[ticket.key] = ticket
            QUEUED_SECONDS.observe(ticket.started - ticket.entered)
            ticket._changed.set()
            admitted = True
        if admitted:
            self._wake()
            self._publish()

    def _finish(self, ticket: Ticket, outcome: str) -> None:
        if ticket in self._waiting:
            self._waiting.remove(ticket)
        elif self._booting.get(ticket.key) is ticket:
            del self._booting[ticket.key]
            if outcome == "ready":
                seconds = self.clock() - ticket.started
                self._boots.append(seconds)
                BOOT_SECONDS.observe(seconds)
        self._wake()
        self.admit()
        self._publish()

    def _wake(self) -> None:
        # Every waiter's place may have changed.
        for ticket in self._waiting:
            ticket._changed.set()

    def _publish(self) -> None:
        WAITING.set(len(self._waiting))
        BOOTING.set(len(self._booting))

    # --- estimates -----------------------------------------------------------------

    def median_boot(self) -> float | None:
        return statistics.median(self._boots) if self._boots else None

    def estimate(self, place: int) -> float | None:
        """Seconds until the server at ``place`` is ready; None before any boot finished.

        The first slot frees when the oldest boot reaches the median; then
        every ``slots`` waiters take one more median each.
        """
        median = self.median_boot()
        if median is None or place < 1:
            return None
        now = self.clock()
        first_free = 0.0
        if len(self._booting) >= self.capacity():
            longest = max(now - t.started for t in self._booting.values())
            first_free = max(0.0, median - longest)
        waves = math.ceil(place / self._slots)
        return first_free + waves * median

    def snapshot(self) -> dict:
        """The queue as JSON data, for the admin page and the API."""
        now, wall = self.clock(), time.time()
        return {
            "slots": self._slots,
            "capacity": self.capacity(),
            "length": len(self._waiting),
            "median_boot_s": self.median_boot(),
            "booting": [
                {"label": t.label, "since": wall - (now - t.started), "elapsed_s": now - t.started}
                for t in self._booting.values()
            ],
            "waiting": [
                {
                    "label": t.label,
                    "place": place,
                    "since": wall - (now - t.entered),
                    "waited_s": now - t.entered,
                    "estimate_s": self.estimate(place),
                }
                for place, t in enumerate(self._waiting, 1)
            ],
        }


def ordinal(number: int) -> str:
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def describe_seconds(seconds: float) -> str:
    seconds = max(5, round(seconds / 5) * 5)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def describe_place(place: int, estimate_s: float | None) -> str:
    """The student's line on the spawn page, e.g. "You are 12th in line, about 40 s"."""
    where = f"You are {ordinal(place)} in line to start"
    if estimate_s is None:
        return where + ": servers are booting before yours"
    return f"{where}, ready in about {describe_seconds(estimate_s)}"
