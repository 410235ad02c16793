"""Engine-call plumbing: the shared thread pool and the shared image file read."""

import asyncio

import pytest

from tfspawner.engine import dockerengine
from tfspawner.engine.dockerengine import DockerEngine
from tfspawner.spawner import TFSpawner


@pytest.fixture
def fresh_executors(monkeypatch):
    monkeypatch.setattr(dockerengine, "_executors", {})
    yield
    for executor in dockerengine._executors.values():
        executor.shutdown(wait=False)


@pytest.fixture
def engine():
    return DockerEngine(client=None, threads=1)


@pytest.mark.parametrize(
    ("threads", "pool_size"),
    [(1, 10), (8, 10), (10, 10), (32, 32)],
)
def test_engine_calls_run_on_a_shared_pool_with_enough_connections(
    fresh_executors, threads, pool_size
):
    first, second = TFSpawner(engine_threads=threads), TFSpawner(engine_threads=threads)
    assert first.executor is second.executor
    assert first.executor._max_workers == threads
    assert first.client_kwargs == {"max_pool_size": pool_size}


def test_by_default_engine_calls_queue_on_one_thread_like_dockerspawner(fresh_executors):
    assert TFSpawner().executor._max_workers == 1


def test_admin_client_kwargs_win():
    assert TFSpawner(client_kwargs={"timeout": 30}).client_kwargs == {"timeout": 30}


def test_concurrent_reads_of_one_image_share_one_call(engine):
    calls = []

    async def read():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "files"

    async def run():
        return await asyncio.gather(*(engine._read_once(("test", "img"), read) for _ in range(5)))

    assert asyncio.run(run()) == ["files"] * 5
    assert calls == [1]


@pytest.mark.parametrize("outcome", ["result", "error", "cancel"])
def test_only_a_successful_image_file_read_is_kept(engine, outcome):
    async def run():
        read = asyncio.get_running_loop().create_future()
        engine._reads[("accounts", "img")] = read
        if outcome == "result":
            read.set_result({"passwd": "", "group": ""})
        elif outcome == "error":
            read.set_exception(OSError("container gone"))
            read.exception()  # retrieved, so asyncio does not warn
        else:
            read.cancel()
        engine._forget_failed_read(("accounts", "img"), read)
        return ("accounts", "img") in engine._reads

    assert asyncio.run(run()) is (outcome == "result")
