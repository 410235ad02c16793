"""The pure parts of TFSwarmSpawner and SwarmEngine: GPU choice, placement, views, passwd configs."""

import pytest

from tfspawner import gpupool
from tfspawner.engine.swarmengine import listed_state, newest_task, service_view
from tfspawner.swarmspawner import gpus_on_a_node, passwd_config, pick_node

NODES = {"g-a0": "a", "g-a1": "a", "g-a2": "a", "g-b0": "b", "g-b1": "b", "g-b2": "b"}


def test_a_gpu_goes_to_the_node_with_the_most_free_gpus():
    ids, node = gpus_on_a_node(["g-a2", "g-b0", "g-b1"], NODES, 1, ["a", "b"], {}, None, total=6)
    assert (ids, node) == (["g-b0"], "b")


def test_two_gpus_are_always_on_one_node():
    ids, node = gpus_on_a_node(["g-a2", "g-b0", "g-b2"], NODES, 2, ["a", "b"], {}, None, total=6)
    assert node == "b" and ids == ["g-b0", "g-b2"]
    with pytest.raises(gpupool.PoolExhausted, match="No machine has 2 free GPUs"):
        gpus_on_a_node(["g-a2", "g-b0"], NODES, 2, ["a", "b"], {}, None, total=6)


def test_a_node_that_is_down_gives_out_nothing():
    with pytest.raises(gpupool.PoolExhausted, match="All 6 GPUs are in use"):
        gpus_on_a_node(["g-b0", "g-b1"], NODES, 1, ["a"], {}, None, total=6)


def test_more_gpus_than_any_node_has_is_refused_as_such():
    with pytest.raises(gpupool.PoolExhausted, match="needs 4 GPUs on one machine"):
        gpus_on_a_node(list(NODES), NODES, 4, ["a", "b"], {}, None, total=6)


def test_the_home_node_wins_or_the_spawn_is_refused():
    assert gpus_on_a_node(["g-a1", "g-b0", "g-b1"], NODES, 1, ["a", "b"], {}, "a", total=6) == (
        ["g-a1"],
        "a",
    )
    with pytest.raises(gpupool.PoolExhausted, match="holds your files has no 1 free GPU "):
        gpus_on_a_node(["g-b0"], NODES, 1, ["a", "b"], {}, "a", total=6)


def test_cpu_placement_spreads_by_score_and_keeps_home():
    assert pick_node(["a", "b"], {"a": 2, "b": 1}) == "b"
    assert pick_node(["a", "b"], {"a": 2, "b": 1}, home="a") == "a"
    assert pick_node(["b"], {}, home="a") is None
    assert pick_node([], {}) is None


def test_the_passwd_config_keeps_the_base_and_adds_the_user():
    digest, passwd, group = passwd_config("ada", 1234, 100, "/tf")
    assert passwd.decode().startswith("root:x:0:0:")
    assert "ada:x:1234:100::/tf:" in passwd.decode()
    assert "users:x:100:" in group.decode()
    # Same user, same config; another uid, another one.
    assert passwd_config("ada", 1234, 100, "/tf")[0] == digest
    assert passwd_config("ada", 1235, 100, "/tf")[0] != digest


SERVICE = {
    "ID": "svc1",
    "CreatedAt": "2026-11-28T06:00:00.123456789Z",
    "Spec": {
        "Name": "tfspawner-hub-ada",
        "Labels": {"tfspawner.user": "ada"},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "img@sha256:" + "a" * 64, "User": "1234:100", "Env": []},
            "Resources": {"Limits": {"MemoryBytes": 1024}},
        },
    },
}


def task(state, created="2026-11-28T06:00:01Z", node="n1", **status):
    return {
        "ID": state,
        "CreatedAt": created,
        "NodeID": node,
        "Status": {"State": state, **status},
    }


def test_a_running_task_on_a_live_node_is_running():
    view = service_view(SERVICE, task("running"), {"Status": {"State": "ready"}})
    assert view["State"]["Running"] and listed_state(view) == "running"
    assert view["Config"]["User"] == "1234:100"
    assert view["HostConfig"]["Memory"] == 1024


def test_a_running_task_on_a_node_that_is_down_counts_as_stopped():
    view = service_view(SERVICE, task("running"), {"Status": {"State": "down"}})
    assert not view["State"]["Running"]
    assert view["Verdict"].final and "not answering" in view["State"]["Error"]
    assert listed_state(view) == "exited"


def test_a_service_not_yet_scheduled_is_starting():
    view = service_view(SERVICE, None, None)
    assert view["Verdict"].state == "starting" and listed_state(view) == "running"


def test_the_newest_task_is_the_current_one():
    old, new = task("failed", "2026-11-28T06:00:01Z"), task("running", "2026-11-28T06:00:09Z")
    assert newest_task([new, old]) is new
    assert newest_task([]) is None
