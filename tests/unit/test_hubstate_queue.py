"""The hub's one boot queue, sized from the engine's CPU count once."""

import asyncio
import logging

from tfspawner.gpupool import GPUPool
from tfspawner.hubstate import HubState


class CountingEngine:
    """Answers ``info`` like an engine with ``cpus`` CPUs, slowly, and counts the calls."""

    def __init__(self, cpus: int):
        self.cpus, self.calls = cpus, 0

    async def call(self, method: str, *args, **kwargs):
        assert method == "info"
        self.calls += 1
        await asyncio.sleep(0.01)
        return {"NCPU": self.cpus}


def state(engine) -> HubState:
    return HubState("hub", GPUPool([]), engine, logging.getLogger("test"))


def test_a_class_arriving_at_once_asks_the_engine_once():
    engine = CountingEngine(cpus=3)
    hub = state(engine)

    async def storm():
        return await asyncio.gather(*(hub.boot_queue(0) for _ in range(30)))

    queues = asyncio.run(storm())
    assert engine.calls == 1
    assert all(q is queues[0] for q in queues)
    assert queues[0].slots == 6


def test_configured_slots_need_no_engine_call():
    engine = CountingEngine(cpus=3)
    queue = asyncio.run(state(engine).boot_queue(5))
    assert engine.calls == 0 and queue.slots == 5
