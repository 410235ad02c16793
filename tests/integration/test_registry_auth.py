"""Pulls from the test bed's registry that needs a login (htpasswd behind TLS)."""

import base64
import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import docker
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


# --- the monthly cycle: rebuild, rollback, status, verify -------------------------------

TINY_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
LABEL tfspawner.test.rebuilt-from=${BASE_IMAGE}
"""


def push_base(docker_client, auth, base: str, repo_tag: str, marker: str, built: list) -> str:
    """Push a variant of ``base`` under ``repo_tag`` (moving the tag); return its digest."""
    repo, tag = repo_tag.rsplit(":", 1)
    dockerfile = f"FROM {base}\nLABEL tfspawner.test.marker={marker}\n"
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=repo_tag, rm=True
    )
    built.insert(0, image.id)
    digest = None
    for line in docker_client.images.push(
        repo, tag=tag, stream=True, decode=True, auth_config=login(auth)
    ):
        assert "error" not in line, line
        digest = (line.get("aux") or {}).get("Digest") or digest
    return digest


def current_pin(path: Path, alias: str = "x") -> str:
    entry = json.loads(path.read_text())["images"][alias]
    return entry["pins"][entry["current"]]["image"]


async def test_rebuild_cycle_moves_new_starts_keeps_running_servers_and_rolls_back(
    hub_factory, test_image, docker_client, auth, tmp_path, monkeypatch
):
    run = secrets.token_hex(3)
    base_tag = f"{auth['registry']}/tfspawner-test/base-{run}:2.9"
    repository = f"{auth['registry']}/tfspawner-test/derived-{run}"
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(TINY_DOCKERFILE)
    path = tmp_path / "catalogue.json"
    monkeypatch.setenv("DOCKER_CONFIG", auth["config"])
    env = dict(os.environ)
    built = []  # image ids and pins to remove, bases first
    try:
        first_base = push_base(docker_client, auth, test_image, base_tag, "first", built)
        result = run_cli(
            "images", "recipe", "x", "--base", base_tag, "--repository", repository,
            "--context", str(context), "--catalogue", str(path), env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        result = run_cli("images", "rebuild", "--catalogue", str(path), env=env)
        assert result.returncode == 0, result.stderr
        first = current_pin(path)
        built.append(first)
        assert first.startswith(f"{repository}:") and first in result.stdout
        assert json.loads(path.read_text())["images"]["x"]["pins"][0]["base"].endswith(first_base)

        config = (
            f"c.TFSpawner.image_catalogue_file = {str(path)!r}\n"
            "c.TFSpawner.profiles = [{'slug': 'x', 'display_name': 'X', 'image': 'x'}]\n"
            "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
        )
        hub = hub_factory(config)
        for user in ("early", "late", "after"):
            await hub.create_user(user)
        await hub.spawn("early")

        # A new base under the same tag; the rebuild pins the derived image on it.
        second_base = push_base(docker_client, auth, test_image, base_tag, "second", built)
        assert second_base != first_base
        result = run_cli("images", "rebuild", "--catalogue", str(path), env=env)
        assert result.returncode == 0, result.stderr
        second = current_pin(path)
        built.append(second)
        assert second != first
        pins = json.loads(path.read_text())["images"]["x"]["pins"]
        assert [p["image"] for p in pins] == [first, second]
        assert pins[1]["base"].endswith(second_base)

        # The running hub gives the next start the new pin, without a restart.
        await hub.spawn("late")
        by_user = {c.labels["tfspawner.user"]: c for c in hub.containers(docker_client)}
        assert by_user["late"].labels["tfspawner.image"] == second
        assert by_user["late"].image.labels["tfspawner.test.marker"] == "second"
        assert by_user["early"].labels["tfspawner.image"] == first
        assert by_user["early"].image.labels["tfspawner.test.marker"] == "first"

        hub_config = str(hub.dir / "jupyterhub_config.py")
        result = run_cli("images", "status", "-f", hub_config, env=env)
        assert result.returncode == 0, result.stderr
        stale = [line for line in result.stdout.splitlines() if line.startswith("stale:")]
        assert len(stale) == 1 and stale[0].startswith(f"stale: early (x) runs {first}"), (
            result.stdout
        )
        assert "1 of 2 running server(s)" in result.stdout
        assert "; 1 running server(s) on an older pin)" in result.stdout
        assert "last rebuilt:" in result.stdout
        async with hub.client() as c:
            view = (await c.get("/hub/api/tfspawner/gpus")).json()
        assert [(s["user"], s["image"], s["current"]) for s in view["stale_images"]] == [
            ("early", first, second)
        ]

        result = run_cli("images", "rollback", "--catalogue", str(path), env=env)
        assert result.returncode == 0, result.stderr
        assert f"x: {second} -> {first}" in result.stdout
        assert current_pin(path) == first
        await hub.spawn("after")
        by_user = {c.labels["tfspawner.user"]: c for c in hub.containers(docker_client)}
        assert by_user["after"].labels["tfspawner.image"] == first

        # Both pins are in the registry and start as non-root.
        result = run_cli("images", "verify", "--catalogue", str(path), env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("ok    x") == 2
    finally:
        for container in docker_client.containers.list(all=True):
            if container.labels.get("tfspawner.image") in built:
                container.remove(force=True)
        for reference in reversed(built):  # children before their base
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(docker_client.images.get(reference).id, force=True)


def test_verify_fails_on_a_pin_that_is_not_in_its_registry(tmp_path, auth, test_image):
    repository = auth["registry"] + "/tfspawner-test/singleuser"
    good = os.environ["TFSPAWNER_TEST_AUTH_IMAGE"]
    missing = f"{repository}@sha256:{secrets.token_hex(32)}"
    path = tmp_path / "catalogue.json"
    pins = [{"image": good, "built": "t0"}, {"image": missing, "built": "t1"}]
    path.write_text(json.dumps({"images": {"x": {"pins": pins, "current": 1}}}))
    env = {**os.environ, "DOCKER_CONFIG": auth["config"]}
    result = run_cli("images", "verify", "--catalogue", str(path), env=env)
    assert result.returncode == 1
    assert f"FAIL  x (current): {missing}: {missing.split('@')[1]} is not in" in result.stdout
    assert f"ok    x (earlier): {good}" in result.stdout

    # The same pins without the login: the registry's refusal is a failure too.
    env["DOCKER_CONFIG"] = str(tmp_path)
    result = run_cli("images", "verify", "--catalogue", str(path), env=env)
    assert result.returncode == 1
    assert "refuses the login" in result.stdout
