"""SSH into your own server through the hub, with Debian's OpenSSH client.

One hub and one TF stand-in server for the module: each start costs a TF
container. The client reaches sshd in the server through `tfspawner ssh-proxy`,
a websocket to /user/NAME/sshd/ that the single-user server opens only to its
owner's hub token.
"""

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from traitlets.config.loader import PyFileConfigLoader

from tests.harness.hubprocess import new_hub
from tfspawner import containerspec

pytestmark = pytest.mark.ssh

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


PROFILES = [
    {"slug": "cpu", "display_name": "CPU", "image": "tf", "default": True},
    {"slug": "gpu", "display_name": "1 GPU", "image": "tf", "gpus": 1},
]


@pytest.fixture(scope="module")
def ssh_hub(tmp_path_factory, docker_client):
    for tool in ("ssh", "scp", "sftp", "script", "ssh-keygen"):
        assert shutil.which(tool), f"{tool} is missing; scripts/testbed up installs it"
    hub = new_hub(
        tmp_path_factory.mktemp("ssh-hub"),
        os.environ["TFSPAWNER_TEST_HUB_IP"],
        f"c.TFSpawner.images = {{'tf': {os.environ['TFSPAWNER_TEST_TF_IMAGE']!r}}}\n"
        f"c.TFSpawner.profiles = {PROFILES!r}\n"
        "c.TFSpawner.gpu_pool = ['0', '1']\n"
        # What jupyterhub_config.py sets for TFSPAWNER_SSH=1 (checked below).
        "from tfspawner import sshpage\n"
        "c.TFSpawner.environment = {'TFSPAWNER_SSH': '1'}\n"
        "c.JupyterHub.extra_handlers = sshpage.HANDLERS\n",
    )
    hub.start()
    try:
        for name in ("alice", "bob"):
            asyncio.run(hub.create_user(name))
        asyncio.run(hub.spawn("alice"))
        yield hub
    finally:
        print(f"\n=== hub log ===\n{hub.log_tail()}")
        print(f"=== containers ===\n{hub.container_logs(docker_client)}")
        hub.stop()
        hub.remove_containers(docker_client)


class Client:
    """A user's machine: a key, a token and the ~/.ssh/config block `ssh-config` prints."""

    def __init__(
        self, hub, directory: Path, user: str, target: str | None = None, server: str = ""
    ):
        self.hub = hub
        self.dir = directory
        self.user = user
        self.token = asyncio.run(hub.user_token(user))
        directory.mkdir(parents=True, exist_ok=True)
        key = directory / "id_ed25519"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        command = [BIN / "tfspawner", "ssh-config", "--hub", hub.url, "--host", "srv"]
        block = subprocess.run(
            [*command, "--user", target or user, "--server", server],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.config = directory / "config"
        self.config.write_text(
            block + "\nHost *\n"
            f"    IdentityFile {key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {directory / 'known_hosts'}\n"
            "    StrictHostKeyChecking accept-new\n"
            "    BatchMode yes\n"
            "    LogLevel ERROR\n"
        )

    def env(self, token: str | None = None) -> dict:
        return {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "TFSPAWNER_HUB_TOKEN": self.token if token is None else token,
            "TERM": "xterm",
        }

    def run(self, tool: str, *args, token=None, input=None, timeout=180):
        return subprocess.run(
            [tool, "-F", self.config, *args],
            capture_output=True,
            text=True,
            input=input,
            env=self.env(token),
            timeout=timeout,
            cwd=self.dir,
        )

    def ssh(self, *args, **kwargs):
        return self.run("ssh", "srv", *args, **kwargs)


@pytest.fixture(scope="module")
def alice(ssh_hub, tmp_path_factory):
    return Client(ssh_hub, tmp_path_factory.mktemp("alice"), "alice")


def contents(hub, user: str, path: str) -> httpx.Response:
    return httpx.get(f"{hub.url}/user/{user}/api/contents/{path}", headers=hub.headers, timeout=60)


def test_shipped_config_turns_ssh_on_with_one_variable(tf_image):
    def load(**env):
        saved = dict(os.environ)
        os.environ.update({"TFSPAWNER_LOCAL_MODE": "1", "TFSPAWNER_TEST_TF_IMAGE": tf_image, **env})
        try:
            return PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT)).load_config()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    from tfspawner import sshpage

    on = load(TFSPAWNER_SSH="1")
    assert on.TFSpawner.environment == {"TFSPAWNER_SSH": "1"}
    assert on.JupyterHub.extra_handlers == sshpage.HANDLERS
    off = load(TFSPAWNER_SSH="0")
    assert "environment" not in off.TFSpawner
    assert "extra_handlers" not in off.JupyterHub


def test_command_runs_tensorflow_29_as_the_user(alice):
    result = alice.ssh('python -c "import tensorflow as tf; print(tf.__version__)"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "2.9.3", result.stdout

    result = alice.ssh("id -u; id -un; pwd; echo $TFSPAWNER_SSH; command -v tmux git")
    assert result.returncode == 0, result.stderr
    uid, name, cwd, ssh_flag, tmux, git = result.stdout.split()
    assert int(uid) > 0 and name == "alice" and cwd == "/tf"
    # The server's own environment, not sshd's bare one.
    assert ssh_flag == "1"
    assert tmux.endswith("/tmux") and git.endswith("/git")


def test_scp_and_sftp_land_in_the_notebook_directory(ssh_hub, alice):
    (alice.dir / "hello.txt").write_text("copied with scp\n")
    result = alice.run("scp", "hello.txt", "srv:")
    assert result.returncode == 0, result.stderr
    r = contents(ssh_hub, "alice", "hello.txt")
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "copied with scp\n"

    (alice.dir / "data.csv").write_text("a,b\n1,2\n")
    batch = "mkdir data\nput data.csv data/data.csv\nget hello.txt back.txt\n"
    result = alice.run("sftp", "-b", "-", "srv", input=batch)
    assert result.returncode == 0, result.stderr
    assert contents(ssh_hub, "alice", "data/data.csv").json()["content"] == "a,b\n1,2\n"
    assert (alice.dir / "back.txt").read_text() == "copied with scp\n"


def test_interactive_session_under_a_pty_runs_tmux(ssh_hub, alice):
    # `script` gives ssh a pty, as a terminal would; ssh -t asks for one remotely.
    typed = (
        "tty\n"
        "tmux new-session -d -s train 'python -c \"print(6 * 7)\" > tmux-out.txt; sleep 60'\n"
        "sleep 2; tmux ls; cat tmux-out.txt\n"
        "exit\n"
    )
    ssh = f"ssh -F {alice.config} -tt srv"
    result = subprocess.run(
        ["script", "-qec", ssh, "/dev/null"],
        input=typed,
        capture_output=True,
        text=True,
        env=alice.env(),
        timeout=180,
        cwd=alice.dir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.replace("\r", "")
    assert "/dev/pts/" in out, out
    assert "train: 1 windows" in out, out
    assert "\n42\n" in out, out
    assert contents(ssh_hub, "alice", "tmux-out.txt").json()["content"] == "42\n"


def test_wrong_and_revoked_tokens_are_refused(ssh_hub, alice):
    result = alice.ssh("true", token="not-a-token")
    assert result.returncode == 255
    assert "refused the token" in result.stderr, result.stderr

    # A second token, used, then revoked on the hub.
    api = f"{ssh_hub.url}/hub/api/users/alice/tokens"
    r = httpx.post(api, json={"note": "revoked"}, headers=ssh_hub.headers, timeout=60)
    assert r.status_code == 201, r.text
    token, token_id = r.json()["token"], r.json()["id"]
    assert alice.ssh("true", token=token).returncode == 0
    r = httpx.delete(f"{api}/{token_id}", headers=ssh_hub.headers, timeout=60)
    assert r.status_code == 204, r.text
    result = alice.ssh("true", token=token)
    assert result.returncode == 255
    assert "refused the token" in result.stderr, result.stderr

    # Never root, and never a password: keys are the only method sshd offers.
    result = alice.ssh("-l", "root", "true")
    assert result.returncode == 255
    result = alice.ssh("-o", "PubkeyAuthentication=no", "true")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr, result.stderr


def test_one_user_cannot_reach_another_users_server(ssh_hub, tmp_path):
    bob = Client(ssh_hub, tmp_path / "bob", "bob", target="alice")
    result = bob.ssh("true")
    assert result.returncode == 255
    assert "no user alice" in result.stderr, result.stderr

    # Straight at alice's server, past the proxy command's own checks.
    async def handshake(token):
        url = f"ws://127.0.0.1:{ssh_hub.proxy_port}/user/alice/sshd/"
        headers = {"Authorization": f"token {token}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            return await ws.recv()

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(handshake(bob.token))
    assert refused.value.response.status_code == 403
    # The same websocket with alice's token is sshd.
    alice_token = asyncio.run(ssh_hub.user_token("alice"))
    assert asyncio.run(handshake(alice_token)).startswith(b"SSH-2.0-OpenSSH")


def test_a_gpu_servers_shell_sees_only_its_gpu(ssh_hub, tmp_path, docker_client):
    asyncio.run(ssh_hub.spawn("alice", "gpu", {"profile": "gpu"}))
    gpu = Client(ssh_hub, tmp_path / "gpu", "alice", server="gpu")
    result = gpu.ssh("echo $NVIDIA_VISIBLE_DEVICES")
    assert result.returncode == 0, result.stderr
    [container] = [
        c
        for c in ssh_hub.containers(docker_client)
        if c.labels.get(containerspec.LABEL_SERVER) == "gpu"
    ]
    assigned = [
        e.split("=", 1)[1]
        for e in container.attrs["Config"]["Env"]
        if e.startswith("NVIDIA_VISIBLE_DEVICES=")
    ]
    assert result.stdout.split() == assigned and assigned[0] in ("0", "1"), result.stdout
    # The default server of the same user has none.
    assert alice_default_gpus(ssh_hub, tmp_path) == "void"
    asyncio.run(ssh_hub.stop_server("alice", "gpu"))


def alice_default_gpus(hub, tmp_path) -> str:
    result = Client(hub, tmp_path / "cpu", "alice").ssh("echo $NVIDIA_VISIBLE_DEVICES")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_hub_page_shows_the_ssh_config_block(ssh_hub):
    async def page():
        session = await ssh_hub.login("alice")
        try:
            html = await session.get("/hub/ssh-config")
            return html, await session.get("/hub/ssh-config/sshproxy.py")
        finally:
            await session.aclose()

    html, script = asyncio.run(page())
    assert html.status_code == 200, html.text
    assert f"ProxyCommand tfspawner ssh-proxy --hub {ssh_hub.url} --user alice" in html.text
    assert "User alice" in html.text
    assert script.status_code == 200 and "def pipe(" in script.text


def test_ssh_to_a_stopped_server_starts_it(ssh_hub, alice):
    asyncio.run(ssh_hub.stop_server("alice"))
    result = alice.ssh("cat hello.txt", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "starting your server" in result.stderr
    assert result.stdout == "copied with scp\n"
    # The host key lives in the home volume: the restarted server kept it
    # (StrictHostKeyChecking would refuse a new one for a known host).
    result = alice.ssh("-o", "StrictHostKeyChecking=yes", "true")
    assert result.returncode == 0, result.stderr

    asyncio.run(ssh_hub.stop_server("alice"))
    no_start = alice.run(
        "ssh",
        "-o",
        f"ProxyCommand {BIN}/tfspawner ssh-proxy --hub {ssh_hub.url} --user alice --no-start",
        "srv",
        "true",
    )
    assert no_start.returncode == 255
    assert f"start it at {ssh_hub.url}/hub/spawn/alice" in no_start.stderr, no_start.stderr
