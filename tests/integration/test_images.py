"""Pinned images against the loopback registry."""

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.images import REPO, push_variant, remove_local
from tfspawner import imageref

ROOT = Path(__file__).resolve().parents[2]


def image_config(images: dict, extra: str = "") -> str:
    profile = {"slug": "x", "display_name": "X", "image": next(iter(images))}
    return (
        f"c.TFSpawner.images = {images!r}\n"
        f"c.TFSpawner.profiles = [{profile!r}]\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n" + extra
    )


def running_image_ids(hub, docker_client) -> list[str]:
    return [c.attrs["Image"] for c in hub.containers(docker_client)]


async def test_absent_image_is_pulled_by_digest_and_runs(hub_factory, test_image, docker_client):
    pinned, image_id = push_variant(docker_client, test_image, secrets.token_hex(4), "absent")
    remove_local(docker_client, image_id)

    hub = hub_factory(image_config({"x": pinned}))
    await hub.create_user("u")
    await hub.spawn("u")
    assert running_image_ids(hub, docker_client) == [image_id]
    async with hub.client() as c:
        assert (await c.get("/user/u/api/status")).status_code == 200


async def test_moved_tag_still_gives_the_pinned_image(hub_factory, test_image, docker_client):
    tag = f"moving-{secrets.token_hex(4)}"
    pinned, first_id = push_variant(docker_client, test_image, tag, "first")
    _, second_id = push_variant(docker_client, test_image, tag, "second")  # the tag moves
    assert first_id != second_id
    remove_local(docker_client, first_id)

    pinned_with_tag = str(
        imageref.parse(pinned).__class__(*imageref.parse(pinned).__dict__.values())
    )
    hub = hub_factory(image_config({"x": pinned_with_tag}))
    await hub.create_user("u")
    await hub.spawn("u")
    [container] = hub.containers(docker_client)
    assert container.attrs["Image"] == first_id
    assert container.image.labels["tfspawner.test.marker"] == "first"
    remove_local(docker_client, second_id)


async def test_wrong_digest_is_refused_and_nothing_is_created(hub_factory, docker_client):
    missing = f"{REPO}@sha256:{secrets.token_hex(32)}"
    hub = hub_factory(image_config({"x": missing}))
    await hub.create_user("u")
    r = await hub.request_spawn("u")
    assert r.status_code == 503
    assert "could not be downloaded right now, so it was not started" in r.json()["message"]
    assert hub.containers(docker_client) == []
    assert await hub.server_model("u") is None


async def test_ten_concurrent_spawns_of_a_missing_image_pull_once(
    hub_factory, test_image, docker_client
):
    pinned, image_id = push_variant(docker_client, test_image, secrets.token_hex(4), "storm")
    remove_local(docker_client, image_id)
    hub = hub_factory(image_config({"x": pinned}))
    users = [f"s{i}" for i in range(10)]
    for user in users:
        await hub.create_user(user)

    since = int(time.time()) - 1
    await asyncio.gather(*(hub.spawn(user) for user in users))
    until = int(time.time()) + 1
    pulls = [
        e
        for e in docker_client.events(
            since=since, until=until, decode=True, filters={"type": "image", "event": "pull"}
        )
        if e["Actor"]["ID"].startswith(REPO)
    ]
    assert len(pulls) == 1, pulls
    assert running_image_ids(hub, docker_client) == [image_id] * 10


async def test_pull_progress_reaches_the_spawn_page(hub_factory, test_image, docker_client):
    pinned, image_id = push_variant(docker_client, test_image, secrets.token_hex(4), "progress")
    remove_local(docker_client, image_id)
    hub = hub_factory(
        image_config({"x": pinned}, "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n")
    )
    await hub.create_user("u")
    assert (await hub.request_spawn("u")).status_code == 202
    messages = await hub.progress_messages("u")
    pulling = [m for m in messages if m.startswith("Pulling image:")]
    assert pulling and pulling[-1] == "Pulling image: 100%", messages


def run_cli(*args, env=None) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).parent / "tfspawner"
    return subprocess.run([str(cli), *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_pin_and_pull(tmp_path, test_image, docker_client):
    tag = f"cli-{secrets.token_hex(4)}"
    pinned, image_id = push_variant(docker_client, test_image, tag, "cli")
    digest = imageref.parse(pinned).digest

    result = run_cli("images", "pin", f"{REPO}:{tag}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{REPO}:{tag}@{digest}"

    remove_local(docker_client, image_id)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"c = get_config()\nc.TFSpawner.images = {{'tf': '{REPO}:{tag}@{digest}'}}\n")
    result = run_cli("images", "pull", "-f", str(config))
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr
    assert "pulled" in result.stdout
    assert docker_client.images.get(pinned).id == image_id
    result = run_cli("images", "pull", "-f", str(config))
    assert "present" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("images", "pin", f"{REPO}:no-such-tag"), "could not resolve"),
        (("images", "pin", "Not A Reference"), "not a valid image reference"),
        (("images", "pull", "-f", "/nonexistent/jupyterhub_config.py"), "not found"),
    ],
)
def test_cli_errors_are_plain(args, message):
    result = run_cli(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_deploy_image_builds_from_the_tf_standin(tmp_path, tf_image, docker_client):
    context = tmp_path / "context"
    shutil.copytree(ROOT / "deploy" / "images", context)
    for wheel in Path(os.environ["TFSPAWNER_TEST_OFFLINE_WHEELS"]).glob("*.whl"):
        shutil.copy(wheel, context / "wheels")
    image, _ = docker_client.images.build(
        path=str(context),
        buildargs={"BASE_IMAGE": tf_image, "PIP_INSTALL_ARGS": "--no-index"},
        rm=True,
    )
    try:
        assert image.attrs["Config"]["Cmd"] == ["jupyterhub-singleuser"]
        assert image.attrs["Config"]["User"] != "" and not image.attrs["Config"]["User"].startswith(
            "0"
        )
        out = docker_client.containers.run(
            image.id,
            ["sh", "-c", "jupyterhub-singleuser --version && touch /tf/x && id -u"],
            user="4242:100",
            remove=True,
        ).decode()
        version, uid = out.split()
        assert version.startswith("5.") and uid == "4242"
    finally:
        docker_client.images.remove(image.id, force=True)


def test_deploy_image_refuses_an_unpinned_base(tmp_path, docker_client):
    context = tmp_path / "context"
    shutil.copytree(ROOT / "deploy" / "images", context)
    # A local, unpinned tag: nothing is pulled, and the build must stop at the check.
    docker_client.images.get(os.environ["TFSPAWNER_TEST_TF_IMAGE"]).tag(
        "tfspawner-test/unpinned", "x"
    )
    with pytest.raises(Exception, match="must be pinned by digest"):
        docker_client.images.build(
            path=str(context), buildargs={"BASE_IMAGE": "tfspawner-test/unpinned:x"}, rm=True
        )
