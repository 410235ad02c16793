"""TFSwarmSpawner on the real three-node swarm: a real hub, proxy and servers on the workers.

The hub runs on this host at the test bed's address on the nodes' bridge and
reaches the tasks over the attachable overlay. GPUs, nodes and images are read
back from the Swarm manager, never from the hub alone.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import docker
import pytest

from tests.harness.hubprocess import new_hub
from tests.harness.swarm import ROOT, Swarm, read_swarm_env, wait_for
from tfspawner import containerspec, swarmspec

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def swarm():
    env = read_swarm_env()
    if env is None:
        reason = "no .testbed/swarm.env; run `scripts/testbed swarm up`"
        if os.environ.get("TFSPAWNER_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"swarm test cannot run: {reason}", pytrace=False)
        pytest.skip(reason)
    return Swarm.from_env(env)


@pytest.fixture
def manager(swarm):
    client = swarm.client()
    yield client
    client.close()


def swarm_config(swarm: Swarm, image: str, extra: str = "") -> str:
    profiles = [
        {"slug": "cpu", "display_name": "CPU", "image": "small", "default": True},
        {"slug": "gpu", "display_name": "1 GPU", "image": "small", "gpus": 1},
        {"slug": "tf", "display_name": "TF", "image": "tf"},
    ]
    return (
        'c.JupyterHub.spawner_class = "tfswarmspawner"\n'
        f"c.TFSwarmSpawner.manager_url = {swarm.host!r}\n"
        f"c.TFSwarmSpawner.network_name = {swarm.network!r}\n"
        f"c.TFSpawner.images = {{'small': {image!r}, 'tf': {os.environ['TFSPAWNER_TEST_TF_IMAGE']!r}}}\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
        f"c.TFSpawner.profiles = {profiles!r}\n"
        "c.TFSpawner.boot_slots = 2\n"
        "c.JupyterHub.cleanup_servers = False\n"
        "c.Spawner.poll_interval = 3\n" + extra
    )


def containers_of(client, label: str) -> list:
    # A container may go between the list and its inspect.
    try:
        return client.containers.list(all=True, filters={"label": label})
    except docker.errors.NotFound:
        return [None]


def remove_hub_objects(swarm: Swarm, hub_name: str) -> None:
    """The hub's services, then its volumes on every node once the containers are gone."""
    label = f"{containerspec.LABEL_HUB}={hub_name}"
    client = swarm.client()
    try:
        for service in client.services.list(filters={"label": label}):
            service.remove()
    finally:
        client.close()
    for node in swarm.nodes:
        try:
            node_client = node.client()
            wait_for(
                f"{hub_name}'s containers gone on {node.name}",
                lambda c=node_client: not containers_of(c, label),
                timeout=40,
            )
            for volume in node_client.volumes.list(filters={"label": label}):
                volume.remove(force=True)
            node_client.close()
        except Exception as e:  # a node the test killed may still be coming back
            print(f"cleanup on {node.name}: {e}")
    # The passwd configs and the hub's lease, once no task uses them.
    client = swarm.client()
    try:
        for config in client.configs.list(filters={"label": label}) + client.configs.list(
            filters={"label": f"tfspawner.lease={hub_name}"}
        ):
            try:
                config.remove()
            except docker.errors.APIError as e:
                print(f"config {config.name} left: {e}")
    finally:
        client.close()


def service_logs(swarm: Swarm, hub_name: str) -> str:
    client = swarm.client()
    parts = []
    try:
        for service in client.services.list(
            filters={"label": f"{containerspec.LABEL_HUB}={hub_name}"}
        ):
            logs = b"".join(service.logs(stdout=True, stderr=True, tail=40))
            parts.append(f"--- service {service.name} ---\n{logs.decode(errors='replace')}")
    finally:
        client.close()
    return "\n".join(parts)


@pytest.fixture
def swarm_hub(swarm, tmp_path, request):
    hubs = []

    def start(extra: str = "", image: str | None = None):
        hub = new_hub(
            tmp_path / f"hub{len(hubs)}",
            swarm.hub_ip,
            swarm_config(swarm, image or os.environ["TFSPAWNER_TEST_IMAGE"], extra),
        )
        hubs.append(hub)
        hub.start()
        return hub

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for hub in hubs:
        if failed:
            print(f"\n=== hub {hub.hub_name} log ===\n{hub.log_tail(150)}")
            print(service_logs(swarm, hub.hub_name))
        hub.stop()
        remove_hub_objects(swarm, hub.hub_name)


def live_services(manager, hub) -> dict:
    """user -> (service labels, running task) of this hub's services, from the manager."""
    found = {}
    for service in manager.services.list(
        filters={"label": f"{containerspec.LABEL_HUB}={hub.hub_name}"}
    ):
        tasks = [t for t in service.tasks() if t["Status"]["State"] == "running"]
        if tasks:
            labels = service.attrs["Spec"]["Labels"]
            found[labels[containerspec.LABEL_USER]] = (labels, tasks[0])
    return found


def task_container(swarm: Swarm, task: dict) -> dict:
    """The task's container, inspected on the node that runs it."""
    client = swarm.node(task["NodeID"]).client()
    try:
        return client.api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
    finally:
        client.close()


def exec_on_node(swarm: Swarm, task: dict, command: list[str]) -> str:
    client = swarm.node(task["NodeID"]).client()
    try:
        container = client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        code, out = container.exec_run(command)
        assert code == 0, out
        return out.decode().strip()
    finally:
        client.close()


def gpu_pairs(swarm: Swarm, found: dict) -> dict:
    """user -> (node name, GPU UUIDs) as the node's container got them."""
    pairs = {}
    for user, (_, task) in found.items():
        env = dict(e.partition("=")[::2] for e in task_container(swarm, task)["Config"]["Env"])
        pairs[user] = (swarm.node(task["NodeID"]).name, env["NVIDIA_VISIBLE_DEVICES"])
    return pairs


async def pool_holders(hub) -> dict:
    async with hub.client() as c:
        r = await c.get("/hub/api/tfspawner/gpus")
    assert r.status_code == 200, r.text
    return {g["id"]: g["held_by"]["user"] for g in r.json()["gpus"] if g["held_by"]}


async def test_servers_land_on_each_worker_confined(swarm_hub, swarm, manager):
    hub = swarm_hub()
    users = ["ada", "bob"]
    for user in users:
        await hub.create_user(user)
    await asyncio.gather(*(hub.spawn(user) for user in users))
    found = live_services(manager, hub)
    assert {task["NodeID"] for _, task in found.values()} == {w.id for w in swarm.workers}
    for user, (labels, task) in found.items():
        assert labels[swarmspec.LABEL_NODE] == task["NodeID"]
        assert labels[containerspec.LABEL_GPUS] == ""
        info = task_container(swarm, task)
        # CPU servers see no GPU, and never ask Swarm for NVIDIA-GPU=0.
        assert "NVIDIA_VISIBLE_DEVICES=void" in info["Config"]["Env"]
        assert not (task["Spec"]["Resources"].get("Reservations") or {}).get("GenericResources")
        assert info["Config"]["Labels"][containerspec.LABEL_USER] == user
        assert info["Config"]["Image"] == os.environ["TFSPAWNER_TEST_IMAGE"]
        host = info["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["Init"] and not host["Privileged"]
        assert host["PidsLimit"] > 0
        uid, _ = info["Config"]["User"].split(":")
        assert uid != "0"
        # The passwd entry from the config mount names the user.
        assert exec_on_node(swarm, task, ["id", "-un"]) in (user, f"u-{user}")
        assert exec_on_node(swarm, task, ["id", "-u"]) == uid
        async with hub.client() as c:
            assert (await c.get(f"/user/{user}/api/status")).status_code == 200


async def test_eight_gpu_spawns_on_six_gpus_and_a_hub_restart(swarm_hub, swarm, manager):
    hub = swarm_hub()
    users = [f"student{i}" for i in range(8)]
    for user in users:
        await hub.create_user(user)
    responses = await asyncio.gather(
        *(hub.request_spawn(user, options={"profile": "gpu"}) for user in users)
    )
    started = [u for u, r in zip(users, responses, strict=True) if r.status_code in (201, 202)]
    refused = [r for r in responses if r.status_code not in (201, 202)]
    assert len(started) == 6, [(r.status_code, r.text) for r in responses]
    for r in refused:
        assert r.status_code == 503
        assert "All 6 GPUs are in use right now; pick a CPU profile" in r.json()["message"]
    await asyncio.gather(*(hub.wait_ready(user) for user in started))

    found = live_services(manager, hub)
    assert sorted(found) == sorted(started)
    pairs = gpu_pairs(swarm, found)
    print("8 GPU spawns on 6 GPUs:", sorted(pairs.values()))
    assert len(set(pairs.values())) == 6
    everything = {(w.name, g) for w in swarm.workers for g in w.gpus}
    assert set(pairs.values()) == everything
    for user, (labels, task) in found.items():
        assert labels[containerspec.LABEL_GPUS] == pairs[user][1]
        assert swarmspec.pinned_gpus_from_task(task) == (pairs[user][1],)
    assert await pool_holders(hub) == {gpu: user for user, (_, gpu) in pairs.items()}

    # A hub restart: the labels give every GPU back to its holder.
    hub.stop()
    hub.start()
    assert await pool_holders(hub) == {gpu: user for user, (_, gpu) in pairs.items()}
    for user in started:
        assert (await hub.server_model(user))["ready"]
    late = users[[u not in started for u in users].index(True)]
    r = await hub.request_spawn(late, options={"profile": "gpu"})
    assert r.status_code == 503, r.text
    # One stop frees exactly its GPU, which the next spawn gets.
    await hub.stop_server(started[0])
    await hub.spawn(late, options={"profile": "gpu"})
    pairs_after = gpu_pairs(swarm, live_services(manager, hub))
    assert pairs_after[late] == pairs[started[0]]
    assert len(set(pairs_after.values())) == 6


async def test_a_file_survives_stop_and_start_on_the_same_node(swarm_hub, swarm, manager):
    hub = swarm_hub()
    await hub.create_user("carol")
    await hub.spawn("carol")
    node = live_services(manager, hub)["carol"][1]["NodeID"]
    async with hub.client() as c:
        r = await c.put(
            "/user/carol/api/contents/kept.txt",
            json={"type": "file", "format": "text", "content": "still here"},
        )
        assert r.status_code in (200, 201), r.text
    await hub.stop_server("carol")
    # Another user's server in between takes the emptier node: placement is not luck.
    await hub.create_user("dave")
    await hub.spawn("dave")
    await hub.spawn("carol")
    labels, task = live_services(manager, hub)["carol"]
    assert task["NodeID"] == node == labels[swarmspec.LABEL_NODE]
    async with hub.client() as c:
        r = await c.get("/user/carol/api/contents/kept.txt")
        assert r.status_code == 200, r.text
        assert r.json()["content"] == "still here"


def run_testbed(*args: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "testbed"), "swarm", *args], check=True, timeout=120)


async def test_a_worker_that_dies_stops_its_servers_and_frees_their_gpus(swarm_hub, swarm, manager):
    hub = swarm_hub()
    users = ["eve", "fay"]
    for user in users:
        await hub.create_user(user)
    await asyncio.gather(*(hub.spawn(u, options={"profile": "gpu"}) for u in users))
    found = live_services(manager, hub)
    victim_node = next(w for w in swarm.workers if w.name == "worker2")
    on_victim = [u for u, (_, t) in found.items() if t["NodeID"] == victim_node.id]
    survivors = [u for u in users if u not in on_victim]
    assert on_victim and survivors, "the spawns were not spread over both workers"
    try:
        run_testbed("kill-node", "worker2")
        started = time.monotonic()
        deadline = started + 90
        while await hub.server_model(on_victim[0]) is not None:
            assert time.monotonic() < deadline, "the dead node's server was not reported stopped"
            await asyncio.sleep(1)
        print(f"server on the killed node reported stopped after {time.monotonic() - started:.0f}s")
        holders = await pool_holders(hub)
        assert set(holders.values()) == set(survivors)
        assert (await hub.server_model(survivors[0]))["ready"]
        # While the node is down its GPUs are not handed out; worker1 has two left.
        await hub.create_user("gus")
        await hub.spawn("gus", options={"profile": "gpu"})
        assert live_services(manager, hub)["gus"][1]["NodeID"] != victim_node.id
    finally:
        run_testbed("up")
    wait_for(
        "worker2 ready again",
        lambda: manager.nodes.get(victim_node.id).attrs["Status"]["State"] == "ready",
        timeout=60,
    )
    # Back: the old container is gone, and new spawns never share a GPU.
    node_client = victim_node.client()
    try:
        label = f"{containerspec.LABEL_HUB}={hub.hub_name}"
        wait_for(
            "the killed node's old server gone",
            lambda: not node_client.containers.list(filters={"label": label}),
            timeout=60,
        )
    finally:
        node_client.close()
    more = ["hal", "ivy", "joe", "kim"]
    for user in [*more, "lou"]:
        await hub.create_user(user)
    responses = await asyncio.gather(
        *(hub.request_spawn(u, options={"profile": "gpu"}) for u in more)
    )
    # Two GPUs held on worker1 (the survivor and the spawn made while worker2 was
    # down); the dead server's GPU is free again, with worker2's other two.
    assert all(r.status_code in (201, 202) for r in responses), [r.text for r in responses]
    await asyncio.gather(*(hub.wait_ready(u) for u in more))
    pairs = gpu_pairs(swarm, live_services(manager, hub))
    print("after worker2 came back:", sorted(pairs.values()))
    assert len(pairs) == 6
    assert set(pairs.values()) == {(w.name, g) for w in swarm.workers for g in w.gpus}
    r = await hub.request_spawn("lou", options={"profile": "gpu"})
    assert r.status_code == 503, r.text


async def test_tensorflow_imports_in_a_kernel_on_a_worker(swarm_hub, swarm, manager, tf_image):
    hub = swarm_hub(extra="c.TFSpawner.notebook_dir = '/tf'\n")
    await hub.create_user("tess")
    await hub.spawn("tess", options={"profile": "tf"}, timeout=240)
    _, task = live_services(manager, hub)["tess"]
    assert task["NodeID"] in {w.id for w in swarm.workers}
    out = await hub.run_code("tess", "import tensorflow as tf; print(tf.__version__)", timeout=180)
    assert out.strip().startswith("2.9"), out


async def test_a_rejected_task_tells_the_user_why_in_one_sentence(swarm_hub, manager):
    """An image the registry does not have: the node rejects the task, the start ends at once."""
    missing = "127.0.0.1:5000/tfspawner-test/not-there@sha256:" + "0" * 64
    hub = swarm_hub(image=missing)
    await hub.create_user("mia")
    started = time.monotonic()
    r = await hub.request_spawn("mia")
    if r.status_code in (201, 202):
        messages = await hub.progress_messages("mia")
        message = messages[-1]
    else:
        message = r.json()["message"]
    assert "image was not found in its registry" in message, message
    # Well before the start timeout, and nothing left behind but the message.
    assert time.monotonic() - started < 60
    assert await hub.server_model("mia") is None
    assert not live_services(manager, hub)
