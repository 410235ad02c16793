"""One validation path: REST bodies are checked exactly like the form."""

import pytest

from tests.harness.options import options_config


@pytest.fixture
async def hub(hub_factory, test_image):
    hub = hub_factory(options_config(test_image))
    await hub.create_user("s")
    return hub


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"image": "evil/root:latest"}, "Unknown server option(s): image"),
        ({"profile": "cpu", "mem_limit": "1T"}, "Unknown server option(s): mem_limit"),
        ({"profile": "nope"}, "There is no profile called 'nope'. Choose one of: cpu, gpu."),
        ({"profile": ["gpu"]}, "The profile must be given as text"),
        ({"profile": "lab"}, "You are not allowed to use the profile 'lab'."),
    ],
)
async def test_bad_bodies_get_400_and_start_nothing(hub, docker_client, body, message):
    r = await hub.request_spawn("s", options=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    assert hub.containers(docker_client) == []
    assert hub.volumes(docker_client) == []
    async with hub.client() as c:
        assert (await c.get("/hub/api/tfspawner/gpus")).json()["free"] == 2


async def test_form_posts_go_through_the_same_check(hub, docker_client):
    browser = await hub.login("s")
    await browser.get("/hub/spawn")
    xsrf = browser.cookies.get("_xsrf", "")
    r = await browser.post("/hub/spawn", data={"profile": "lab", "_xsrf": xsrf})
    await browser.aclose()
    assert "Error: You are not allowed to use the profile &#39;lab&#39;." in r.text
    assert hub.containers(docker_client) == []


async def test_group_members_may_use_group_profiles(hub, docker_client):
    async with hub.client() as c:
        r = await c.post("/hub/api/groups/lab", json={"users": ["s"]})
        assert r.status_code == 201, r.text
    model = await hub.spawn("s", options={"profile": "lab"})
    assert model["user_options"] == {"profile": "lab"}


async def test_admin_start_without_options_reuses_the_last_profile(hub, docker_client):
    await hub.spawn("s", options={"profile": "gpu"})
    await hub.stop_server("s")
    # The admin panel's "Start Server" sends no body.
    async with hub.client() as c:
        r = await c.post("/hub/api/users/s/server")
    assert r.status_code in (201, 202)
    model = await hub.wait_ready("s")
    assert model["user_options"] == {"profile": "gpu"}
    [container] = hub.containers(docker_client)
    assert container.labels["tfspawner.profile"] == "gpu"
    assert container.labels["tfspawner.gpus"] in ("0", "1")


async def test_full_pool_is_explained_on_the_spawn_page(hub, docker_client):
    for user in ("t", "u", "v"):
        await hub.create_user(user)
    await hub.spawn("t", options={"profile": "gpu"})
    await hub.spawn("u", options={"profile": "gpu"})
    browser = await hub.login("v")
    form = await browser.get("/hub/spawn")
    assert "0 of 2 GPUs free" in form.text
    xsrf = browser.cookies.get("_xsrf", "")
    page = await browser.post("/hub/spawn", data={"profile": "gpu", "_xsrf": xsrf})
    await browser.aclose()
    assert page.status_code == 503
    assert "All 2 GPUs are in use right now; pick a CPU profile or try again later." in page.text
    assert len(hub.containers(docker_client)) == 2
