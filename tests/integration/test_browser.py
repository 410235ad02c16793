"""The pages people click, in a real headless Chromium (Debian's, no downloaded browser)."""

import random
import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from tests.harness.hubprocess import free_port
from tfspawner.poolpage import service_config

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Stand-in GPU ids that other tests on the shared engine do not hold.
GPUS = [str(n) for n in sorted(random.sample(range(100, 10_000), 2))]
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


def browser_config(tf_image: str) -> str:
    service, role = service_config(port=free_port())
    profiles = [
        {
            "slug": "cpu",
            "display_name": "TensorFlow 2.9 (CPU)",
            "description": "For coursework.",
            "image": "tf",
            "default": True,
        },
        {
            "slug": "gpu",
            "display_name": "TensorFlow 2.9 with 1 GPU",
            "description": "For training <models>.",
            "image": "tf",
            "gpus": 1,
        },
    ]
    pool = [{"id": GPUS[0], "name": "Stand-in GPU", "memory": "16GB"}, GPUS[1]]
    return (
        f"c.TFSpawner.images = {{'tf': {tf_image!r}}}\n"
        f"c.TFSpawner.profiles = {profiles!r}\n"
        f"c.TFSpawner.gpu_pool = {pool!r}\n"
        f"c.JupyterHub.services.append({service!r})\n"
        f"c.JupyterHub.load_roles.append({role!r})\n"
    )


async def login(context, hub, name):
    page = await context.new_page()
    await page.goto(f"{hub.url}/hub/login")
    await page.fill("#username_input", name)
    await page.fill("#password_input", "any")
    await page.click("#login_submit")
    return page


@pytest.fixture
async def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; run scripts/testbed up")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def test_student_picks_a_gpu_and_admin_sees_it(hub_factory, tf_image, browser):
    hub = hub_factory(browser_config(tf_image))
    await hub.create_user("student")

    student = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await login(student, hub, "student")
    await expect(page.locator("#tfspawner-profile-gpu")).to_be_visible(timeout=30_000)
    await expect(page.get_by_text("2 of 2 GPUs free")).to_be_visible()
    # Markup in a description is text.
    await expect(page.get_by_text("For training <models>.")).to_be_visible()
    await expect(page.locator("#tfspawner-profile-cpu")).to_be_checked()
    await page.screenshot(path=SCREENSHOTS / "01-options-form.png", full_page=True)

    # Keyboard only: focus the chosen radio, move to the GPU profile, submit.
    await page.focus("#tfspawner-profile-cpu")
    await page.keyboard.press("ArrowDown")
    await expect(page.locator("#tfspawner-profile-gpu")).to_be_checked()
    await page.get_by_label("TensorFlow 2.9 with 1 GPU").check()
    await page.keyboard.press("Enter")

    await page.wait_for_url("**/user/student/**", timeout=180_000)
    await expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=120_000)
    await page.screenshot(path=SCREENSHOTS / "02-jupyterlab.png")

    admin = await browser.new_context(viewport={"width": 1280, "height": 900})
    admin_page = await login(admin, hub, "admin")
    await admin_page.goto(f"{hub.url}/hub/admin")
    row = admin_page.locator("tr", has_text="student")
    await expect(row.first).to_be_visible(timeout=30_000)
    await expect(admin_page.get_by_role("columnheader", name="Profile")).to_be_visible()
    await expect(row.first.get_by_text("gpu", exact=True)).to_be_visible()
    await admin_page.screenshot(path=SCREENSHOTS / "03-admin-panel.png", full_page=True)

    # The GPU page is in the hub's navigation bar.
    await admin_page.goto(f"{hub.url}/hub/home")
    await admin_page.locator("#tfspawner-nav").click()
    await expect(admin_page.locator("#summary")).to_have_text("1 of 2 GPUs free.", timeout=30_000)
    held = admin_page.locator(f"#gpu-{GPUS[0]}")
    await expect(held).to_contain_text("student")
    await expect(held).to_contain_text("gpu")
    await admin_page.screenshot(path=SCREENSHOTS / "04-gpu-pool.png", full_page=True)
    # The former pool service, still configured here, leads to the same page.
    await admin_page.goto(f"{hub.url}/services/gpu-pool/")
    await admin_page.wait_for_url("**/hub/tfspawner")

    # A student may not open the pool page.
    other = await browser.new_context()
    await hub.create_user("other")
    other_page = await login(other, hub, "other")
    response = await other_page.goto(f"{hub.url}/hub/tfspawner")
    assert response.status == 403
