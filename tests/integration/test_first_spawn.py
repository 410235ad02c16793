"""The first spawns through a real hub, proxy and engine."""

import httpx
import jupyterhub

from tfspawner import containerspec


async def test_spawn_reaches_server_through_proxy(hub_factory, test_image, docker_client):
    hub = hub_factory(
        f"c.TFSpawner.image = {test_image!r}\nc.TFSpawner.notebook_dir = '/home/jovyan'\n"
    )
    await hub.create_user("alice")
    await hub.spawn("alice")

    async with hub.client() as c:
        r = await c.get("/user/alice/api/status")
    assert r.status_code == 200, r.text

    [container] = hub.containers(docker_client)
    attrs = container.attrs
    labels = attrs["Config"]["Labels"]
    assert labels[containerspec.LABEL_USER] == "alice"
    assert labels[containerspec.LABEL_SERVER] == ""
    assert labels[containerspec.LABEL_IMAGE] == test_image
    assert attrs["Config"]["Image"] == test_image
    uid = attrs["Config"]["User"].split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert "NVIDIA_VISIBLE_DEVICES=void" in attrs["Config"]["Env"]
    assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in attrs["HostConfig"]["SecurityOpt"]
    assert not attrs["HostConfig"]["DeviceRequests"]

    await hub.stop_server("alice")
    assert hub.containers(docker_client) == []
    async with hub.client() as c:
        r = await c.get("/user/alice/api/status", follow_redirects=False)
    assert r.status_code != 200


async def test_tf_standin_runs_tensorflow_29_in_a_kernel(hub_factory, tf_image):
    hub = hub_factory(f"c.TFSpawner.image = {tf_image!r}\n")
    await hub.create_user("student")
    await hub.spawn("student")

    out = await hub.run_code(
        "student",
        "import os, tensorflow as tf, jupyterhub\n"
        "print(tf.__version__)\nprint(jupyterhub.__version__)\nprint(os.getuid())\n"
        "print(os.getcwd())\n"
        "for path in ('/tf', '/tf/tensorflow-tutorials'):\n"
        "    print(f'{os.stat(path).st_uid}:{os.stat(path).st_mode & 0o777:o}')",
    )
    tf_version, singleuser_version, uid, cwd, notebooks, tutorials = out.split()
    assert tf_version == "2.9.3"
    assert int(uid) > 0
    assert cwd == "/tf"
    # The new volume, and the tutorials the image keeps there, are the student's.
    assert notebooks == f"{uid}:700"
    assert tutorials.split(":")[0] == uid

    # The hub runs this environment's jupyterhub: 6.x in the main run, so a
    # 6.x hub drives the 5.x single-user server; 5.x in the compatibility run.
    hub_version = httpx.get(f"{hub.url}/hub/api/").json()["version"]
    assert hub_version == jupyterhub.__version__
    assert singleuser_version.startswith("5."), singleuser_version
