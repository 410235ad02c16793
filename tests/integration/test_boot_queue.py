"""The boot queue on a real hub: first come first served, visible, cancellable, untimed."""

import asyncio

import docker

from tfspawner import containerspec


def queue_config(image: str, slots: int = 1, extra: str = "") -> str:
    return (
        f"c.TFSpawner.image = {image!r}\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
        f"c.TFSpawner.boot_slots = {slots}\n"
        # Answer spawn requests at once, so several wait in line together.
        "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n" + extra
    )


async def spawn_in_order(hub, users: list[str]) -> None:
    for user in users:
        r = await hub.request_spawn(user)
        assert r.status_code == 202, r.text
        # Arrival order is the order of the requests.
        await asyncio.sleep(0.3)


def start_order(hub, docker_client) -> list[str]:
    containers = hub.containers(docker_client)
    started = sorted(containers, key=lambda c: c.attrs["State"]["StartedAt"])
    return [c.labels[containerspec.LABEL_USER] for c in started]


async def test_servers_boot_one_at_a_time_in_arrival_order(hub_factory, test_image, docker_client):
    hub = hub_factory(queue_config(test_image))
    users = ["q1", "q2", "q3", "q4"]
    for user in users:
        await hub.create_user(user)
    await spawn_in_order(hub, users)
    third = asyncio.ensure_future(hub.progress_messages("q3"))
    for user in users:
        await hub.wait_ready(user)
    assert start_order(hub, docker_client) == users
    # A slot is held until the server answers: no two boots overlapped.
    spans = sorted(
        (c.attrs["State"]["StartedAt"], c.labels[containerspec.LABEL_USER])
        for c in hub.containers(docker_client)
    )
    assert [user for _, user in spans] == users
    messages = await third
    assert any("in line to start" in m for m in messages), messages


async def test_time_in_line_does_not_count_against_start_timeout(
    hub_factory, test_image, docker_client
):
    # A boot takes 1-3 s here, so the last of sixteen waits in line well past
    # start_timeout, which still leaves each boot several times what it needs.
    hub = hub_factory(queue_config(test_image, extra="c.Spawner.start_timeout = 5\n"))
    users = [f"t{i}" for i in range(1, 17)]
    for user in users:
        await hub.create_user(user)
    await spawn_in_order(hub, users[:-1])
    asked = asyncio.get_running_loop().time()
    r = await hub.request_spawn(users[-1])
    assert r.status_code == 202, r.text
    for user in users:
        await hub.wait_ready(user, timeout=240)
    waited = asyncio.get_running_loop().time() - asked
    assert waited > 5, f"the last user was ready after {waited:.1f} s: no wait to prove anything"
    assert start_order(hub, docker_client) == users


async def test_a_cancelled_spawn_leaves_the_line_at_once(hub_factory, test_image, docker_client):
    hub = hub_factory(queue_config(test_image))
    for user in ("c1", "c2", "c3"):
        await hub.create_user(user)
    await spawn_in_order(hub, ["c1", "c2", "c3"])
    async with hub.client() as c:
        r = await c.delete("/hub/api/users/c2/server")
    assert r.status_code in (202, 204), r.text
    await hub.wait_ready("c1")
    await hub.wait_ready("c3")
    assert await hub.server_model("c2") is None
    assert sorted(start_order(hub, docker_client)) == ["c1", "c3"]


async def test_metrics_show_the_queue(hub_factory, test_image):
    hub = hub_factory(queue_config(test_image))
    await hub.create_user("m1")
    await hub.spawn("m1")
    async with hub.client() as c:
        r = await c.get("/hub/metrics")
    assert r.status_code == 200, r.text
    assert "tfspawner_boot_queue_waiting 0.0" in r.text
    assert "tfspawner_boot_seconds_count 1.0" in r.text
    assert "tfspawner_boot_queue_wait_seconds_count" in r.text


def shares_by_user(hub, docker_client) -> dict[str, int]:
    # One listing call, then one inspect per server: a short-lived helper container
    # (volume set-up) may vanish between the two, so it is skipped, never inspected.
    summaries = docker_client.api.containers(
        filters={"label": f"{containerspec.LABEL_HUB}={hub.hub_name}", "status": "running"}
    )
    shares = {}
    for summary in summaries:
        labels = summary["Labels"]
        if containerspec.LABEL_INIT in labels or containerspec.LABEL_USER not in labels:
            continue
        try:
            host_config = docker_client.api.inspect_container(summary["Id"])["HostConfig"]
        except docker.errors.NotFound:
            continue
        # 0 is Docker's "not set": the default weight, 1024.
        shares[labels[containerspec.LABEL_USER]] = host_config["CpuShares"] or 1024
    return shares


async def test_the_oldest_boot_goes_first_and_every_server_ends_at_its_normal_weight(
    hub_factory, test_image, docker_client
):
    hub = hub_factory(queue_config(test_image, slots=3))
    users = ["w1", "w2", "w3"]
    for user in users:
        await hub.create_user(user)
    seen: dict[str, set[int]] = {user: set() for user in users}

    async def watch():
        while True:
            shares = await asyncio.to_thread(shares_by_user, hub, docker_client)
            for user, value in shares.items():
                seen[user].add(value)
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    try:
        await spawn_in_order(hub, users)
        for user in users:
            await hub.wait_ready(user)
    finally:
        watcher.cancel()
    # A watcher that died early would leave nothing seen: say why instead.
    if watcher.done() and not watcher.cancelled() and watcher.exception():
        raise watcher.exception()
    # w1 booted with nobody ahead of it; w2 and w3 began while w1 still booted.
    assert seen["w1"] == {1024}, seen
    assert min(seen["w2"] | seen["w3"]) < 1024, seen
    assert shares_by_user(hub, docker_client) == dict.fromkeys(users, 1024)
