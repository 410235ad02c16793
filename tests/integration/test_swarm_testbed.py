"""The swarm test bed itself: placement, fake GPUs, node-local volumes, the host's path to tasks.

Against the three-node swarm of `scripts/testbed swarm up`, through docker-py only.
"""

from __future__ import annotations

import http.server
import os
import threading
import urllib.request

import pytest
from docker.types import (
    EndpointSpec,
    Mount,
    Resources,
    RestartPolicy,
    ServiceMode,
)

from tests.harness.swarm import (
    TEST_LABEL,
    Swarm,
    only_task,
    read_swarm_env,
    remove_test_objects,
    task_in_state,
    unique,
    wait_for,
)
from tfspawner import swarmspec

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="module")
def swarm():
    env = read_swarm_env()
    if env is None:
        reason = "no .testbed/swarm.env; run `scripts/testbed swarm up`"
        if os.environ.get("TFSPAWNER_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"swarm test cannot run: {reason}", pytrace=False)
        pytest.skip(reason)
    swarm = Swarm.from_env(env)
    yield swarm
    remove_test_objects(swarm)


@pytest.fixture
def client(swarm):
    client = swarm.client()
    yield client
    client.close()


def start_service(client, swarm, image, command, *, node_id, **kwargs):
    """A one-shot service pinned to one node, labelled for cleanup."""
    return client.services.create(
        image,
        command=command,
        name=unique("tfsw-test"),
        labels={TEST_LABEL: "true"},
        container_labels={TEST_LABEL: "true"},
        constraints=[f"node.id=={node_id}"],
        restart_policy=RestartPolicy(condition="none"),
        endpoint_spec=EndpointSpec(mode="dnsrr"),
        mode=ServiceMode("replicated", replicas=1),
        **kwargs,
    )


def task_container(swarm, task):
    """The container of a task, inspected on the node that runs it."""
    node = swarm.node(task["NodeID"])
    node_client = node.client()
    try:
        container_id = task["Status"]["ContainerStatus"]["ContainerID"]
        return node_client.api.inspect_container(container_id)
    finally:
        node_client.close()


def test_the_swarm_has_two_workers_with_three_fake_gpus_each(client, swarm):
    nodes = {node.id: node.attrs for node in client.nodes.list()}
    assert set(nodes) == {node.id for node in swarm.nodes}
    for node in swarm.nodes:
        attrs = nodes[node.id]
        assert attrs["Status"]["State"] == "ready"
        # Every node is "vm": placement must go by id or label.
        assert attrs["Description"]["Hostname"] == "vm"
        assert attrs["Spec"]["Labels"][swarm.node_label] == node.name
    gpus = swarmspec.cluster_gpus(nodes.values())
    assert sorted(gpus) == sorted(
        swarmspec.NodeGPU(node.id, gpu) for node in swarm.workers for gpu in node.gpus
    )
    assert len(gpus) == 6


def test_a_pinned_image_runs_on_each_worker(client, swarm, test_image):
    services = {
        node.id: start_service(client, swarm, test_image, ["sleep", "300"], node_id=node.id)
        for node in swarm.workers
    }
    for node_id, service in services.items():
        task = wait_for("a running task", task_in_state(service, "running"), timeout=90)
        assert task["NodeID"] == node_id
        container = task_container(swarm, task)
        assert container["State"]["Running"]
        assert container["Config"]["Labels"][TEST_LABEL] == "true"
        # The node pulled the pin from the loopback registry, digest and all.
        assert container["Config"]["Image"] == test_image
        service.remove()


def test_a_gpu_task_gets_one_of_its_nodes_fake_uuids(client, swarm, test_image):
    worker = swarm.workers[1]
    service = start_service(
        client,
        swarm,
        test_image,
        ["sleep", "300"],
        node_id=worker.id,
        resources=Resources(generic_resources={"NVIDIA-GPU": 1}),
    )
    task = wait_for("a running GPU task", task_in_state(service, "running"), timeout=90)
    # Engine 20.10 keeps the assignment out of the task: only the node's container has it.
    assert swarmspec.assigned_gpus_from_task(task) == ()
    container = task_container(swarm, task)
    assigned = swarmspec.assigned_gpus_from_env(container["Config"]["Env"])
    assert len(assigned) == 1
    assert assigned[0] in worker.gpus
    service.remove()


def test_a_gpu_named_by_uuid_reaches_the_container_from_the_task_spec(client, swarm, test_image):
    """A pool of one's own: placed by node id, the UUID in NVIDIA_VISIBLE_DEVICES, no count."""
    worker = swarm.workers[0]
    spec = swarmspec.service_spec(
        name=unique("tfsw-test"),
        image=test_image,
        labels={TEST_LABEL: "true"},
        user="1000:100",
        environment={},
        args=["sleep", "300"],
        network=swarm.network,
        node_id=worker.id,
        pids_limit=128,
        gpu_uuids=[worker.gpus[2]],
    )
    service = client.services.get(client.api.create_service(**swarmspec.api_kwargs(spec))["ID"])
    task = wait_for("a running GPU task", task_in_state(service, "running"), timeout=90)
    assert task["NodeID"] == worker.id
    # The manager's record names the GPU; the node's container agrees.
    assert swarmspec.pinned_gpus_from_task(task) == (worker.gpus[2],)
    env = task_container(swarm, task)["Config"]["Env"]
    assert f"NVIDIA_VISIBLE_DEVICES={worker.gpus[2]}" in env
    assert swarmspec.assigned_gpus_from_env(env) == ()
    service.remove()


def test_a_named_volume_is_local_to_its_node(swarm, client, test_image):
    first, second = swarm.workers
    volume = unique("tfsw-test-vol")
    mount = Mount(
        target="/home/jovyan",
        source=volume,
        type="volume",
        labels={TEST_LABEL: "true"},
    )
    writer = start_service(
        client,
        swarm,
        test_image,
        ["sh", "-c", "echo kept > /home/jovyan/note.txt"],
        node_id=first.id,
        mounts=[mount],
    )
    wait_for("the writer to finish", task_in_state(writer, "complete"), timeout=90)
    reader = start_service(
        client,
        swarm,
        test_image,
        ["sh", "-c", "test ! -e /home/jovyan/note.txt"],
        node_id=second.id,
        mounts=[mount],
    )
    # The other node made a fresh volume of the same name: the note is not there.
    wait_for("the reader to finish", task_in_state(reader, "complete"), timeout=90)
    for node in (first, second):
        node_client = node.client()
        try:
            assert node_client.volumes.get(volume).attrs["Driver"] == "local"
        finally:
            node_client.close()


def test_the_host_reaches_a_task_over_the_attachable_overlay(swarm, client, test_image):
    service = start_service(
        client,
        swarm,
        test_image,
        ["python3", "-m", "http.server", "8000", "--directory", "/etc"],
        node_id=swarm.workers[0].id,
        networks=[swarm.network],
    )
    task = wait_for("a running server", task_in_state(service, "running"), timeout=90)
    address = swarmspec.task_address(task, swarm.network)
    assert address

    def fetch():
        try:
            with urllib.request.urlopen(f"http://{address}:8000/hostname", timeout=2) as r:
                return r.read()
        except OSError:
            return None

    assert wait_for(f"HTTP from {address}", fetch, timeout=30).strip()
    service.remove()


def test_a_task_reaches_the_host_at_the_hub_address(swarm, client, test_image):
    """The way back: a server calling the hub API on the host's address on the nodes' bridge."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((swarm.hub_ip, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://{swarm.hub_ip}:{server.server_address[1]}/hub/api"
        service = start_service(
            client,
            swarm,
            test_image,
            [
                "python3",
                "-c",
                f"import urllib.request; urllib.request.urlopen({url!r}, timeout=10)",
            ],
            node_id=swarm.workers[1].id,
            networks=[swarm.network],
        )
        wait_for("the task's request", task_in_state(service, "complete"), timeout=90)
        assert seen == ["/hub/api"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_built_server_spec_is_confined_on_the_swarm(swarm, client, test_image):
    """What swarmspec asks for is what the node's container gets (Engine 20.10, API 1.41)."""
    worker = swarm.workers[0]
    spec = swarmspec.service_spec(
        name=unique("tfsw-test"),
        image=test_image,
        labels={TEST_LABEL: "true", "tfspawner.user": "ada"},
        user="1000:100",
        environment={"NVIDIA_VISIBLE_DEVICES": "all"},
        args=["sleep", "300"],
        network=swarm.network,
        volumes={unique("tfsw-test-vol"): "/home/jovyan"},
        volume_labels={TEST_LABEL: "true"},
        node_id=worker.id,
        mem_limit="256m",
        cpu_limit=0.5,
        pids_limit=128,
        cap_add=["NET_BIND_SERVICE"],
        shm_size="64m",
        gpus=1,
    )
    created = client.api.create_service(**swarmspec.api_kwargs(spec))
    service = client.services.get(created["ID"])
    task = wait_for("a running server", task_in_state(service, "running"), timeout=90)
    assert swarmspec.task_verdict(task).state == "running"
    info = task_container(swarm, task)
    host = info["HostConfig"]
    assert info["Config"]["User"] == "1000:100"
    assert info["Config"]["Labels"]["tfspawner.user"] == "ada"
    assert host["CapDrop"] == ["ALL"]
    assert host["CapAdd"] == ["NET_BIND_SERVICE"]
    assert host["PidsLimit"] == 128
    assert host["Memory"] == 256 * 1024**2
    assert host["NanoCpus"] == 500_000_000
    assert host["Init"] is True
    assert not host["Privileged"]
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/home/jovyan"]["Type"] == "volume"
    assert mounts["/dev/shm"]["TmpfsOptions"]["SizeBytes"] == 64 * 1024**2
    # The image's NVIDIA_VISIBLE_DEVICES is dropped; the GPU comes from the scheduler.
    env = info["Config"]["Env"]
    assert not any(e.startswith("NVIDIA_VISIBLE_DEVICES=") for e in env)
    assert swarmspec.assigned_gpus_from_env(env)[0] in worker.gpus
    service.remove()


def test_a_task_no_node_can_take_is_refused_at_once(swarm, client, test_image):
    """More GPUs than any node has: the task pends with the reason, and the verdict is final."""
    service = start_service(
        client,
        swarm,
        test_image,
        ["sleep", "300"],
        node_id=swarm.workers[0].id,
        resources=Resources(generic_resources={"NVIDIA-GPU": 4}),
    )

    def refused():
        found = only_task(service)
        verdict = found and swarmspec.task_verdict(found)
        return verdict if verdict and verdict.final else None

    verdict = wait_for("a final verdict", refused, timeout=30)
    assert verdict.state == "refused"
    assert "free GPU" in verdict.message
    service.remove()
