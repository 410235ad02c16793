"""Attacks on a real hub and engine: forged spawn links, reused uids, hostile option bodies."""

import json
import os
import re

import pytest

from tests.harness.options import options_config
from tfspawner import volumes


def checked_profile(html: str) -> str | None:
    found = re.search(r'value="([a-z0-9-]+)"[^>]*\bchecked\b', html)
    return found.group(1) if found else None


async def running(hub, name: str) -> bool:
    return await hub.server_model(name) is not None


@pytest.fixture
async def hub(hub_factory, test_image):
    hub = hub_factory(options_config(test_image))
    for name in ("s", "other"):
        await hub.create_user(name)
    return hub


async def test_a_link_from_another_site_starts_no_server(hub, docker_client):
    browser = await hub.login("s")
    r = await browser.get("/hub/spawn?profile=gpu")
    assert r.status_code == 200, r.text
    assert not await running(hub, "s")
    assert hub.containers(docker_client) == []
    # The form is shown instead, with the linked profile chosen.
    assert checked_profile(r.text) == "gpu"
    assert "Check the server options below and press Start." in r.text
    # A link made by the hub's own page (with this session's token) still works.
    xsrf = browser.cookies.get("_xsrf", "")
    r = await browser.get(f"/hub/spawn?profile=gpu&_xsrf={xsrf}")
    await browser.aclose()
    await hub.wait_ready("s")
    assert (await hub.server_model("s"))["user_options"] == {"profile": "gpu"}


async def test_a_link_followed_by_an_admin_starts_no_server_for_another_user(hub, docker_client):
    await hub.create_user("admin", admin=True)
    browser = await hub.login("admin")
    r = await browser.get("/hub/spawn/other?profile=gpu")
    await browser.aclose()
    assert r.status_code == 200, r.text
    assert checked_profile(r.text) == "gpu"
    assert not await running(hub, "other")
    assert hub.containers(docker_client) == []


async def stored_options(hub, name: str) -> dict:
    async with hub.client() as c:
        r = await c.get(f"/hub/api/users/{name}", params={"include_stopped_servers": "1"})
    r.raise_for_status()
    return (r.json()["servers"].get("") or {}).get("user_options") or {}


async def test_refused_options_are_not_kept(hub, docker_client):
    # A 1 MB key is refused before the hub stores it.
    r = await hub.request_spawn("s", options={"k" * 1_000_000: 1})
    assert r.status_code == 413, r.text[:300]
    assert "too large" in r.json()["message"]
    assert await stored_options(hub, "s") == {}
    async with hub.client() as c:
        listing = (await c.get("/hub/api/users")).text
    assert len(listing) < 10_000
    # A refused profile leaves the last accepted options behind, not the request's.
    await hub.spawn("s", options={"profile": "gpu"})
    await hub.stop_server("s")
    r = await hub.request_spawn("s", options={"profile": "nope" * 1000})
    assert r.status_code == 400
    assert len(r.json()["message"]) < 300
    assert await stored_options(hub, "s") == {"profile": "gpu"}
    # The admin panel's Start sends no body: it starts with the last accepted options.
    async with hub.client() as c:
        r = await c.post("/hub/api/users/s/server")
    assert r.status_code in (201, 202), r.text
    await hub.wait_ready("s")
    assert (await hub.server_model("s"))["user_options"] == {"profile": "gpu"}


async def test_a_new_user_never_gets_a_deleted_users_uid(
    hub_factory, test_image, tmp_path, docker_client
):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    hub = hub_factory(
        options_config(test_image) + f"c.DockerSpawner.volumes = {{{str(shared)!r}: '/shared'}}\n"
    )
    await hub.create_user("leaver")
    await hub.spawn("leaver")
    # What the user could do in a terminal: a private file on shared storage.
    [leaver] = hub.containers(docker_client)
    result = leaver.exec_run(["sh", "-c", "umask 077; echo marks > /shared/private; id -u"])
    assert result.exit_code == 0, result.output
    old_uid = int(result.output)
    assert (shared / "private").stat().st_uid == old_uid
    await hub.stop_server("leaver")
    async with hub.client() as c:
        assert (await c.delete("/hub/api/users/leaver")).status_code == 204
    # SQLite gives the newest user's id to the next user created.
    await hub.create_user("joiner")
    await hub.spawn("joiner")
    [joiner] = hub.containers(docker_client)
    # Two execs: stdout and stderr of one arrive interleaved in any order.
    new_uid = joiner.exec_run(["id", "-u"]).output.decode().strip()
    result = joiner.exec_run(["cat", "/shared/private"])
    assert result.exit_code != 0
    assert b"Permission denied" in result.output
    assert int(new_uid) != old_uid
    registry = json.loads((hub.dir / "tfspawner-uids.json").read_text())
    assert registry["users"] == {"leaver": old_uid, "joiner": int(new_uid)}


async def test_storage_of_another_uid_is_never_handed_over(hub, docker_client, test_image):
    planted = docker_client.volumes.create(
        volumes.volume_name(hub.hub_name, "s", "", per_server=False),
        labels={"tfspawner.hub": hub.hub_name, "tfspawner.uid": "123456"},
    )
    r = await hub.request_spawn("s")
    assert r.status_code == 500, r.text
    assert "your notebook storage belongs to another user id" in r.json()["message"]
    assert hub.containers(docker_client) == []
    planted.reload()
    assert planted.attrs["Labels"]["tfspawner.uid"] == "123456"
