"""The first admin of a hub with the shipped config's native login.

Nobody can sign up under an admin name; `tfspawner admin create` makes the
account and prints a one-time password. Everything here goes over HTTP to a
real hub running the top-level jupyterhub_config.py.
"""

import contextlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.hubprocess import Hub, free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "jupyterhub_config.py"
CLI = Path(sys.executable).parent / "tfspawner"

# The shipped config as it is, on free ports so that it runs beside other hubs.
WRAPPER = """\
c = get_config()  # noqa
load_subconfig({shipped!r})  # noqa
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
"""


@pytest.fixture
def native_hub(tmp_path, tf_image, monkeypatch, docker_client):
    hub = Hub(
        dir=tmp_path,
        hub_name=f"test-admin-{secrets.token_hex(3)}",
        token="",
        proxy_port=free_port(),
        config="",
    )
    hub.config = WRAPPER.format(
        shipped=str(SHIPPED_CONFIG), hub_port=free_port(), api_port=free_port()
    )
    (tmp_path / "jupyterhub_config.py").write_text(hub.config)
    for name in [n for n in os.environ if n.startswith("TFSPAWNER_") and "_TEST_" not in n]:
        monkeypatch.delenv(name)
    settings = {
        "TFSPAWNER_IMAGE_CPU": tf_image,
        "TFSPAWNER_ADMIN_USERS": "prof",
        "TFSPAWNER_PUBLIC_PORT": str(hub.proxy_port),
        "TFSPAWNER_HUB_IP": "127.0.0.1",
        "TFSPAWNER_HUB_NAME": hub.hub_name,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    hub.start()
    yield hub
    hub.stop()
    hub.remove_containers(docker_client)


def admin_create(hub: Hub, name: str) -> subprocess.CompletedProcess:
    """The documented command, run in the hub's working directory."""
    return subprocess.run(
        [str(CLI), "admin", "create", name, "-f", str(SHIPPED_CONFIG)],
        cwd=hub.dir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def browser(hub: Hub) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=hub.url, timeout=60, follow_redirects=True)


async def post_form(session: httpx.AsyncClient, page: str, data: dict) -> httpx.Response:
    """Post a form as a browser does, with the _xsrf cookie its page set.

    Redirects are not followed: after a login, the hub would start the user's
    server.
    """
    await session.get(page)
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf", "")
    return await session.post(page, data={**data, "_xsrf": xsrf}, follow_redirects=False)


async def sign_up(hub: Hub, name: str, password: str) -> httpx.Response:
    async with browser(hub) as session:
        return await post_form(
            session,
            "/hub/signup",
            {
                "username": name,
                "signup_password": password,
                "signup_password_confirmation": password,
            },
        )


@contextlib.asynccontextmanager
async def log_in(hub: Hub, name: str, password: str):
    """A browser session after the login form; whoami() says who it is."""
    async with browser(hub) as session:
        await post_form(session, "/hub/login", {"username": name, "password": password})
        yield session


async def whoami(session: httpx.AsyncClient) -> dict | None:
    r = await session.get("/hub/api/user")
    return r.json() if r.status_code == 200 else None


async def test_nobody_signs_up_as_the_first_admin(native_hub):
    hub = native_hub
    assert "tfspawner.auth.TFNativeAuthenticator" in hub.log_tail(400)

    # The name in TFSPAWNER_ADMIN_USERS, in any case, cannot be signed up for.
    for name in ("prof", "Prof"):
        r = await sign_up(hub, name, "first come, first served")
        assert r.status_code == 403, r.text
        assert "cannot be signed up for here" in r.text
    async with log_in(hub, "prof", "first come, first served") as session:
        assert await whoami(session) is None
        assert (await session.get("/hub/admin")).url.path == "/hub/login"

    # The admin's account comes from the hub's host, with a one-time password.
    result = admin_create(hub, "prof")
    assert result.returncode == 0, result.stderr
    password = result.stdout.strip()
    assert len(password) >= 24
    assert "/hub/change-password" in result.stderr
    async with log_in(hub, "prof", password) as admin:
        user = await whoami(admin)
        assert user is not None and user["name"] == "prof" and user["admin"] is True
        assert (await admin.get("/hub/admin")).status_code == 200

        # Everyone else still signs up, and waits for an admin's approval.
        r = await sign_up(hub, "student", "a student's passphrase")
        assert r.status_code == 200
        assert "Your information has been sent to the admin" in r.text
        async with browser(hub) as student:
            r = await post_form(
                student,
                "/hub/login",
                {"username": "student", "password": "a student's passphrase"},
            )
            assert "has not been authorized by an administrator yet" in r.text
            assert await whoami(student) is None
        r = await admin.get("/hub/authorize/student")
        assert r.status_code == 200
        async with log_in(hub, "student", "a student's passphrase") as student:
            user = await whoami(student)
            assert user is not None and user["name"] == "student" and user["admin"] is False
            assert (await student.get("/hub/authorize")).status_code == 403

    # Running the command again replaces the password: a lost one is no lockout.
    again = admin_create(hub, "prof")
    assert again.returncode == 0, again.stderr
    assert "Reset the password of the admin account prof" in again.stderr
    async with log_in(hub, "prof", password) as session:
        assert await whoami(session) is None
    async with log_in(hub, "prof", again.stdout.strip()) as session:
        assert (await whoami(session))["admin"] is True

    # A name that is no admin gets no account this way.
    result = admin_create(hub, "student")
    assert result.returncode == 1
    assert result.stderr.startswith("tfspawner: student is not an admin")
    assert "Traceback" not in result.stderr
