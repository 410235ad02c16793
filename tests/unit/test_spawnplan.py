"""The spawn plan: one pure function from settings, profile, ids and GPUs to every decision."""

import pytest

from tfspawner import containerspec, profiles, settings, spawnplan
from tfspawner.gpupool import Owner
from tfspawner.spawner import TFSpawner

IMAGE = "127.0.0.1:5000/x/y@sha256:" + "a" * 64


def make_settings(**traits):
    spawner = TFSpawner(
        images={"img": IMAGE},
        profiles=[
            {"slug": "cpu", "display_name": "CPU", "image": "img", "default": True},
            {
                "slug": "gpu",
                "display_name": "GPU",
                "image": "img",
                "gpus": 2,
                "mem_limit": "8G",
                "extra_env": {"COURSE": "ml101"},
                "datasets": [{"source": "course-data", "target": "/data"}],
            },
        ],
        gpu_pool=["0", "1", "2"],
        **traits,
    )
    return settings.build(spawner)


def plan_for(slug, gpu_ids=(), **traits):
    built = make_settings(**traits)
    [profile] = [p for p in built.profiles if p.slug == slug]
    return spawnplan.make(
        built,
        owner=Owner("alice", ""),
        profile=profile,
        uid=100001,
        gid=100,
        gpu_ids=list(gpu_ids),
        notebook_dir="/tf",
        admin_binds={},
        mem_limit="2G",
        cpu_limit=1.0,
    )


@pytest.mark.parametrize(
    ("slug", "gpu_ids", "env", "mem", "shm"),
    [
        ("cpu", [], {"NVIDIA_VISIBLE_DEVICES": "void", "HOME": "/tf"}, "2G", None),
        (
            "gpu",
            ["0", "2"],
            {"COURSE": "ml101", "NVIDIA_VISIBLE_DEVICES": "0,2", "HOME": "/tf"},
            8 * 1024**3,
            4 * 1024**3,  # shm_size_per_gpu (2G) per GPU
        ),
    ],
)
def test_plan_follows_the_profile(slug, gpu_ids, env, mem, shm):
    plan = plan_for(slug, gpu_ids)
    assert plan.image == IMAGE
    assert dict(plan.env) == env
    assert plan.mem_limit == mem
    assert plan.shm_size == shm
    assert plan.gpu_ids == tuple(gpu_ids)
    assert plan.user == "100001:100"
    assert plan.labels[containerspec.LABEL_GPUS] == ",".join(gpu_ids)
    assert plan.labels[containerspec.LABEL_PROFILE] == slug


def call_for(plan, extra_host=None, extra_create=None):
    return spawnplan.container_call(
        plan,
        name="c",
        command=["jupyterhub-singleuser"],
        environment=dict(plan.env),
        port=8888,
        network_mode="bridge",
        port_bindings=None,
        mounts=[],
        pids_limit=512,
        cap_add=[],
        extra_host=extra_host or {},
        extra_create=extra_create or {},
        allow_unsafe=[],
    )


def test_gpus_reach_the_device_request_through_the_plan():
    plan = plan_for("gpu", ["1", "2"])
    kwargs, host = call_for(plan)
    [request] = host["device_requests"]
    assert request["DeviceIDs"] == ["1", "2"]
    assert kwargs["environment"]["NVIDIA_VISIBLE_DEVICES"] == "1,2"
    assert host["binds"]["course-data"] == {"bind": "/data", "mode": "ro"}


@pytest.mark.parametrize(
    ("extra_host", "extra_create", "recorded"),
    [
        ({}, {}, "1024"),
        ({"cpu_shares": 512}, {}, "512"),
        # The record is the hub's: an admin's label cannot replace it.
        ({}, {"labels": {containerspec.LABEL_CPU_SHARES: "2"}}, "1024"),
    ],
)
def test_the_container_records_its_normal_cpu_weight(extra_host, extra_create, recorded):
    kwargs, host = call_for(plan_for("cpu"), extra_host, extra_create)
    assert kwargs["labels"][containerspec.LABEL_CPU_SHARES] == recorded
    assert containerspec.labelled_cpu_shares(kwargs["labels"]) == containerspec.cpu_shares(host)


@pytest.mark.parametrize(
    ("host_root", "source", "mode"),
    [
        (None, "tfspawner-", "rw,nocopy"),
        ("/srv/notebooks", "/srv/notebooks/tfspawner-", "rw"),
    ],
)
def test_storage_kind_owns_its_source_and_mode(host_root, source, mode):
    plan = plan_for("cpu", volume_host_root=host_root)
    assert plan.storage.source.startswith(source)
    assert plan.binds[plan.storage.source] == {"bind": "/tf", "mode": mode}


@pytest.mark.parametrize(
    ("extra_env", "message"),
    [
        ({"JUPYTERHUB_API_TOKEN": "x"}, "must not set JUPYTERHUB_API_TOKEN"),
        ({"HOME": "/root"}, "must not set HOME"),
        ({"1BAD": "x"}, "is not a variable name"),
        ({"OK": 1}, "must be text"),
    ],
)
def test_extra_env_refuses_what_the_hub_sets(extra_env, message):
    raw = [{"slug": "p", "display_name": "P", "image": "img", "extra_env": extra_env}]
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.validate_profiles(raw, ["img"])


def test_settings_are_built_once_per_config():
    spawner = TFSpawner(images={"img": IMAGE})
    assert settings.of(spawner) is settings.of(TFSpawner(images={"img": IMAGE}))
    assert settings.of(spawner) is not settings.of(TFSpawner(images={"img": IMAGE}, uid_base=5))
