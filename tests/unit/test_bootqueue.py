"""The boot queue: first come first served, slots never exceeded, cancellations free at once."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from tfspawner import bootqueue
from tfspawner.bootqueue import BootQueue, LeftQueue


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_first_come_first_served_and_slots_never_exceeded():
    async def run():
        queue = BootQueue(2)
        order = []

        async def boot(name):
            ticket = queue.enter(name, name)
            await ticket.wait()
            order.append(name)
            assert len(queue._booting) <= 2
            await asyncio.sleep(0.01)
            ticket.done("ready")

        await asyncio.gather(*(boot(f"u{i}") for i in range(7)))
        return order

    assert asyncio.run(run()) == [f"u{i}" for i in range(7)]


def test_a_cancelled_waiter_leaves_at_once_and_the_next_moves_up():
    async def run():
        queue = BootQueue(1)
        first = queue.enter("a", "a")
        second = queue.enter("b", "b")
        third = queue.enter("c", "c")
        await first.wait()
        assert (second.place, third.place) == (1, 2)
        queue.cancel("b")
        assert third.place == 1
        with pytest.raises(LeftQueue):
            await second.wait()
        first.done("ready")
        await asyncio.wait_for(third.wait(), 1)
        return queue.snapshot()

    snapshot = asyncio.run(run())
    assert [b["label"] for b in snapshot["booting"]] == ["c"]
    assert snapshot["length"] == 0


def test_a_cancelled_boot_gives_its_slot_back():
    async def run():
        queue = BootQueue(1)
        first, second = queue.enter("a", "a"), queue.enter("b", "b")
        await first.wait()
        queue.cancel("a")
        await asyncio.wait_for(second.wait(), 1)
        return second.started is not None

    assert asyncio.run(run())


@pytest.mark.parametrize("outcome", bootqueue.OUTCOMES)
def test_done_from_every_state_is_idempotent(outcome):
    async def run():
        queue = BootQueue(1)
        booting, waiting = queue.enter("a", "a"), queue.enter("b", "b")
        await booting.wait()
        for ticket in (booting, waiting, booting, waiting):
            ticket.done(outcome)
        return queue.snapshot()

    snapshot = asyncio.run(run())
    assert snapshot["booting"] == [] and snapshot["waiting"] == []


def test_done_refuses_an_unknown_outcome():
    async def run():
        ticket = BootQueue(1).enter("a", "a")
        with pytest.raises(ValueError):
            ticket.done("finished")

    asyncio.run(run())


def test_entering_again_replaces_the_old_ticket():
    async def run():
        queue = BootQueue(1)
        queue.enter("x", "x")
        old = queue.enter("a", "a")
        new = queue.enter("a", "a")
        return old.finished, new.place, queue.snapshot()["length"]

    assert asyncio.run(run()) == (True, 1, 1)


def test_raising_slots_admits_waiters_at_once():
    async def run():
        queue = BootQueue(1)
        tickets = [queue.enter(i, str(i)) for i in range(3)]
        queue.slots = 3
        return [t.started is not None for t in tickets]

    assert asyncio.run(run()) == [True, True, True]


def test_a_long_boot_lends_its_slot_up_to_max_slots():
    async def run():
        clock = Clock()
        queue = BootQueue(1, max_slots=2, clock=clock)
        warm = queue.enter("w", "w")
        clock.now += 10
        warm.done("ready")  # median boot: 10 s
        slow = queue.enter("slow", "slow")
        waiting = [queue.enter(i, str(i)) for i in range(2)]
        assert slow.started is not None and waiting[0].started is None
        clock.now += 15  # not yet 2x the median
        queue.admit()
        assert waiting[0].started is None
        clock.now += 10  # 25 s > 20 s: mostly waiting, the slot is lent
        queue.admit()
        assert waiting[0].started is not None
        clock.now += 100  # both long now, but max_slots caps it
        queue.admit()
        return waiting[1].started, queue.capacity()

    started, capacity = asyncio.run(run())
    assert started is None and capacity == 2


def test_estimates_grow_with_the_place_and_follow_recent_boots():
    async def run():
        clock = Clock()
        queue = BootQueue(2, clock=clock)
        assert queue.estimate(1) is None
        for seconds in (8, 10, 12):
            ticket = queue.enter(seconds, "x")
            clock.now += seconds
            ticket.done("ready")
        for i in range(2):
            queue.enter(("boot", i), "b")
        clock.now += 4
        return [queue.estimate(place) for place in (1, 2, 3, 4, 5)]

    assert asyncio.run(run()) == [16.0, 16.0, 26.0, 26.0, 36.0]


def test_waiters_hear_their_place():
    async def run():
        queue = BootQueue(1)
        first = queue.enter("a", "a")
        heard = []
        second = queue.enter("b", "b")
        waiting = asyncio.ensure_future(second.wait(on_place=lambda p, e: heard.append(p)))
        await asyncio.sleep(0.05)
        first.done("ready")
        await asyncio.wait_for(waiting, 1)
        return heard

    assert asyncio.run(run()) == [1]


@pytest.mark.parametrize(
    ("place", "estimate", "text"),
    [
        (1, None, "You are 1st in line to start: servers are booting before yours"),
        (2, 3, "You are 2nd in line to start, ready in about 5 s"),
        (3, 41, "You are 3rd in line to start, ready in about 40 s"),
        (11, 80, "You are 11th in line to start, ready in about 1 min 20 s"),
        (12, 120, "You are 12th in line to start, ready in about 2 min"),
        (13, 60, "You are 13th in line to start, ready in about 1 min"),
        (21, 10, "You are 21st in line to start, ready in about 10 s"),
        (22, 10, "You are 22nd in line to start, ready in about 10 s"),
        (101, 10, "You are 101st in line to start, ready in about 10 s"),
        (111, 10, "You are 111th in line to start, ready in about 10 s"),
    ],
)
def test_describe_place(place, estimate, text):
    assert bootqueue.describe_place(place, estimate) == text


def test_metrics_and_snapshot():
    async def run():
        queue = BootQueue(1)
        first = queue.enter("a", "alice")
        queue.enter("b", "bob")
        await first.wait()
        return queue.snapshot()

    snapshot = asyncio.run(run())
    assert REGISTRY.get_sample_value("tfspawner_boot_queue_waiting") == 1
    assert REGISTRY.get_sample_value("tfspawner_boot_queue_booting") == 1
    assert snapshot["waiting"][0]["label"] == "bob" and snapshot["waiting"][0]["place"] == 1
    assert snapshot["booting"][0]["label"] == "alice"
    import json

    json.dumps(snapshot)
