"""Identity, hardening, limits and persistent notebooks in real containers."""

import asyncio
import os

import pytest

from tfspawner import volumes

SMALL = "c.TFSpawner.notebook_dir = '/home/jovyan'\n"


def config(images: dict, profiles: list, extra: str = "") -> str:
    return f"c.TFSpawner.images = {images!r}\nc.TFSpawner.profiles = {profiles!r}\n" + SMALL + extra


def one_profile(image: str, **overrides) -> str:
    profile = {"slug": "p", "display_name": "P", "image": "img", **overrides}
    return config({"img": image}, [profile])


def sh(container, script: str, user: str | None = None) -> tuple[int, str]:
    kwargs = {"user": user} if user else {}
    result = container.exec_run(["sh", "-c", script], **kwargs)
    return result.exit_code, result.output.decode().strip()


def only_container(hub, docker_client):
    [container] = hub.containers(docker_client)
    container.reload()
    return container


async def test_runs_as_the_user_with_a_writable_persistent_home(
    hub_factory, test_image, docker_client
):
    hub = hub_factory(one_profile(test_image))
    await hub.create_user("marie")
    await hub.spawn("marie")
    container = only_container(hub, docker_client)

    uid = int(container.attrs["Config"]["User"].split(":")[0])
    assert uid > 0
    assert sh(container, "whoami") == (0, "marie")
    assert sh(container, "id -un") == (0, "marie")
    assert sh(container, "echo $HOME") == (0, "/home/jovyan")
    assert sh(container, "touch $HOME/probe && stat -c '%u %a' $HOME") == (0, f"{uid} 700")
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    home = mounts["/home/jovyan"]
    assert home["Type"] == "volume" and home["RW"]
    assert home["Name"] == volumes.volume_name(hub.hub_name, "marie", "", per_server=False)


async def test_hardening(hub_factory, test_image, docker_client):
    profile = {"datasets": [{"source": "tfspawner-test-course", "target": "/data/course"}]}
    docker_client.volumes.create("tfspawner-test-course")
    hub = hub_factory(one_profile(test_image, **profile))
    await hub.create_user("h")
    await hub.spawn("h")
    container = only_container(hub, docker_client)
    host = container.attrs["HostConfig"]

    status = sh(container, "cat /proc/1/status")[1]
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"] == "0000000000000000"
    assert fields["CapBnd"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"
    assert fields["Uid"].split()[0] != "0"
    # A setuid-root binary gains nothing.
    assert sh(container, "test -u /usr/bin/su")[0] == 0
    code, out = sh(container, "su -c 'id -u' root </dev/null")
    assert code != 0 and out != "0"
    # Processes are capped.
    assert host["PidsLimit"] == 1024
    assert sh(container, "cat /sys/fs/cgroup/pids/pids.max") == (0, "1024")
    # No way to the engine or the host's network.
    assert sh(container, "test -e /var/run/docker.sock || test -e /run/docker.sock")[0] != 0
    assert host["NetworkMode"] != "host" and host["PidMode"] != "host"
    assert not host["Privileged"]
    # Shared course material is read-only.
    assert sh(container, "touch /data/course/x")[0] != 0
    assert {m["Destination"]: m["RW"] for m in container.attrs["Mounts"]}["/data/course"] is False


async def test_limits_show_in_the_engine_and_the_cgroup(hub_factory, test_image, docker_client):
    hub = hub_factory(one_profile(test_image, mem_limit="512M", cpu_limit=0.5, shm_size="256M"))
    await hub.create_user("l")
    await hub.spawn("l")
    container = only_container(hub, docker_client)
    host = container.attrs["HostConfig"]
    assert host["Memory"] == 512 * 1024**2
    assert host["CpuQuota"] == 50_000 and host["CpuPeriod"] == 100_000
    assert host["ShmSize"] == 256 * 1024**2
    assert sh(container, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes") == (
        0,
        str(512 * 1024**2),
    )
    assert sh(container, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us") == (0, "50000")
    assert sh(container, "df -k /dev/shm | awk 'NR==2 {print $2}'") == (0, "262144")


async def test_gpu_profile_gets_shm_for_nccl(hub_factory, test_image, docker_client):
    hub = hub_factory(one_profile(test_image, gpus=2) + "c.TFSpawner.gpu_pool = ['0', '1']\n")
    await hub.create_user("g")
    await hub.spawn("g")
    container = only_container(hub, docker_client)
    assert container.attrs["HostConfig"]["ShmSize"] == 4 * 1024**3


async def write_file(hub, user, path, text):
    async with hub.client() as c:
        r = await c.put(
            f"/user/{user}/api/contents/{path}",
            json={"type": "file", "format": "text", "content": text},
        )
    assert r.status_code in (200, 201), r.text


async def read_file(hub, user, path):
    async with hub.client() as c:
        r = await c.get(f"/user/{user}/api/contents/{path}")
    assert r.status_code == 200, r.text
    return r.json()["content"]


async def test_notebooks_survive_stop_removal_restart_and_image_change(
    hub_factory, test_image, tf_image, docker_client
):
    profiles = [
        {"slug": "small", "display_name": "Small", "image": "small", "default": True},
        {"slug": "tf", "display_name": "TF", "image": "tf"},
    ]
    hub = hub_factory(config({"small": test_image, "tf": tf_image}, profiles))
    await hub.create_user("ada")
    await hub.spawn("ada")
    await write_file(hub, "ada", "thesis.txt", "chapter 1")

    await hub.stop_server("ada")
    assert hub.containers(docker_client) == []  # the container is gone, the volume is not
    await hub.spawn("ada")
    assert await read_file(hub, "ada", "thesis.txt") == "chapter 1"

    hub.stop()  # cleanup_servers stops every server
    hub.start()
    await hub.spawn("ada")
    assert await read_file(hub, "ada", "thesis.txt") == "chapter 1"

    await hub.stop_server("ada")
    await hub.spawn("ada", options={"profile": "tf"})
    assert await read_file(hub, "ada", "thesis.txt") == "chapter 1"
    [container] = hub.containers(docker_client)
    assert container.attrs["Config"]["Image"] == tf_image


async def test_named_servers_share_or_separate_volumes(hub_factory, test_image, docker_client):
    hub = hub_factory(one_profile(test_image))
    await hub.create_user("n")
    await hub.spawn("n")
    await write_file(hub, "n", "shared.txt", "x")
    await hub.spawn("n", server="second")
    async with hub.client() as c:
        assert (await c.get("/user/n/second/api/contents/shared.txt")).status_code == 200

    separate = hub_factory(one_profile(test_image) + "c.TFSpawner.volume_per_server = True\n")
    await separate.create_user("n")
    await separate.spawn("n")
    await write_file(separate, "n", "mine.txt", "x")
    await separate.spawn("n", server="second")
    async with separate.client() as c:
        assert (await c.get("/user/n/second/api/contents/mine.txt")).status_code == 404
    assert len(separate.volumes(docker_client)) == 2


HOSTILE_USERS = ["a.b", "a-2eb", "a_b", "zo\u00eb", "x" * 150, "x" * 149 + "y"]


async def test_hostile_names_get_distinct_volumes(hub_factory, test_image, docker_client):
    hub = hub_factory(one_profile(test_image))
    for user in HOSTILE_USERS:
        await hub.create_user(user)
    await asyncio.gather(*(hub.spawn(user) for user in HOSTILE_USERS))
    mounted = {}
    for container in hub.containers(docker_client):
        user = container.labels["tfspawner.user"]
        [home] = [m for m in container.attrs["Mounts"] if m["Destination"] == "/home/jovyan"]
        mounted[user] = home["Name"]
    assert sorted(mounted) == sorted(HOSTILE_USERS)
    assert len(set(mounted.values())) == len(HOSTILE_USERS)
    assert len(hub.volumes(docker_client)) == len(HOSTILE_USERS)


async def test_volumes_survive_stop_and_user_deletion_unless_allowed(
    hub_factory, test_image, docker_client
):
    for allowed in (False, True):
        hub = hub_factory(
            one_profile(test_image) + f"c.TFSpawner.remove_volumes_on_user_delete = {allowed}\n"
        )
        await hub.create_user("d")
        await hub.spawn("d")
        await hub.stop_server("d")
        assert len(hub.volumes(docker_client)) == 1
        async with hub.client() as c:
            assert (await c.delete("/hub/api/users/d")).status_code == 204
        assert len(hub.volumes(docker_client)) == (0 if allowed else 1)


async def test_bind_mount_variant(hub_factory, test_image, docker_client, tmp_path):
    root = tmp_path / "homes"
    root.mkdir()
    hub = hub_factory(one_profile(test_image) + f"c.TFSpawner.volume_host_root = {str(root)!r}\n")
    await hub.create_user("b.c")
    await hub.spawn("b.c")
    await write_file(hub, "b.c", "on-host.txt", "hello")
    container = only_container(hub, docker_client)
    uid = int(container.attrs["Config"]["User"].split(":")[0])
    directory = root / volumes.volume_name(hub.hub_name, "b.c", "", per_server=False)
    assert (directory / "on-host.txt").read_text() == "hello"
    assert os.stat(directory).st_uid == uid
    assert [p.name for p in root.iterdir()] == [directory.name]


async def test_identity_strategies(hub_factory, test_image, docker_client):
    extra = (
        "c.TFSpawner.uid_strategy = 'static'\nc.TFSpawner.uid_map = {'s': '4321:4321', 'root': 0}\n"
    )
    hub = hub_factory(one_profile(test_image) + extra)
    await hub.create_user("s")
    await hub.spawn("s")
    container = only_container(hub, docker_client)
    assert sh(container, "echo $(id -u):$(id -g):$(whoami)") == (0, "4321:4321:s")

    await hub.create_user("root")
    r = await hub.request_spawn("root")
    assert r.status_code == 400
    assert "uid 0 is root; user containers never run as root" in r.json()["message"]
    assert len(hub.containers(docker_client)) == 1

    callable_hub = hub_factory(
        one_profile(test_image)
        + "async def uid_for(spawner):\n    return (7000 + len(spawner.user.name), 100)\n"
        "c.TFSpawner.uid_strategy = 'callable'\nc.TFSpawner.uid_callable = uid_for\n"
    )
    await callable_hub.create_user("abc")
    await callable_hub.spawn("abc")
    container = only_container(callable_hub, docker_client)
    assert sh(container, "id -u") == (0, "7003")


async def test_oom_kill_is_explained_and_frees_the_gpu(hub_factory, test_image, docker_client):
    # The server runs; once the test says so, a process in it outgrows the
    # limit and takes it down.
    script = (
        'jupyterhub-singleuser "$@" & while [ ! -e /tmp/go ]; do sleep 0.2; done; '
        'exec python3 -c "b = bytearray(1024 ** 3)"'
    )
    extra = (
        "c.TFSpawner.gpu_pool = ['0']\nc.Spawner.poll_interval = 1\n"
        f"c.TFSpawner.cmd = ['sh', '-c', {script!r}, 'sh']\n"
    )
    hub = hub_factory(one_profile(test_image, mem_limit="256M", gpus=1) + extra)
    await hub.create_user("oom")
    await hub.spawn("oom")
    [container] = hub.containers(docker_client)
    assert container.exec_run(["touch", "/tmp/go"]).exit_code == 0
    for _ in range(120):
        if await hub.server_model("oom") is None:
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail("server was not stopped after the OOM kill")

    browser = await hub.login("oom")
    page = await browser.get("/hub/spawn")
    await browser.aclose()
    async with hub.client() as c:
        gpus = (await c.get("/hub/api/tfspawner/gpus")).json()
    assert "Your server was stopped because it used more than its 256M memory limit" in page.text
    assert gpus["free"] == 1
    assert hub.containers(docker_client) == []
