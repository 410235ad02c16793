import pytest

from tfspawner import containerspec
from tfspawner.containerspec import UnsafeContainerConfig


def build_host_config(**overrides):
    kwargs = dict(
        extra={},
        network_mode="bridge",
        port_bindings={8888: ("127.0.0.1",)},
        binds={},
        mounts=[],
        auto_remove=True,
        mem_limit=None,
        cpu_limit=None,
        pids_limit=1024,
        cap_add=[],
        gpu_ids=[],
    )
    kwargs.update(overrides)
    return containerspec.host_config(**kwargs)


def test_host_config_defaults():
    assert build_host_config() == {
        "auto_remove": True,
        "binds": {},
        "mounts": [],
        "network_mode": "bridge",
        "port_bindings": {8888: ("127.0.0.1",)},
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": 1024,
        "device_requests": [],
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"mem_limit": "4G"}, {"mem_limit": "4G", "memswap_limit": "4G"}),
        ({"cpu_limit": 1.5}, {"cpu_period": 100_000, "cpu_quota": 150_000}),
        (
            {"cpu_limit": 2, "extra": {"cpu_period": 50_000}},
            {"cpu_period": 50_000, "cpu_quota": 100_000},
        ),
        ({"port_bindings": None}, {}),
        ({"cap_add": ["SYS_PTRACE"]}, {"cap_add": ["SYS_PTRACE"]}),
        (
            {"cap_add": ["SYS_PTRACE"], "extra": {"cap_add": ["NET_BIND_SERVICE"]}},
            {"cap_add": ["NET_BIND_SERVICE", "SYS_PTRACE"]},
        ),
        (
            {"gpu_ids": ["1", "GPU-abc"]},
            {
                "device_requests": [
                    {"Driver": "nvidia", "DeviceIDs": ["1", "GPU-abc"], "Capabilities": [["gpu"]]}
                ]
            },
        ),
        # Extras cannot switch the hardening off.
        ({"extra": {"cap_drop": []}}, {"cap_drop": ["ALL"]}),
        (
            {"extra": {"security_opt": ["seccomp=unconfined"]}},
            {"security_opt": ["seccomp=unconfined", "no-new-privileges"]},
        ),
        ({"extra": {"pids_limit": -1}}, {"pids_limit": 1024}),
        ({"extra": {"device_requests": [{"Count": -1}]}}, {"device_requests": []}),
        ({"extra": {"shm_size": "1G"}}, {"shm_size": "1G"}),
    ],
)
def test_host_config(overrides, expected):
    config = build_host_config(**overrides)
    for key, value in expected.items():
        assert config[key] == value
    if overrides.get("port_bindings", ...) is None:
        assert "port_bindings" not in config


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"privileged": True}, "privileged"),
        ({"network_mode": "host"}, "network_mode='host'"),
        ({"pid_mode": "host"}, "pid_mode='host'"),
        ({"ipc_mode": "host"}, "ipc_mode='host'"),
        ({"binds": {"/var/run/docker.sock": {"bind": "/d.sock"}}}, "Docker socket"),
        ({"binds": ["/run/docker.sock:/var/run/docker.sock"]}, "Docker socket"),
        ({"binds": {"/var/run/": {"bind": "/x"}}}, "Docker socket"),
    ],
)
def test_host_config_refuses_host_access(extra, message):
    with pytest.raises(UnsafeContainerConfig, match=message):
        build_host_config(extra=extra)


def test_host_network_refused_even_from_network_name():
    with pytest.raises(UnsafeContainerConfig, match="network_mode"):
        build_host_config(network_mode="host")


@pytest.mark.parametrize(
    ("gpu_ids", "visible"), [([], "void"), (["0"], "0"), (["1", "3"], "1,3"), (["MIG-x"], "MIG-x")]
)
def test_gpu_environment(gpu_ids, visible):
    assert containerspec.gpu_environment(gpu_ids) == {"NVIDIA_VISIBLE_DEVICES": visible}


def test_labels():
    assert containerspec.labels(
        hub="h", user="Alice", server="gpu", image="x@sha256:1", gpu_ids=["0", "2"], profile="p"
    ) == {
        "tfspawner.profile": "p",
        "tfspawner.managed": "true",
        "tfspawner.hub": "h",
        "tfspawner.user": "Alice",
        "tfspawner.server": "gpu",
        "tfspawner.image": "x@sha256:1",
        "tfspawner.gpus": "0,2",
    }


def test_create_kwargs_keep_identity_over_extras():
    kwargs = containerspec.create_kwargs(
        image="img",
        name="tfspawner-alice",
        command=["jupyterhub-singleuser"],
        environment={"NVIDIA_VISIBLE_DEVICES": "void", "A": "1"},
        labels={"tfspawner.user": "alice"},
        user="100001:100",
        port=8888,
        volumes=["/tf"],
        extra={
            "user": "root",
            "environment": {"NVIDIA_VISIBLE_DEVICES": "all", "B": "2"},
            "labels": {"tfspawner.user": "mallory", "team": "x"},
            "working_dir": "/tf",
        },
    )
    assert kwargs == {
        "image": "img",
        "name": "tfspawner-alice",
        "command": ["jupyterhub-singleuser"],
        "ports": {"8888/tcp": None},
        "volumes": ["/tf"],
        "working_dir": "/tf",
        "environment": {"NVIDIA_VISIBLE_DEVICES": "void", "A": "1", "B": "2"},
        "labels": {"tfspawner.user": "alice", "team": "x"},
        "user": "100001:100",
    }


@pytest.mark.parametrize(
    ("labels", "ids"),
    [({"tfspawner.gpus": "0,2"}, ["0", "2"]), ({"tfspawner.gpus": ""}, []), ({}, [])],
)
def test_gpus_from_labels(labels, ids):
    assert containerspec.gpus_from_labels(labels) == ids


@pytest.mark.parametrize(
    ("host_config", "shares"),
    [
        ({}, 1024),
        ({"cpu_shares": 512}, 512),
        # Inspected: Docker reports an unset weight as 0.
        ({"CpuShares": 0}, 1024),
        ({"CpuShares": 2}, 2),
    ],
)
def test_cpu_shares(host_config, shares):
    assert containerspec.cpu_shares(host_config) == shares


@pytest.mark.parametrize(
    ("labels", "shares"),
    [
        ({"tfspawner.cpu-shares": "512"}, 512),
        ({"tfspawner.cpu-shares": ""}, None),
        ({"tfspawner.cpu-shares": "-1"}, None),
        ({}, None),
    ],
)
def test_labelled_cpu_shares(labels, shares):
    assert containerspec.labelled_cpu_shares(labels) == shares


POOL_NAMES = {"0": "0", "1": "1", "2": "2", "GPU-aaaa": "0", "GPU-bbbb": "1", "GPU-cccc": "2"}


def inspected(requests=None, runtime="runc", env=None):
    return {
        "HostConfig": {"DeviceRequests": requests, "Runtime": runtime},
        "Config": {"Env": env or []},
    }


def gpu_request(ids=None, count=0, driver="nvidia"):
    return {"Driver": driver, "DeviceIDs": ids, "Count": count, "Capabilities": [["gpu"]]}


@pytest.mark.parametrize(
    ("info", "held"),
    [
        (inspected(), ()),
        (inspected([gpu_request(["1", "2"])]), ("1", "2")),
        (inspected([gpu_request(["GPU-bbbb"])]), ("1",)),
        # --gpus 2 gets the first GPUs; --gpus all gets every one.
        (inspected([gpu_request(count=2)]), ("0", "1")),
        (inspected([gpu_request(count=-1)]), ("0", "1", "2")),
        (inspected([{**gpu_request(["2"]), "Driver": ""}]), ("2",)),
        (inspected([{"Driver": "other", "DeviceIDs": ["1"], "Capabilities": [["tpu"]]}]), ()),
        # The environment counts under the nvidia runtime only.
        (inspected(env=["NVIDIA_VISIBLE_DEVICES=all"]), ()),
        (inspected(runtime="nvidia", env=["NVIDIA_VISIBLE_DEVICES=all"]), ("0", "1", "2")),
        (inspected(runtime="nvidia", env=["NVIDIA_VISIBLE_DEVICES=GPU-cccc,0"]), ("2", "0")),
        (inspected(runtime="nvidia", env=["NVIDIA_VISIBLE_DEVICES=void"]), ()),
        (inspected(runtime="nvidia", env=["NVIDIA_VISIBLE_DEVICES=none"]), ()),
        # GPUs outside the pool are not the pool's business.
        (inspected([gpu_request(["7", "GPU-ffff"])]), ()),
    ],
)
def test_gpus_in_use(info, held):
    assert containerspec.gpus_in_use(info, POOL_NAMES) == held


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("2026-11-28T02:50:01.12345Z", "2026-11-28T02:50:01.123456789Z"),
        ("2026-11-28T02:50:01Z", "2026-11-28T02:50:01.000000001Z"),
        ("2026-11-28T02:50:01.9Z", "2026-11-28T02:50:02Z"),
    ],
)
def test_created_ns_orders_what_the_strings_do_not(earlier, later):
    assert containerspec.created_ns(earlier) < containerspec.created_ns(later)


def test_server_records_leave_out_helpers_and_strangers():
    listed = [
        {
            "Id": "a",
            "Names": ["/s"],
            "State": "running",
            "Created": 0,
            "Labels": containerspec.labels(
                hub="h", user="ann", server="", image="i", gpu_ids=["1"], profile="gpu"
            ),
        },
        {
            "Id": "b",
            "Names": ["/x"],
            "State": "running",
            "Created": 0,
            "Labels": {
                **containerspec.labels(hub="h", user="ann", server="", image="i"),
                containerspec.LABEL_INIT: "true",
            },
        },
        {"Id": "c", "Names": ["/y"], "State": "running", "Created": 0, "Labels": {}},
    ]
    [record] = containerspec.server_records(listed)
    assert record["user"] == "ann" and record["gpus"] == ["1"] and record["profile"] == "gpu"
    assert record["since"] == "1970-01-01T00:00:00+00:00"
