"""The Swarm manager for the ``tfspawner`` command: blocking calls, plain error messages.

Like ``swarmengine`` it needs the manager's API alone: what runs on a node is
read from the manager's tasks, and work on a node's volumes is done by
throwaway helper services pinned to that node.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time

import docker
from docker.errors import APIError, DockerException, NotFound

from .. import containerspec, swarmspec
from ..errors import CommandError
from .swarmengine import listed_state, newest_task, service_view


def connect(client_kwargs: dict) -> SwarmAdmin:
    try:
        client = docker.DockerClient(**client_kwargs)
        client.ping()
        client.api.nodes()
    except DockerException as e:
        raise CommandError(
            f"cannot reach a Swarm manager ({e}); check TFSwarmSpawner.manager_url"
        ) from None
    return SwarmAdmin(client)


def node_name(node: dict) -> str:
    """A node as admins know it: its hostname, else its id."""
    return ((node.get("Description") or {}).get("Hostname")) or node["ID"][:12]


class SwarmAdmin:
    def __init__(self, client: docker.DockerClient):
        self.client = client

    @property
    def address(self) -> str:
        return self.client.api.base_url

    def nodes(self) -> list[dict]:
        return self.client.api.nodes()

    def servers(self, hub_name: str) -> list[dict]:
        """This hub's live servers as records (user, server, GPUs, since), with their node."""
        api = self.client.api
        services = api.services(filters=containerspec.label_filters(hub_name))
        tasks = api.tasks()
        nodes = {node["ID"]: node for node in self.nodes()}
        records = []
        for service in services:
            task = newest_task(t for t in tasks if t.get("ServiceID") == service["ID"])
            view = service_view(service, task, nodes.get((task or {}).get("NodeID")))
            state = listed_state(view)
            if state != "running":
                continue
            created = containerspec.created_ns(view["Created"]) / 1e9 if view["Created"] else 0
            (record,) = containerspec.server_records(
                [
                    {
                        "Id": view["Id"],
                        "Names": ["/" + view["Name"]],
                        "Labels": view["Config"]["Labels"],
                        "State": state,
                        "Created": created,
                    }
                ]
            ) or [None]
            if record is None:
                continue
            record["node"] = view["NodeID"] or view["Config"]["Labels"].get(swarmspec.LABEL_NODE)
            records.append(record)
        return records

    def gpus(self, kind: str) -> list[tuple[dict, str]]:
        """Every (node, GPU UUID) the nodes advertise, the node as inspected."""
        nodes = self.nodes()
        by_id = {node["ID"]: node for node in nodes}
        return [(by_id[g.node_id], g.uuid) for g in swarmspec.cluster_gpus(nodes, kind)]

    def remove(self, service_id: str) -> None:
        self.client.api.remove_service(service_id)


# The helpers run Python from the server image itself: nothing else is known
# to be on every node. The receiver refuses a volume that already has files.
RECEIVE = r"""
import os, socket, sys, tarfile
if os.listdir("/dst"):
    print("NOT-EMPTY", flush=True)
    sys.exit(3)
server = socket.create_server(("", PORT))
server.settimeout(300)
conn, _ = server.accept()
# Owners and modes as they were: the user's files must stay theirs.
trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
with conn.makefile("rb") as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
    count = 0
    for member in archive:
        archive.extract(member, "/dst", numeric_owner=True, **trusted)
        count += 1
    # Read the archive's end padding too, so the sender never writes into a closed socket.
    while stream.read(65536):
        pass
print(f"RECEIVED {count}", flush=True)
"""
SEND = r"""
import socket, tarfile, time
deadline = time.monotonic() + 120
while True:
    try:
        conn = socket.create_connection((TARGET, PORT), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(1)
count = 0
def counted(member):
    global count
    count += 1
    return member
with conn.makefile("wb") as stream:
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        archive.add("/src", arcname=".", filter=counted)
conn.shutdown(socket.SHUT_WR)
print(f"SENT {count}", flush=True)
"""
# Removes a volume through the node's own engine once no container uses it.
REMOVE = r"""
import http.client, socket, sys, time
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/docker.sock")
deadline = time.monotonic() + 60
while True:
    api = Unix("localhost")
    api.request("DELETE", "/volumes/" + VOLUME)
    status = api.getresponse().status
    # 404: this engine never had the volume, so it is not the node's own engine.
    if status in (204, 404) or time.monotonic() > deadline:
        print(f"REMOVE {status}", flush=True)
        sys.exit(0 if status == 204 else 1)
    time.sleep(1)
"""
PORT = 7070
_ENDS = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}


def since(record: dict) -> str:
    return record["since"][:19] if record.get("since") else "-"


class MoveFailed(CommandError):
    pass


def _script(template: str, **values) -> str:
    head = "".join(f"{key} = {value!r}\n" for key, value in values.items())
    return head + template


class Helpers:
    """Throwaway helper services of one move: pinned to a node, run once, removed."""

    def __init__(self, admin: SwarmAdmin, image: str, labels: dict, network: str):
        self.admin, self.image, self.labels, self.network = admin, image, labels, network
        self.made: list[str] = []

    def run(self, name: str, node_id: str, script: str, mounts: list[dict]) -> str:
        api = self.admin.client.api
        task = docker.types.TaskTemplate(
            container_spec=docker.types.ContainerSpec(
                self.image,
                command=["python3", "-c", script],
                user="0:0",
                labels=self.labels,
                env={"NVIDIA_VISIBLE_DEVICES": "void"},
                mounts=mounts,
                # Python as PID 1 would ignore the SIGTERM of a removal.
                init=True,
            ),
            restart_policy=docker.types.RestartPolicy(condition="none"),
            placement=docker.types.Placement(constraints=[f"node.id=={node_id}"]),
            networks=[docker.types.NetworkAttachmentConfig(self.network)] if self.network else [],
        )
        created = api.create_service(
            task,
            name=name,
            labels=self.labels,
            endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        )
        self.made.append(created["ID"])
        return created["ID"]

    def state(self, service_id: str) -> tuple[str, str]:
        task = newest_task(self.admin.client.api.tasks(filters={"service": service_id}))
        status = (task or {}).get("Status") or {}
        return status.get("State", "new"), status.get("Err", "")

    def wait(self, service_id: str, timeout: float) -> tuple[str, str]:
        """The helper's final task state and its error, once it has ended."""
        api = self.admin.client.api
        deadline = time.monotonic() + timeout
        while True:
            task = newest_task(api.tasks(filters={"service": service_id}))
            status = (task or {}).get("Status") or {}
            if status.get("State") in _ENDS:
                return status["State"], status.get("Err", "")
            if time.monotonic() > deadline:
                return status.get("State", "new"), "did not end in time"
            time.sleep(0.5)

    def logs(self, service_id: str) -> str:
        try:
            raw = self.admin.client.api.service_logs(service_id, stdout=True, stderr=True)
            return b"".join(raw).decode(errors="replace")
        except APIError:
            return ""

    def remove_all(self) -> None:
        for service_id in self.made:
            with contextlib.suppress(NotFound):
                self.admin.client.api.remove_service(service_id)
        self.made = []


def _count(word: str, logs: str) -> int | None:
    found = re.search(rf"{word} (\d+)", logs)
    return int(found.group(1)) if found else None


def move_volume(
    admin: SwarmAdmin,
    *,
    volume: str,
    source: str,
    target: str,
    image: str,
    labels: dict,
    volume_labels: dict,
    network: str,
    name: str,
    remove_old: bool,
    node_socket: str = "/var/run/docker.sock",
    timeout: float = 600,
) -> dict:
    """Copy ``volume`` from node ``source`` to node ``target`` with owners and modes.

    A receiver service on ``target`` mounts the (new, empty) volume and takes a
    tar stream over ``network`` from a sender on ``source``, which mounts the
    old volume read-only. The old volume stays unless ``remove_old``, and is
    removed only after both helpers ended well and agree on the file count,
    through the old node's engine at ``node_socket`` (a path on that node).
    """
    helpers = Helpers(admin, image, labels, network)
    # Names of this attempt only: a helper of an earlier one may still be stopping.
    name = f"{name}-{secrets.token_hex(4)}"
    receiver_name, sender_name = f"{name}-to", f"{name}-from"
    try:
        receiver = helpers.run(
            receiver_name,
            target,
            _script(RECEIVE, PORT=PORT),
            [docker.types.Mount("/dst", volume, type="volume", labels=volume_labels, no_copy=True)],
        )
        sender = helpers.run(
            sender_name,
            source,
            _script(SEND, TARGET=receiver_name, PORT=PORT),
            [docker.types.Mount("/src", volume, type="volume", read_only=True, no_copy=True)],
        )
        deadline = time.monotonic() + timeout
        while True:
            sent_state, sent_err = helpers.state(sender)
            got_state, got_err = helpers.state(receiver)
            # A receiver that refused ends the move; the sender would only wait for it.
            ended = sent_state in _ENDS and got_state in _ENDS
            if ended or got_state in _ENDS - {"complete"} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        got_logs = helpers.logs(receiver)
        if "NOT-EMPTY" in got_logs:
            raise MoveFailed(
                f"volume {volume} already has files on the target node; nothing was copied "
                "(move or remove it there first)"
            )
        if sent_state != "complete" or got_state != "complete":
            said = (helpers.logs(sender) + got_logs).strip().splitlines()[-3:]
            raise MoveFailed(
                f"copying volume {volume} failed (sender {sent_state}: {sent_err or '-'}; "
                f"receiver {got_state}: {got_err or '-'}; {' / '.join(said) or 'no output'}); "
                "the old volume is untouched"
            )
        sent = _count("SENT", helpers.logs(sender))
        received = _count("RECEIVED", got_logs)
        if sent is not None and received is not None and sent != received:
            raise MoveFailed(
                f"copying volume {volume}: {sent} entries sent but {received} received; "
                "the old volume is untouched"
            )
        helpers.remove_all()
        removed = False
        if remove_old:
            remover = helpers.run(
                f"{name}-rm",
                source,
                _script(REMOVE, VOLUME=volume),
                [docker.types.Mount("/docker.sock", node_socket, type="bind")],
            )
            state, err = helpers.wait(remover, 120)
            removed = state == "complete"
            if not removed:
                raise MoveFailed(
                    f"volume {volume} was copied, but removing the old one failed "
                    f"({state}: {err or '-'}); remove it on its node with docker volume rm"
                )
        return {"entries": received if received is not None else sent, "removed_old": removed}
    finally:
        helpers.remove_all()


def set_home(admin: SwarmAdmin, record: str, node_id: str, labels: dict) -> None:
    """Write the home record: a config whose label names the node (configs never change)."""
    api = admin.client.api
    with contextlib.suppress(NotFound):
        api.remove_config(record)
    api.create_config(record, node_id.encode(), labels={**labels})


def home_of(admin: SwarmAdmin, record: str) -> str:
    """The node of a home record, or empty."""
    try:
        found = admin.client.api.inspect_config(record)
    except NotFound:
        return ""
    return (found["Spec"].get("Labels") or {}).get(swarmspec.LABEL_NODE, "")
