"""The admins' page /hub/tfspawner in a real hub and a real headless Chromium."""

import asyncio
import datetime
import random
import shutil
import signal
import time
from pathlib import Path

import docker
import pytest
from playwright.async_api import async_playwright, expect

from tests.harness.gpus import gpu_config, pool_view
from tfspawner import containerspec

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium keeps calling out to Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEEP = "c.JupyterHub.cleanup_servers = False\n"
# Stand-in GPU ids that other tests on the shared engine (and other runs of this
# one) do not use: every container on the engine that holds a pool id counts.
POOL = tuple(str(n) for n in sorted(random.sample(range(100, 10_000), 3)))
VIEWPORT = {"width": 1280, "height": 1000}
# A user name that is markup: the page and its refresh must show it as text.
MARKUP_USER = "<img src=x onerror=alert(1)>"


@pytest.fixture
async def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; run scripts/testbed up")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def login(browser, hub, name, **context_args):
    context = await browser.new_context(viewport=VIEWPORT, **context_args)
    page = await context.new_page()
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", name)
    await page.fill("#password_input", "any")
    await page.click("#login_submit")
    await page.wait_for_url("**/hub/**")
    return page


def holder_of(view: dict, user: str) -> str:
    (gpu,) = [g["id"] for g in view["gpus"] if (g["held_by"] or {}).get("user") == user]
    return gpu


def running(hub, docker_client, user: str) -> list:
    found = []
    for container in hub.containers(docker_client):
        container.reload()
        if container.status == "running" and container.labels[containerspec.LABEL_USER] == user:
            found.append(container)
    return found


def stray_server(hub, image: str, docker_client, user: str, gpu: str):
    """A running labelled server of this hub that its database never had, holding ``gpu``."""
    return docker_client.containers.run(
        image,
        ["sleep", "600"],
        detach=True,
        user="4242:100",
        environment={"NVIDIA_VISIBLE_DEVICES": gpu},
        device_requests=[
            docker.types.DeviceRequest(driver="nvidia", device_ids=[gpu], capabilities=[["gpu"]])
        ],
        labels=containerspec.labels(
            hub=hub.hub_name, user=user, server="", image=image, gpu_ids=[gpu]
        ),
    )


async def test_admin_sees_the_pool_and_removes_a_server_the_hub_lost(
    hub_factory, test_image, docker_client, browser
):
    hub = hub_factory(gpu_config(test_image, pool=POOL, extra=KEEP))
    await hub.create_user("lost")
    await hub.spawn("lost", options={"profile": "gpu"})
    lost_gpu = holder_of(await pool_view(hub), "lost")
    # The database is lost; the server keeps running and keeps its GPU.
    hub.stop(signal.SIGKILL)
    (hub.dir / "jupyterhub.sqlite").unlink()
    hub.start()
    await hub.create_user("holder")
    await hub.spawn("holder", options={"profile": "gpu"})
    view = await pool_view(hub)
    held = holder_of(view, "holder")
    assert holder_of(view, "lost") == lost_gpu, view
    (free,) = {g["id"] for g in view["gpus"]} - {held, lost_gpu}

    page = await login(browser, hub, "admin")
    await page.goto(f"{hub.url}/hub/home")
    nav = page.locator("#tfspawner-nav")
    await expect(nav).to_be_visible()
    await page.screenshot(path=SCREENSHOTS / "admin-01-nav-bar.png")
    await nav.click()
    await page.wait_for_url("**/hub/tfspawner")
    # The hub's own page: its navigation bar and theme toggle.
    await expect(page.locator("#dark-theme-toggle")).to_be_visible()
    await expect(page.locator("#summary")).to_have_text("1 of 3 GPUs free.")
    row = page.locator(f"#gpu-{held}")
    await expect(row).to_contain_text("holder")
    await expect(row).to_contain_text("gpu")
    await expect(row.locator("td.held")).to_have_text("held")
    await expect(page.locator(f"#gpu-{lost_gpu}")).to_contain_text("not known to the hub")
    await expect(page.locator(f"#gpu-{free}")).to_contain_text("free")
    unknown = page.locator("#not-known-to-hub tbody tr")
    await expect(unknown).to_have_count(1)
    await expect(unknown.first).to_contain_text("lost")
    await expect(unknown.first).to_contain_text(lost_gpu)
    await expect(page.locator("#tfspawner-images")).to_contain_text("small")
    await expect(page.locator("#tfspawner-catalogue")).to_contain_text("TFSpawner.images")
    await expect(page.locator("#tfspawner-queue-summary")).to_be_visible()
    await page.screenshot(path=SCREENSHOTS / "admin-02-page.png", full_page=True)

    # The page refreshes itself: a server started now appears without a reload.
    await page.evaluate("window.notReloaded = true")
    stray = stray_server(hub, test_image, docker_client, MARKUP_USER, free)
    try:
        markup_row = page.locator("#not-known-to-hub tbody tr", has_text=MARKUP_USER)
        await expect(markup_row).to_have_count(1, timeout=20_000)
        await expect(page.locator(f"#gpu-{free} td").nth(3)).to_have_text(MARKUP_USER)
        assert await page.evaluate("window.notReloaded") is True
        # Markup in a name is text, in the rendered page too.
        await page.reload()
        await expect(markup_row).to_have_count(1)
        assert await page.locator("#not-known-to-hub img").count() == 0
        await page.screenshot(path=SCREENSHOTS / "admin-03-markup-name.png", full_page=True)
    finally:
        stray.remove(force=True)
    await expect(page.locator("#not-known-to-hub tbody tr")).to_have_count(1, timeout=20_000)

    # A GET changes nothing, and a POST without the hub's _xsrf token is refused.
    session = await hub.login("admin")
    try:
        r = await session.get("/hub/tfspawner/remove", params={"user": "lost"})
        assert r.status_code == 200 and "Remove the server lost?" in r.text
        r = await session.post("/hub/tfspawner/remove", data={"user": "lost", "server": ""})
        assert r.status_code == 403, r.text
        # The hub's own servers are refused.
        r = await session.post(
            "/hub/tfspawner/remove",
            data={"user": "holder", "server": "", "_xsrf": session.cookies.get("_xsrf", "")},
        )
        assert r.status_code == 409, r.text
    finally:
        await session.aclose()
    assert running(hub, docker_client, "lost")
    assert running(hub, docker_client, "holder")

    # Remove, confirm, and the container is gone; the volume stays.
    volumes = {v.name for v in hub.volumes(docker_client)}
    await unknown.first.get_by_role("link", name="Remove").click()
    await expect(page.get_by_role("heading", name="Remove the server lost?")).to_be_visible()
    await page.screenshot(path=SCREENSHOTS / "admin-04-remove-confirm.png", full_page=True)
    await page.locator("#tfspawner-confirm-remove").click()
    await page.wait_for_url("**/hub/tfspawner?removed=lost")
    await expect(page.locator("#tfspawner-message")).to_contain_text("Removed the server lost")
    await expect(page.locator("#not-known-to-hub tbody tr")).to_have_text(
        "None: the hub knows every running server."
    )
    await expect(page.locator("#summary")).to_have_text("2 of 3 GPUs free.")
    await page.screenshot(path=SCREENSHOTS / "admin-05-removed.png", full_page=True)
    assert running(hub, docker_client, "lost") == []
    assert running(hub, docker_client, "holder")
    assert {v.name for v in hub.volumes(docker_client)} == volumes
    assert (await pool_view(hub))["not_known_to_hub"] == []

    # Without JavaScript the page is the same tables.
    plain = await login(browser, hub, "admin", java_script_enabled=False)
    await plain.goto(f"{hub.url}/hub/tfspawner")
    await expect(plain.locator(f"#gpu-{held}")).to_contain_text("holder")
    await expect(plain.locator("#summary")).to_have_text("2 of 3 GPUs free.")
    await plain.screenshot(path=SCREENSHOTS / "admin-06-no-javascript.png", full_page=True)


async def test_a_student_gets_403_and_no_link(hub_factory, test_image, browser):
    hub = hub_factory(gpu_config(test_image, pool=POOL[:1]))
    await hub.create_user("student")
    page = await login(browser, hub, "student")
    await page.goto(f"{hub.url}/hub/home")
    await expect(page.get_by_role("link", name="Token")).to_be_visible()
    assert await page.locator("#tfspawner-nav").count() == 0
    response = await page.goto(f"{hub.url}/hub/tfspawner")
    assert response.status == 403
    # The hub's own error page, with its navigation bar, still without the link.
    await expect(page.locator("#dark-theme-toggle")).to_be_visible()
    assert await page.locator("#tfspawner-nav").count() == 0
    assert "GPUs & servers" not in await page.title()
    await page.screenshot(path=SCREENSHOTS / "admin-07-student-403.png", full_page=True)
    session = await hub.login("student")
    try:
        for path in ("/hub/tfspawner/remove?user=x", "/hub/api/tfspawner/gpus"):
            assert (await session.get(path)).status_code == 403, path
        r = await session.post(
            "/hub/tfspawner/remove",
            data={"user": "x", "_xsrf": session.cookies.get("_xsrf", "")},
        )
        assert r.status_code == 403
    finally:
        await session.aclose()


async def test_refresh_fills_the_queue_and_node_columns_from_the_api(
    hub_factory, test_image, browser
):
    # The API's answer, with a boot queue and Swarm nodes added on the way to the
    # browser: what the refresh script makes of data this hub does not have yet.
    hub = hub_factory(gpu_config(test_image, pool=POOL[:2]))
    page = await login(browser, hub, "admin")

    async def with_queue(route):
        response = await route.fetch()
        view = await response.json()
        now = datetime.datetime.now(datetime.timezone.utc)
        for gpu, node in zip(view["gpus"], ("node-a", "node-b"), strict=True):
            gpu["node"] = node
        view["boot_queue"] = {
            "slots": 1,
            "length": 2,
            "median_boot_s": 12.4,
            "booting": [{"label": "ann", "since": now.isoformat(), "elapsed_s": 3}],
            "waiting": [
                {
                    "label": MARKUP_USER,
                    "place": 1,
                    "since": now.isoformat(),
                    "waited_s": 2,
                    "estimate_s": 21,
                },
                {"label": "cy", "place": 2, "since": now.timestamp() - 150, "waited_s": 1},
            ],
        }
        await route.fulfill(response=response, json=view)

    await page.route("**/hub/api/tfspawner/gpus", with_queue)
    await page.goto(f"{hub.url}/hub/tfspawner")
    summary = page.locator("#tfspawner-queue-summary")
    await expect(summary).to_have_text(
        "No boot queue on this hub: servers boot as soon as they are asked for."
    )
    await expect(summary).to_have_text(
        "2 waiting; 1 of 1 boot slots in use; median boot time 12 s.", timeout=20_000
    )
    rows = page.locator("#tfspawner-queue tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_contain_text("booting")
    await expect(rows.nth(1).locator("td").nth(1)).to_have_text(MARKUP_USER)
    await expect(rows.nth(1).locator("td").nth(4)).to_have_text("21 s")
    await expect(rows.nth(2).locator("td").nth(2)).to_contain_text("UTC (2 min)")
    assert await page.locator("#tfspawner-queue img").count() == 0
    await expect(page.locator("#tfspawner-gpus thead th").first).to_have_text("Node")
    await expect(page.locator(f"#gpu-{POOL[1]} td").first).to_have_text("node-b")
    await page.screenshot(path=SCREENSHOTS / "admin-09-queue-and-nodes-refresh.png", full_page=True)


async def test_admin_sees_users_waiting_in_the_boot_queue(
    hub_factory, test_image, docker_client, browser
):
    hub = hub_factory(gpu_config(test_image, pool=POOL, extra="c.TFSpawner.boot_slots = 1\n"))
    users = [f"storm{i}" for i in range(8)]
    for user in users:
        await hub.create_user(user)
    page = await login(browser, hub, "admin")
    # The hub answers a spawn request only after its slow_spawn_timeout (10 s)
    # when the server is not up yet, so the line is watched while they are in flight.
    requests = [asyncio.ensure_future(hub.request_spawn(user)) for user in users]
    # One boots at a time, so the others wait. Servers boot in seconds here:
    # load the page the moment the API shows a line.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queue = (await pool_view(hub)).get("boot_queue") or {}
        if len(queue.get("waiting", [])) >= 2:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"no queue seen: {queue}")
    await page.goto(f"{hub.url}/hub/tfspawner")
    table = page.locator("#tfspawner-queue")
    await expect(table).to_be_visible()
    rows = table.locator("tbody tr")
    await expect(rows.first).to_contain_text("booting")
    await expect(rows.nth(1).locator("td").first).to_have_text("1")
    await expect(rows.nth(1)).to_contain_text("storm")
    await expect(rows.nth(2).locator("td").first).to_have_text("2")
    summary = page.locator("#tfspawner-queue-summary")
    await expect(summary).to_contain_text("of 1 boot slots in use")
    await page.screenshot(path=SCREENSHOTS / "admin-08-boot-queue.png", full_page=True)
    responses = await asyncio.gather(*requests)
    assert all(r.status_code in (201, 202) for r in responses), [r.text for r in responses]
    for user in users:
        await hub.wait_ready(user, timeout=240)
    # The page's refresh catches up: nobody waits, and the boots give a median.
    await expect(summary).to_contain_text("0 waiting", timeout=20_000)
    await expect(summary).not_to_contain_text("not known yet")
