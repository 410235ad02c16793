"""The GPU pool against the real engine with the stand-in NVIDIA hook."""

import asyncio
import json
import sqlite3

import pytest

from tests.harness.gpus import engine_gpus, gpu_config, holders, pool_view


async def test_eight_gpu_spawns_on_three_gpus(hub_factory, test_image, docker_client):
    hub = hub_factory(gpu_config(test_image))
    users = [f"student{i}" for i in range(8)]
    for user in users:
        await hub.create_user(user)

    responses = await asyncio.gather(
        *(hub.request_spawn(user, options={"profile": "gpu"}) for user in users)
    )
    started = [u for u, r in zip(users, responses, strict=True) if r.status_code in (201, 202)]
    refused = [r for r in responses if r.status_code not in (201, 202)]
    assert len(started) == 3, [(r.status_code, r.text) for r in responses]
    assert len(refused) == 5
    for r in refused:
        assert r.status_code == 503
        assert "All 3 GPUs are in use right now; pick a CPU profile" in r.json()["message"]

    for user in started:
        await hub.wait_ready(user)
    assigned = engine_gpus(hub, docker_client)
    assert sorted(assigned) == sorted(started)
    assert sorted(i for ids in assigned.values() for i in ids) == ["0", "1", "2"]
    assert holders(await pool_view(hub)) == {ids[0]: user for user, ids in assigned.items()}
    # The refused spawns left nothing behind.
    assert len(hub.containers(docker_client)) == 3

    async with hub.client() as c:
        metrics = (await c.get("/hub/metrics")).text
    assert "tfspawner_gpus_total 3.0" in metrics
    assert "tfspawner_gpus_in_use 3.0" in metrics
    assert 'tfspawner_gpus_in_use_by_profile{profile="gpu"} 3.0' in metrics

    await asyncio.gather(*(hub.stop_server(user) for user in started))
    view = await pool_view(hub)
    assert view["free"] == 3 and holders(view) == {}
    assert hub.containers(docker_client) == []


async def test_cpu_server_sees_no_gpu_and_profile_is_recorded(
    hub_factory, test_image, docker_client
):
    hub = hub_factory(gpu_config(test_image))
    await hub.create_user("cpuuser")
    model = await hub.spawn("cpuuser")
    assert model["user_options"] == {"profile": "cpu"}
    [container] = hub.containers(docker_client)
    assert (
        container.attrs["HostConfig"]["DeviceRequests"] is None
        or not container.attrs["HostConfig"]["DeviceRequests"]
    )
    out = container.exec_run("sh -c 'echo $NVIDIA_VISIBLE_DEVICES'").output.decode().strip()
    assert out == "void"


async def test_progress_reports_the_assigned_gpu(hub_factory, test_image):
    hub = hub_factory(
        gpu_config(
            test_image,
            pool=[{"id": "1", "name": "NVIDIA A100", "memory": "80GB"}],
            # Answer the spawn request at once, so the stream is read while pending.
            extra="c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n",
        )
    )
    await hub.create_user("lab")
    r = await hub.request_spawn("lab", options={"profile": "gpu"})
    assert r.status_code == 202
    messages = await hub.progress_messages("lab")
    assert "Assigned GPU 1 (NVIDIA A100 80GB)" in messages, messages


async def test_killed_container_gives_its_gpu_back(hub_factory, test_image, docker_client):
    hub = hub_factory(gpu_config(test_image, pool=["0"], extra="c.Spawner.poll_interval = 1\n"))
    await hub.create_user("a")
    await hub.create_user("b")
    await hub.spawn("a", options={"profile": "gpu"})
    [container] = hub.containers(docker_client)
    container.kill()

    for _ in range(60):
        if (await pool_view(hub))["free"] == 1 and await hub.server_model("a") is None:
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"GPU not released after kill: {await pool_view(hub)}")

    await hub.spawn("b", options={"profile": "gpu"})
    assert engine_gpus(hub, docker_client) == {"b": ["0"]}


async def test_hub_restart_keeps_assignments(hub_factory, test_image, docker_client):
    hub = hub_factory(gpu_config(test_image, extra="c.JupyterHub.cleanup_servers = False\n"))
    for user in ("a", "b", "c"):
        await hub.create_user(user)
    await hub.spawn("a", options={"profile": "gpu"})
    await hub.spawn("b", options={"profile": "gpu"})
    before = engine_gpus(hub, docker_client)
    assert holders(await pool_view(hub)) == {ids[0]: user for user, ids in before.items()}

    hub.stop()
    assert engine_gpus(hub, docker_client) == before  # servers kept running
    hub.start()

    assert holders(await pool_view(hub)) == {ids[0]: user for user, ids in before.items()}
    async with hub.client() as c:
        r = await c.get("/user/a/api/status")
    assert r.status_code == 200

    await hub.spawn("c", options={"profile": "gpu"})
    after = engine_gpus(hub, docker_client)
    taken = {i for ids in before.values() for i in ids}
    assert set(after["c"]).isdisjoint(taken)
    r = await hub.request_spawn("c", server="more", options={"profile": "gpu"})
    assert r.status_code == 503


async def test_labels_win_over_the_database(hub_factory, test_image, docker_client):
    hub = hub_factory(gpu_config(test_image, extra="c.JupyterHub.cleanup_servers = False\n"))
    await hub.create_user("a")
    await hub.create_user("b")
    await hub.spawn("a", options={"profile": "gpu"})
    [labelled] = engine_gpus(hub, docker_client)["a"]
    hub.stop()

    # Make the database claim a different GPU than the running container's labels.
    wrong = "2" if labelled != "2" else "1"
    db = sqlite3.connect(hub.dir / "jupyterhub.sqlite")
    [(spawner_id, state)] = db.execute(
        "SELECT spawners.id, spawners.state FROM spawners JOIN users ON users.id = spawners.user_id "
        "WHERE users.name = 'a' AND spawners.name = ''"
    ).fetchall()
    state = json.loads(state)
    assert state["gpu_ids"] == [labelled]
    state["gpu_ids"] = [wrong]
    db.execute("UPDATE spawners SET state = ? WHERE id = ?", (json.dumps(state), spawner_id))
    db.commit()
    db.close()

    hub.start()
    assert holders(await pool_view(hub)) == {labelled: "a"}
    await hub.spawn("b", options={"profile": "gpu"})
    assert engine_gpus(hub, docker_client)["b"] != [labelled]
    assert "using the labels" in hub.log_path.read_text()


PINNED = "c.TFSpawner.image = '127.0.0.1:5000/x/y@sha256:" + "a" * 64 + "'\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "c.TFSpawner.image = '127.0.0.1:5000/x/y:latest'\n",
            "TFSpawner.image: '127.0.0.1:5000/x/y:latest' is not pinned",
        ),
        (
            "c.TFSpawner.images = {'tf': '127.0.0.1:5000/x/y@sha256:" + "a" * 64 + "'}\n"
            "c.TFSpawner.profiles = [{'slug': 'gpu', 'display_name': 'GPU', 'image': 'tf', 'gpus': 'two'}]\n",
            "TFSpawner.profiles: profile 'gpu': 'gpus' has the wrong type",
        ),
        (
            PINNED + "c.TFSpawner.gpu_pool = ['0', '0']\n",
            "TFSpawner.gpu_pool: GPU 0 is listed twice",
        ),
        # No NVIDIA driver on the test host: discovery must fail loudly.
        (PINNED + "c.TFSpawner.gpu_pool = 'auto'\n", "TFSpawner.gpu_pool = 'auto'"),
    ],
)
def test_bad_config_stops_the_hub(hub_factory, config, message):
    with pytest.raises(RuntimeError, match="jupyterhub exited") as error:
        hub_factory(config)
    assert message in str(error.value)
