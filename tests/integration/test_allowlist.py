"""Container settings outside the allowlist stop the hub at start-up, or a spawn."""

import asyncio

import pytest

ESCAPE = "TFSpawner.allow_unsafe_container_settings"


def config(image: str, extra: str = "", profile: dict | None = None) -> str:
    profile = {"slug": "p", "display_name": "P", "image": "img", **(profile or {})}
    return (
        f"c.TFSpawner.images = {{'img': {image!r}}}\n"
        f"c.TFSpawner.profiles = [{profile!r}]\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n" + extra
    )


REFUSED = [
    (
        "c.TFSpawner.extra_host_config = {'binds': {'/var/run/./docker.sock': '/d.sock'}}",
        "TFSpawner.extra_host_config['binds']: host path /var/run/docker.sock exposes the Docker socket",
    ),
    (
        "c.TFSpawner.read_only_volumes = {'/var/': '/host-var'}",
        "TFSpawner.read_only_volumes['/var/']: host path /var exposes the Docker socket",
    ),
    (
        "c.TFSpawner.mounts = [{'type': 'bind', 'source': '//run//docker.sock', 'target': '/d'}]",
        "TFSpawner.mounts[0]: host path /run/docker.sock exposes the Docker socket",
    ),
    (
        "c.TFSpawner.extra_host_config = {'network_mode': 'container:tfspawner-other'}",
        "TFSpawner.extra_host_config['network_mode']: 'container:tfspawner-other' is not allowed",
    ),
    (
        "c.TFSpawner.extra_host_config = {'devices': ['/dev/fuse']}",
        "TFSpawner.extra_host_config['devices']: not allowed in a user container",
    ),
    (
        "c.TFSpawner.extra_host_config = {'security_opt': ['seccomp=unconfined']}",
        "TFSpawner.extra_host_config['security_opt']: ['seccomp=unconfined'] is not allowed",
    ),
    ("c.TFSpawner.cap_add = ['SYS_ADMIN']", "TFSpawner.cap_add: ['SYS_ADMIN'] is not allowed"),
    (
        "c.TFSpawner.extra_create_kwargs = {'image': 'busybox'}",
        "TFSpawner.extra_create_kwargs['image']: images are pinned in TFSpawner.images",
    ),
]


@pytest.mark.parametrize(("setting", "message"), REFUSED)
def test_refused_setting_stops_the_hub(hub_factory, test_image, setting, message):
    with pytest.raises(RuntimeError, match="jupyterhub exited with") as exited:
        hub_factory(config(test_image, setting + "\n"))
    assert f"TFSpawner configuration error: {message}" in str(exited.value)


def test_dataset_inside_etc_stops_the_hub(hub_factory, test_image):
    profile = {"datasets": [{"source": "/etc/ssl", "target": "/data/ssl"}]}
    with pytest.raises(RuntimeError, match="jupyterhub exited with") as exited:
        hub_factory(config(test_image, profile=profile))
    assert (
        "TFSpawner configuration error: TFSpawner.profiles['p']['datasets']: "
        "host path /etc/ssl is inside the host's /etc. "
        f"To allow it anyway, add '/etc/ssl' to {ESCAPE}"
    ) in str(exited.value)


async def test_escape_hatch_starts_the_hub_and_warns(hub_factory, test_image, docker_client):
    extra = (
        "c.TFSpawner.read_only_volumes = {'/etc/os-release': '/host-os-release'}\n"
        f"c.{ESCAPE} = ['/etc/os-release']\n"
    )
    hub = hub_factory(config(test_image, extra))
    warning = (
        f"{ESCAPE} lets these unchecked settings into user containers: "
        "TFSpawner.read_only_volumes['/etc/os-release']: /etc/os-release"
    )
    at_start = hub.log_tail(400).count(warning)
    assert at_start >= 1

    await hub.create_user("esc")
    await hub.spawn("esc")
    # Checked and warned about again at the spawn, and the bind is there.
    assert hub.log_tail(400).count(warning) > at_start
    [container] = hub.containers(docker_client)
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/host-os-release"]["Source"] == "/etc/os-release"
    assert mounts["/host-os-release"]["RW"] is False


async def test_the_socket_stays_refused_by_the_escape_hatch(hub_factory, test_image):
    extra = f"c.{ESCAPE} = ['/var/run/docker.sock']\n"
    with pytest.raises(RuntimeError, match="jupyterhub exited with") as exited:
        hub_factory(config(test_image, extra))
    assert (
        f"TFSpawner configuration error: {ESCAPE}['/var/run/docker.sock']: "
        "host path /var/run/docker.sock exposes the Docker socket"
    ) in str(exited.value)


async def test_callable_settings_are_checked_at_each_spawn(hub_factory, test_image, docker_client):
    extra = (
        "def extra_host_config(spawner):\n"
        "    if spawner.user.name == 'mallory':\n"
        "        return {'binds': {'/var/run/docker.sock': '/var/run/docker.sock'}}\n"
        "    return {'mem_limit': '1G'}\n"
        "c.TFSpawner.extra_host_config = extra_host_config\n"
    )
    hub = hub_factory(config(test_image, extra))
    await hub.create_user("alice")
    await hub.spawn("alice")

    await hub.create_user("mallory")
    r = await hub.request_spawn("mallory")
    if r.status_code in (201, 202):
        for _ in range(120):
            model = await hub.server_model("mallory")
            if model is None or not model.get("pending"):
                break
            await asyncio.sleep(0.5)
        assert model is None or not model["ready"]
    else:
        assert r.status_code == 500
    assert (
        "TFSpawner.extra_host_config['binds']: host path /var/run/docker.sock exposes the "
        "Docker socket"
    ) in hub.log_tail(400)
    users = [c.labels["tfspawner.user"] for c in hub.containers(docker_client)]
    assert users == ["alice"]
