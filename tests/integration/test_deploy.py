"""The production-shaped deployment: compose file, hub image, one-command bring-up, doctor."""

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

from tests.harness.hubprocess import free_port
from tfspawner import containerspec

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "tfspawner"


def run(cmd, env=None, timeout=900):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def test_compose_file_validates():
    result = run(["docker-compose", "-f", "deploy/compose.yaml", "config", "-q"])
    assert result.returncode == 0, result.stderr


def compose_config(**settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFSPAWNER_")}
    result = run(["docker-compose", "-f", "deploy/compose.yaml", "config"], env={**env, **settings})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]["hub"]


def test_compose_publishes_the_hub_on_loopback_unless_told_otherwise():
    hub = compose_config()
    assert hub["ports"] in (["127.0.0.1:8000:8000/tcp"], ["127.0.0.1:8000:8000"])
    assert hub["environment"]["TFSPAWNER_PUBLIC_IP"] == "127.0.0.1"

    hub = compose_config(TFSPAWNER_PUBLIC_IP="0.0.0.0", TFSPAWNER_PUBLIC_PORT="8443")
    assert hub["ports"] in (["0.0.0.0:8443:8443/tcp"], ["0.0.0.0:8443:8443"])


def load_config(env: dict):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT)).load_config()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_dummy_login_is_refused_outside_local_mode(tf_image):
    env = {
        "TFSPAWNER_AUTHENTICATOR": "dummy",
        "TFSPAWNER_LOCAL_MODE": "",
        "TFSPAWNER_IMAGE_CPU": tf_image,
        "TFSPAWNER_IMAGE_GPU": tf_image,
        "TFSPAWNER_ADMIN_USERS": "root",
    }
    with pytest.raises(Exception, match="TFSPAWNER_LOCAL_MODE"):
        load_config(env)


def test_production_config_defaults_to_a_real_authenticator(tf_image):
    env = {
        "TFSPAWNER_IMAGE_CPU": tf_image,
        "TFSPAWNER_IMAGE_GPU": tf_image,
        "TFSPAWNER_ADMIN_USERS": "prof",
        "TFSPAWNER_LOCAL_MODE": "",
    }
    config = load_config(env)
    assert config.JupyterHub.authenticator_class == "tfspawner-native"
    assert config.JupyterHub.cleanup_servers is False
    assert config.JupyterHub.spawner_class == "tfspawner"
    # Outside a container the proxy listens on the host's loopback by default.
    assert config.JupyterHub.bind_url == "http://127.0.0.1:8000"


def test_local_mode_listens_on_loopback_only(tf_image):
    env = {"TFSPAWNER_LOCAL_MODE": "1", "TFSPAWNER_TEST_TF_IMAGE": tf_image}
    assert load_config(env).JupyterHub.bind_url == "http://127.0.0.1:8000"
    for address in ("0.0.0.0", "192.0.2.7"):
        with pytest.raises(Exception, match=r"127\.0\.0\.1 only"):
            load_config({**env, "TFSPAWNER_PUBLIC_IP": address})
    # In the hub's container it listens on all of the container's addresses;
    # compose publishes them on the host at TFSPAWNER_PUBLIC_IP.
    config = load_config({**env, "TFSPAWNER_NETWORK": "tfspawner"})
    assert config.JupyterHub.bind_url == "http://0.0.0.0:8000"


@pytest.fixture
def local_hub(docker_client):
    suffix = secrets.token_hex(3)
    env = {
        **os.environ,
        "TFSPAWNER_COMPOSE_PROJECT": f"tfspawner-test-{suffix}",
        "TFSPAWNER_HUB_CONTAINER": f"tfspawner-test-hub-{suffix}",
        "TFSPAWNER_HUB_VOLUME": f"tfspawner-test-hub-data-{suffix}",
        "TFSPAWNER_NETWORK": f"tfspawner-test-{suffix}",
        "TFSPAWNER_HUB_NAME": f"test-hub-up-{suffix}",
        "TFSPAWNER_HUB_IMAGE": "tfspawner/hub:test",
        "TFSPAWNER_PUBLIC_PORT": str(free_port()),
    }
    yield env
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{containerspec.LABEL_HUB}={env['TFSPAWNER_HUB_NAME']}"}
    ):
        container.remove(force=True)
    compose = [
        "docker-compose",
        "-p",
        env["TFSPAWNER_COMPOSE_PROJECT"],
        "-f",
        "deploy/compose.yaml",
    ]
    run([*compose, "down", "-v"], env=env)
    for label in (containerspec.LABEL_HUB, "tfspawner.lease"):
        for volume in docker_client.volumes.list(
            filters={"label": f"{label}={env['TFSPAWNER_HUB_NAME']}"}
        ):
            volume.remove(force=True)


async def test_hub_up_local_serves_a_hub_that_spawns(local_hub, docker_client):
    result = run(["scripts/hub-up", "--local"], env=local_hub)
    assert result.returncode == 0, result.stderr[-3000:]

    # The hub runs in its own container, built from the test bed's local base.
    hub = docker_client.containers.get(local_hub["TFSPAWNER_HUB_CONTAINER"])
    assert hub.status == "running"
    assert any(m["Destination"] == "/var/run/docker.sock" for m in hub.attrs["Mounts"])
    # Published on the host's loopback only.
    bindings = hub.attrs["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for port in bindings.values() for b in port} == {"127.0.0.1"}
    # The image has the native login's class and the command hub-up tells
    # admins to run, at the paths it names; local mode's dummy login keeps no
    # admin accounts, which the command says in one line.
    exit_code, output = hub.exec_run(
        [
            "python3",
            "-c",
            "from importlib.metadata import entry_points as e; "
            "(p,) = e(group='jupyterhub.authenticators', name='tfspawner-native'); p.load()",
        ]
    )
    assert exit_code == 0, output.decode()
    exit_code, output = hub.exec_run(
        ["tfspawner", "admin", "list", "-f", "/srv/tfspawner/jupyterhub_config.py"]
    )
    assert exit_code == 1
    assert output.decode().startswith("tfspawner: JupyterHub.authenticator_class is 'dummy'")

    url = f"http://127.0.0.1:{local_hub['TFSPAWNER_PUBLIC_PORT']}"
    async with httpx.AsyncClient(base_url=url, timeout=60, follow_redirects=True) as browser:
        await browser.get("/hub/login")
        xsrf = browser.cookies.get("_xsrf", "")
        r = await browser.post(
            "/hub/login", data={"username": "admin", "password": "x", "_xsrf": xsrf}
        )
        assert r.status_code == 200
        # Logging in sets a new XSRF cookie.
        xsrf = browser.cookies.get("_xsrf", path="/hub/") or browser.cookies.get("_xsrf")
        r = await browser.post(
            "/hub/api/users/admin/tokens", json={"note": "test"}, headers={"X-XSRFToken": xsrf}
        )
        assert r.status_code == 201, r.text
        token = r.json()["token"]

    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=200) as api:
        r = await api.post("/hub/api/users/admin/server", json={"profile": "tf29-cpu"})
        assert r.status_code in (201, 202), r.text
        for _ in range(180):
            model = (await api.get("/hub/api/users/admin")).json()["servers"].get("")
            if model and model["ready"]:
                break
            await asyncio.sleep(1)
        r = await api.get("/user/admin/api/status")
        assert r.status_code == 200, r.text
        await api.delete("/hub/api/users/admin/server")

    # A second run changes nothing and returns quickly.
    again = run(["scripts/hub-up", "--local"], env=local_hub)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is up-to-date" in again.stderr


def test_doctor_reports_a_missing_piece_clearly(tmp_path, test_image):
    missing = "127.0.0.1:5000/tfspawner-test/never-pushed@sha256:" + "0" * 64
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        "c = get_config()\n"
        f"c.TFSpawner.images = {{'present': {test_image!r}, 'missing': {missing!r}}}\n"
        "c.TFSpawner.profiles = [{'slug': 'gpu', 'display_name': 'GPU', 'image': 'present', 'gpus': 1}]\n"
        "c.TFSpawner.gpu_pool = ['0']\n"
    )
    # No proxy on this PATH.
    env = {**os.environ, "PATH": str(CLI.parent)}
    result = run([str(CLI), "doctor", "-f", str(config)], env=env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok    image present") for line in lines), result.stdout
    assert (
        f"FAIL  image missing: {missing} is not on this host; run `tfspawner images pull`" in lines
    )
    assert (
        "FAIL  proxy: configurable-http-proxy is not on PATH; npm install -g configurable-http-proxy"
        in lines
    )

    result = run(
        [str(CLI), "doctor", "-f", str(config)],
        env={**env, "DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert result.returncode == 1
    assert "FAIL  engine: cannot reach the Docker engine" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr

    config.write_text("c = get_config()\nc.TFSpawner.image = 'x/y:latest'\n")
    result = run([str(CLI), "doctor", "-f", str(config)], env=env)
    assert "FAIL  config: TFSpawner.image: 'x/y:latest' is not pinned by digest" in result.stdout
