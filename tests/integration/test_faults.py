"""Faults on the real engine: a killed hub, a restarted engine, removed containers, no registry."""

import asyncio
import os
import secrets
import signal
import subprocess
from pathlib import Path

import docker
import pytest

from tests.harness.gpus import engine_gpus, gpu_config, holders, pool_view
from tests.harness.images import REPO, push_variant, remove_local
from tfspawner import containerspec

ROOT = Path(__file__).resolve().parents[2]


def run_testbed(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "testbed"), command], capture_output=True, text=True, timeout=300
    )


def started_by_testbed(service: str) -> bool:
    # Kept per machine, so a CI clone may restart the engine another checkout started.
    run = Path(os.environ.get("TFSPAWNER_TESTBED_RUN", "/run/tfspawner-testbed"))
    started = run / "started"
    return started.exists() and service in started.read_text().split()


async def test_hub_killed_mid_storm_leaves_no_orphan_holding_a_gpu(
    hub_factory, test_image, docker_client
):
    extra = (
        "c.JupyterHub.cleanup_servers = False\n"
        "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
    )
    hub = hub_factory(gpu_config(test_image, pool=("0", "1", "2"), extra=extra))
    users = [f"k{i}" for i in range(6)]
    for user in users:
        await hub.create_user(user)
    # A running container that the hub's database never recorded, holding a GPU.
    ghost = docker_client.containers.run(
        test_image,
        ["sleep", "600"],
        detach=True,
        user="4242:100",
        environment={"NVIDIA_VISIBLE_DEVICES": "2"},
        device_requests=[
            docker.types.DeviceRequest(driver="nvidia", device_ids=["2"], capabilities=[["gpu"]])
        ],
        labels=containerspec.labels(
            hub=hub.hub_name, user="ghost", server="", image=test_image, gpu_ids=["2"]
        ),
    )
    await asyncio.gather(*(hub.request_spawn(u, options={"profile": "gpu"}) for u in users))
    await asyncio.sleep(1.5)  # some servers are up, others still starting
    hub.stop(signal.SIGKILL)
    hub.start()

    # The restarted hub checks the servers it knew of; wait until each is settled.
    for _ in range(240):
        models = {user: await hub.server_model(user) for user in users}
        if all(m is None or (m["ready"] and not m["pending"]) for m in models.values()):
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"servers still pending after the restart: {models}")
    view = await pool_view(hub)
    running = {user for user, model in models.items() if model is not None}
    for user in running:
        async with hub.client() as c:
            assert (await c.get(f"/user/{user}/api/status")).status_code == 200
    # Every GPU is held by a server the hub knows is running, or by the running
    # container it does not know, which it kept.
    assert holders(view)["2"] == "ghost"
    assert set(holders(view).values()) <= set(running) | {"ghost"}
    assert [s["user"] for s in view["not_known_to_hub"]] == ["ghost"]
    ghost.reload()
    assert ghost.status == "running"
    assert engine_gpus(hub, docker_client).keys() <= set(running) | {"ghost"}
    held = [i for ids in engine_gpus(hub, docker_client).values() for i in ids]
    assert len(held) == len(set(held))
    # The freed GPUs can be used again.
    await asyncio.gather(*(hub.stop_server(u) for u in running))
    ghost.remove(force=True)
    assert (await pool_view(hub))["free"] == 3
    assert hub.containers(docker_client) == []


async def test_container_removed_behind_the_hubs_back(hub_factory, test_image, docker_client):
    hub = hub_factory(gpu_config(test_image, pool=["0"], extra="c.Spawner.poll_interval = 1\n"))
    await hub.create_user("r")
    await hub.spawn("r", options={"profile": "gpu"})
    [container] = hub.containers(docker_client)
    container.remove(force=True)
    for _ in range(60):
        if (await pool_view(hub))["free"] == 1 and await hub.server_model("r") is None:
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail("the GPU of a removed container was not released")
    await hub.spawn("r", options={"profile": "gpu"})
    assert engine_gpus(hub, docker_client) == {"r": ["0"]}


async def test_engine_restart_with_live_restore_keeps_servers(
    hub_factory, test_image, docker_client
):
    if not started_by_testbed("dockerd"):
        pytest.skip(
            "this dockerd was not started by scripts/testbed up, so it is not ours to restart"
        )
    hub = hub_factory(gpu_config(test_image, extra="c.JupyterHub.cleanup_servers = False\n"))
    for user in ("e1", "e2", "e3"):
        await hub.create_user(user)
    await hub.spawn("e1", options={"profile": "gpu"})
    await hub.spawn("e2", options={"profile": "gpu"})
    before = engine_gpus(hub, docker_client)
    started = {c.id: c.attrs["State"]["StartedAt"] for c in hub.containers(docker_client)}

    result = run_testbed("restart-engine")
    assert result.returncode == 0, result.stderr

    after_containers = hub.containers(docker_client)
    assert {c.id: c.attrs["State"]["StartedAt"] for c in after_containers} == started
    assert engine_gpus(hub, docker_client) == before
    for user in ("e1", "e2"):
        async with hub.client() as c:
            assert (await c.get(f"/user/{user}/api/status")).status_code == 200
    assert holders(await pool_view(hub)) == {ids[0]: u for u, ids in before.items()}
    await hub.spawn("e3", options={"profile": "gpu"})
    taken = {i for ids in before.values() for i in ids}
    assert set(engine_gpus(hub, docker_client)["e3"]).isdisjoint(taken)


@pytest.fixture
def registry_down():
    if not started_by_testbed("registry"):
        pytest.skip(
            "this registry was not started by scripts/testbed up, so it is not ours to stop"
        )
    result = run_testbed("stop-registry")
    assert result.returncode == 0, result.stderr
    yield
    result = run_testbed("up")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def absent_image(docker_client, test_image):
    pinned, image_id = push_variant(docker_client, test_image, secrets.token_hex(4), "offline")
    remove_local(docker_client, image_id)
    return pinned


async def test_registry_down(hub_factory, test_image, absent_image, registry_down, docker_client):
    profiles = [
        {"slug": "present", "display_name": "Present", "image": "present", "default": True},
        {"slug": "absent", "display_name": "Absent", "image": "absent"},
    ]
    hub = hub_factory(
        f"c.TFSpawner.images = {{'present': {test_image!r}, 'absent': {absent_image!r}}}\n"
        f"c.TFSpawner.profiles = {profiles!r}\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
    )
    await hub.create_user("p")
    await hub.create_user("a")
    await hub.spawn("p", options={"profile": "present"})
    r = await hub.request_spawn("a", options={"profile": "absent"})
    assert r.status_code == 503
    assert "could not be downloaded right now, so it was not started" in r.json()["message"]
    assert [c.labels["tfspawner.user"] for c in hub.containers(docker_client)] == ["p"]
    assert absent_image.startswith(REPO) and os.environ["TFSPAWNER_TEST_REGISTRY"] in absent_image
