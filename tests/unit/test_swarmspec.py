import pytest

from tfspawner import swarmspec
from tfspawner.swarmspec import NodeGPU, TaskVerdict

IMAGE = "127.0.0.1:5000/tf/gpu@sha256:" + "a" * 64
LABELS = {"tfspawner.managed": "true", "tfspawner.user": "ada"}


def build(**overrides):
    kwargs = dict(
        name="tfspawner-ada",
        image=IMAGE,
        labels=LABELS,
        user="1000:100",
        environment={"JUPYTERHUB_API_TOKEN": "t"},
        network="servers",
        pids_limit=512,
    )
    kwargs.update(overrides)
    return swarmspec.service_spec(**kwargs)


def test_service_spec_defaults():
    assert build() == {
        "Name": "tfspawner-ada",
        "Labels": LABELS,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": IMAGE,
                "Labels": LABELS,
                "Env": ["JUPYTERHUB_API_TOKEN=t", "NVIDIA_VISIBLE_DEVICES=void"],
                "User": "1000:100",
                "Mounts": [],
                "Init": True,
                "CapabilityDrop": ["ALL"],
            },
            "Resources": {"Limits": {"Pids": 512}},
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Placement": {"Constraints": []},
            "Networks": [{"Target": "servers"}],
        },
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def container(spec):
    return spec["TaskTemplate"]["ContainerSpec"]


def resources(spec):
    return spec["TaskTemplate"]["Resources"]


@pytest.mark.parametrize(
    ("overrides", "part", "expected"),
    [
        ({"mem_limit": "4G"}, resources, {"Limits": {"Pids": 512, "MemoryBytes": 4 * 1024**3}}),
        ({"mem_limit": 1024}, resources, {"Limits": {"Pids": 512, "MemoryBytes": 1024}}),
        ({"cpu_limit": 1.5}, resources, {"Limits": {"Pids": 512, "NanoCPUs": 1_500_000_000}}),
        (
            {"mem_guarantee": "512m", "cpu_guarantee": 0.5},
            resources,
            {
                "Limits": {"Pids": 512},
                "Reservations": {"MemoryBytes": 512 * 1024**2, "NanoCPUs": 500_000_000},
            },
        ),
        (
            {"gpus": 2},
            resources,
            {
                "Limits": {"Pids": 512},
                "Reservations": {
                    "GenericResources": [
                        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}
                    ]
                },
            },
        ),
        (
            {"cap_add": ["SYS_PTRACE", "NET_BIND_SERVICE", "SYS_PTRACE"]},
            lambda s: container(s)["CapabilityAdd"],
            ["NET_BIND_SERVICE", "SYS_PTRACE"],
        ),
        (
            {"shm_size": "1g"},
            lambda s: container(s)["Mounts"],
            [
                {
                    "Type": "tmpfs",
                    "Target": "/dev/shm",
                    "TmpfsOptions": {"SizeBytes": 1024**3, "Mode": 0o1777},
                }
            ],
        ),
        (
            {
                "volumes": {"tfspawner-ada": "/home/jovyan/work"},
                "volume_labels": {"tfspawner.user": "ada"},
            },
            lambda s: container(s)["Mounts"],
            [
                {
                    "Type": "volume",
                    "Source": "tfspawner-ada",
                    "Target": "/home/jovyan/work",
                    "VolumeOptions": {"Labels": {"tfspawner.user": "ada"}},
                }
            ],
        ),
        (
            {"node_id": "n1", "constraints": ["node.labels.gpu==true", "node.id==n1"]},
            lambda s: s["TaskTemplate"]["Placement"],
            {"Constraints": ["node.id==n1", "node.labels.gpu==true"]},
        ),
        (
            {"args": ["--port=8888"], "workdir": "/home/jovyan", "hostname": "ada"},
            lambda s: {k: container(s)[k] for k in ("Args", "Dir", "Hostname")},
            {"Args": ["--port=8888"], "Dir": "/home/jovyan", "Hostname": "ada"},
        ),
    ],
)
def test_service_spec_options(overrides, part, expected):
    assert part(build(**overrides)) == expected


@pytest.mark.parametrize(
    ("overrides", "env"),
    [
        # CPU servers: no GPU even where the image says "all" and nvidia is the default runtime.
        ({"environment": {"NVIDIA_VISIBLE_DEVICES": "all"}}, ["NVIDIA_VISIBLE_DEVICES=void"]),
        # Swarm's scheduler assigns: the runtime reads DOCKER_RESOURCE_NVIDIA-GPU instead.
        ({"gpus": 1, "environment": {"NVIDIA_VISIBLE_DEVICES": "all"}}, []),
        # Nobody may pretend to hold GPUs through the environment.
        ({"gpus": 1, "environment": {"DOCKER_RESOURCE_NVIDIA-GPU": "GPU-x"}}, []),
        (
            {"gpu_uuids": ["GPU-a", "GPU-b"], "node_id": "n1"},
            ["NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b"],
        ),
    ],
)
def test_service_spec_gpu_environment(overrides, env):
    overrides = {"environment": {}, **overrides}
    assert container(build(**overrides))["Env"] == env


def test_a_gpu_count_is_never_zero_in_the_request():
    for spec in (build(gpus=0), build(gpu_uuids=["GPU-a"], node_id="n1")):
        assert "Reservations" not in resources(spec)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"gpus": -1}, "count >= 0"),
        ({"gpus": True}, "count >= 0"),
        ({"gpus": 1.0}, "count >= 0"),
        ({"gpus": 1, "gpu_uuids": ["GPU-a"], "node_id": "n1"}, "not both"),
        ({"gpu_uuids": ["GPU-a"]}, "node.id placement"),
        ({"user": "jovyan"}, "numeric"),
        ({"user": "1000"}, "numeric"),
        ({"user": "0:0"}, "uid 0"),
        ({"mem_limit": "lots"}, "not a size"),
    ],
)
def test_service_spec_refuses(overrides, error):
    with pytest.raises(ValueError, match=error):
        build(**overrides)


def test_api_kwargs_for_docker_py():
    spec = build()
    assert swarmspec.api_kwargs(spec) == {
        "task_template": spec["TaskTemplate"],
        "name": "tfspawner-ada",
        "labels": LABELS,
        "mode": {"Replicated": {"Replicas": 1}},
        "endpoint_spec": {"Mode": "dnsrr"},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), ("100", 100), ("1k", 1024), ("1.5G", 1536 * 1024**2), ("2gb", 2 * 1024**3)],
)
def test_parse_bytes(value, expected):
    assert swarmspec.parse_bytes(value) == expected


def gpu_node(node_id, *uuids, state="ready", availability="active", extra=()):
    resources = [{"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": u}} for u in uuids]
    return {
        "ID": node_id,
        "Spec": {"Availability": availability},
        "Status": {"State": state},
        "Description": {"Resources": {"NanoCPUs": 2, "GenericResources": resources + list(extra)}},
    }


@pytest.mark.parametrize(
    ("nodes", "ready_only", "expected"),
    [
        ([], False, []),
        ([{"ID": "m", "Description": {"Resources": {}}}], False, []),
        (
            [gpu_node("w1", "GPU-a", "GPU-b"), gpu_node("w2", "GPU-c")],
            False,
            [NodeGPU("w1", "GPU-a"), NodeGPU("w1", "GPU-b"), NodeGPU("w2", "GPU-c")],
        ),
        (
            [
                gpu_node(
                    "w1",
                    "GPU-a",
                    extra=[
                        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 3}},
                        {"NamedResourceSpec": {"Kind": "FPGA", "Value": "f0"}},
                    ],
                )
            ],
            False,
            [NodeGPU("w1", "GPU-a")],
        ),
        (
            [
                gpu_node("w1", "GPU-a", state="down"),
                gpu_node("w2", "GPU-b", availability="drain"),
                gpu_node("w3", "GPU-c"),
            ],
            True,
            [NodeGPU("w3", "GPU-c")],
        ),
    ],
)
def test_cluster_gpus(nodes, ready_only, expected):
    assert swarmspec.cluster_gpus(nodes, ready_only=ready_only) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ([], ()),
        (["PATH=/bin", "DOCKER_RESOURCE_NVIDIA-GPU=GPU-a"], ("GPU-a",)),
        (["DOCKER_RESOURCE_NVIDIA-GPU=GPU-a,GPU-b"], ("GPU-a", "GPU-b")),
        (["DOCKER_RESOURCE_NVIDIA-GPU="], ()),
        (["DOCKER_RESOURCE_NVIDIA-GPUX=GPU-a"], ()),
        ({"DOCKER_RESOURCE_NVIDIA-GPU": "GPU-a, GPU-b"}, ("GPU-a", "GPU-b")),
    ],
)
def test_assigned_gpus_from_env(env, expected):
    assert swarmspec.assigned_gpus_from_env(env) == expected


def test_assigned_gpus_from_task():
    task = {
        "AssignedGenericResources": [
            {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-b"}},
            {"NamedResourceSpec": {"Kind": "FPGA", "Value": "f0"}},
        ]
    }
    assert swarmspec.assigned_gpus_from_task(task) == ("GPU-b",)
    assert swarmspec.assigned_gpus_from_task({}) == ()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ([], ()),
        (["NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b"], ("GPU-a", "GPU-b")),
        (["NVIDIA_VISIBLE_DEVICES=void"], ()),
        (["NVIDIA_VISIBLE_DEVICES=all"], ()),
    ],
)
def test_pinned_gpus_from_task_and_service(env, expected):
    task = {"Spec": {"ContainerSpec": {"Env": env}}}
    service = {"Spec": {"TaskTemplate": {"ContainerSpec": {"Env": env}}}}
    assert swarmspec.pinned_gpus_from_task(task) == expected
    assert swarmspec.pinned_gpus_from_task(service) == expected


@pytest.mark.parametrize(
    ("network", "expected"),
    [("servers", "10.231.100.7"), ("net-id-1", "10.231.100.7"), ("ingress", None)],
)
def test_task_address(network, expected):
    task = {
        "NetworksAttachments": [
            {
                "Network": {"ID": "net-id-1", "Spec": {"Name": "servers"}},
                "Addresses": ["10.231.100.7/24"],
            }
        ]
    }
    assert swarmspec.task_address(task, network) == expected


def task(state, err="", exit_code=None):
    status = {"State": state, "Err": err}
    if exit_code is not None:
        status["ContainerStatus"] = {"ExitCode": exit_code}
    return {"Status": status}


@pytest.mark.parametrize(
    ("given", "node_state", "state", "final", "words"),
    [
        (task("running"), "ready", "running", False, ""),
        (task("preparing"), None, "starting", False, ""),
        (task("pending"), None, "starting", False, ""),
        (
            task("pending", "no suitable node (insufficient resources on 2 nodes)"),
            None,
            "refused",
            True,
            "free GPU",
        ),
        (
            task(
                "pending",
                "no suitable node (scheduling constraints not satisfied on 2 nodes; "
                "1 node not available for new tasks)",
            ),
            None,
            "refused",
            True,
            "down or drained",
        ),
        (
            task("pending", "no suitable node (scheduling constraints not satisfied on 3 nodes)"),
            None,
            "refused",
            True,
            "placement constraints",
        ),
        (
            task("pending", "no suitable node (unsupported platform on 3 nodes)"),
            None,
            "refused",
            True,
            "(no suitable node (unsupported platform on 3 nodes))",
        ),
        (
            task("rejected", "No such image: 127.0.0.1:5000/x@sha256:abc"),
            None,
            "refused",
            True,
            "not found in its registry",
        ),
        (
            task("rejected", "manifest unknown"),
            None,
            "refused",
            True,
            "not found in its registry",
        ),
        (
            task(
                "rejected",
                "pull access denied for x, repository does not exist or may require 'docker login'",
            ),
            None,
            "refused",
            True,
            "login",
        ),
        (
            task(
                "rejected",
                'invalid mount config for type "bind": invalid bind mount source, must be an absolute path',
            ),
            None,
            "refused",
            True,
            "storage could not be mounted",
        ),
        (task("rejected", "something odd.\nmore"), None, "refused", True, "(something odd)"),
        (task("failed", "task: non-zero exit (3)", 3), None, "failed", True, "exit code 3"),
        (
            task("failed", "starting container failed: OCI runtime create failed"),
            None,
            "failed",
            True,
            "(starting container failed: OCI runtime create failed)",
        ),
        (task("running"), "down", "failed", True, "not answering"),
        (task("starting"), "disconnected", "failed", True, "not answering"),
        (task("complete"), "down", "stopped", True, "has stopped"),
        (task("orphaned"), None, "failed", True, "left the swarm"),
        (task("shutdown"), None, "stopped", True, "has stopped"),
    ],
)
def test_task_verdict(given, node_state, state, final, words):
    node = {"Status": {"State": node_state}} if node_state else None
    verdict = swarmspec.task_verdict(given, node)
    assert (verdict.state, verdict.final) == (state, final)
    assert words in verdict.message
    # One sentence, whatever the engine said.
    assert verdict.message.count("\n") == 0
    if verdict.message:
        assert verdict.message.endswith((".", "profile.", "admin."))


def test_task_verdict_trims_a_long_reason():
    verdict = swarmspec.task_verdict(task("rejected", "x" * 500))
    assert len(verdict.message) < 260
    assert verdict == TaskVerdict("refused", verdict.message, True)
