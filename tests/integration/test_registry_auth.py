"""Pulls from the test bed's registry that needs a login (htpasswd behind TLS)."""

import base64
import io
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

AUTH_ENV = (
    "TFSPAWNER_TEST_AUTH_IMAGE",
    "TFSPAWNER_TEST_AUTH_USER",
    "TFSPAWNER_TEST_AUTH_PASSWORD",
    "TFSPAWNER_TEST_AUTH_CONFIG",
)


@pytest.fixture
def auth():
    missing = [name for name in AUTH_ENV if not os.environ.get(name)]
    if missing:
        reason = f"{', '.join(missing)} not set; run `scripts/testbed up`"
        if os.environ.get("TFSPAWNER_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    image = os.environ["TFSPAWNER_TEST_AUTH_IMAGE"]
    return {
        "registry": image.split("/", 1)[0],
        "user": os.environ["TFSPAWNER_TEST_AUTH_USER"],
        "password": os.environ["TFSPAWNER_TEST_AUTH_PASSWORD"],
        "config": os.environ["TFSPAWNER_TEST_AUTH_CONFIG"],
    }


def login(auth) -> dict:
    return {"username": auth["user"], "password": auth["password"]}


def push_absent(docker_client, auth, base: str, name: str = "authpull") -> tuple[str, str]:
    """Push a tiny image FROM base to the registry that needs a login; remove it here.

    Returns (pinned reference, image id).
    """
    repo = f"{auth['registry']}/tfspawner-test/{name}"
    tag = secrets.token_hex(4)
    dockerfile = f"FROM {base}\nLABEL tfspawner.test.marker={tag}\n"
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repo}:{tag}", rm=True
    )
    for line in docker_client.images.push(
        repo, tag=tag, stream=True, decode=True, auth_config=login(auth)
    ):
        assert "error" not in line, line
    image.reload()
    [pinned] = [d for d in image.attrs["RepoDigests"] if d.startswith(f"{repo}@")]
    docker_client.images.remove(image.id, force=True)
    return pinned, image.id


def docker_config(tmp_path: Path, auth, password: str | None) -> str:
    """A DOCKER_CONFIG directory: a login with ``password``, or none at all."""
    directory = tmp_path / f"docker-config-{secrets.token_hex(2)}"
    directory.mkdir()
    auths = {}
    if password is not None:
        token = base64.b64encode(f"{auth['user']}:{password}".encode()).decode()
        auths[auth["registry"]] = {"auth": token}
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return str(directory)


def image_config(image: str, extra: str = "") -> str:
    profile = {"slug": "x", "display_name": "X", "image": "x"}
    return (
        f"c.TFSpawner.images = {{'x': {image!r}}}\n"
        f"c.TFSpawner.profiles = [{profile!r}]\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
        # Debug logging: not even there may a credential appear.
        "c.JupyterHub.log_level = 'DEBUG'\n" + extra
    )


def run_cli(*args, env=None) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).parent / "tfspawner"
    return subprocess.run(
        [str(cli), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


async def test_pull_with_login_runs_and_keeps_the_password_out_of_everything(
    hub_factory, test_image, docker_client, auth, monkeypatch
):
    pinned, image_id = push_absent(docker_client, auth, test_image)
    monkeypatch.setenv("DOCKER_CONFIG", auth["config"])
    hub = hub_factory(
        image_config(pinned, "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n")
    )
    await hub.create_user("u")
    assert (await hub.request_spawn("u")).status_code == 202
    messages = await hub.progress_messages("u")
    await hub.wait_ready("u")
    [container] = hub.containers(docker_client)
    assert container.attrs["Image"] == image_id
    async with hub.client() as c:
        assert (await c.get("/user/u/api/status")).status_code == 200

    encoded = base64.b64encode(f"{auth['user']}:{auth['password']}".encode()).decode()
    env = container.exec_run(["env"]).output.decode()
    places = {
        "hub log": hub.log_path.read_text(errors="replace"),
        "docker inspect": json.dumps(container.attrs),
        "environment": env,
        "progress messages": "\n".join(messages),
    }
    assert "Pulling image: 100%" in places["progress messages"]
    for where, text in places.items():
        assert auth["password"] not in text, where
        assert encoded not in text, where
    assert "DOCKER_CONFIG" not in env
    assert auth["config"] not in places["docker inspect"]


@pytest.mark.parametrize("password", [None, "wrong-password"], ids=["no-login", "wrong-password"])
async def test_missing_or_wrong_login_is_a_clear_503_and_leaves_nothing(
    hub_factory, test_image, docker_client, auth, tmp_path, monkeypatch, password
):
    pinned, _ = push_absent(docker_client, auth, test_image)
    monkeypatch.setenv("DOCKER_CONFIG", docker_config(tmp_path, auth, password))
    hub = hub_factory(image_config(pinned))
    await hub.create_user("u")
    r = await hub.request_spawn("u")
    assert r.status_code == 503, r.text
    assert "registry did not accept the hub's login" in r.json()["message"]
    assert hub.containers(docker_client) == []
    assert await hub.server_model("u") is None
    log = hub.log_path.read_text(errors="replace")
    [line] = [line for line in log.splitlines() if f"from registry {auth['registry']}" in line]
    assert "refused the login" in line and ("unauthorized" in line or "no basic auth" in line)
    assert auth["password"] not in log
    if password:
        assert password not in log


def test_cli_pull_and_doctor_use_the_same_login(tmp_path, test_image, docker_client, auth):
    pinned, image_id = push_absent(docker_client, auth, test_image)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"c = get_config()\nc.TFSpawner.images = {{'tf': {pinned!r}}}\n")

    refused = {**os.environ, "DOCKER_CONFIG": docker_config(tmp_path, auth, "wrong-password")}
    result = run_cli("images", "pull", "-f", str(config), env=refused)
    assert result.returncode == 1
    assert f"failed at registry {auth['registry']}" in result.stderr
    assert "wrong-password" not in result.stderr + result.stdout
    result = run_cli("doctor", "-f", str(config), env=refused)
    assert f"FAIL  registry {auth['registry']}: refuses the login" in result.stdout

    accepted = {**os.environ, "DOCKER_CONFIG": auth["config"]}
    result = run_cli("doctor", "-f", str(config), env=accepted)
    assert f"ok    registry {auth['registry']}: accepts the login from" in result.stdout
    result = run_cli("images", "pull", "-f", str(config), env=accepted)
    assert result.returncode == 0, result.stderr
    assert "pulled" in result.stdout
    assert docker_client.images.get(pinned).id == image_id
    assert auth["password"] not in result.stdout + result.stderr
    docker_client.images.remove(image_id, force=True)
