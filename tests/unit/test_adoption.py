"""Which running containers a new start may take over, and the GPUs it then records."""

import logging

import pytest

from tfspawner import adoption, containerspec
from tfspawner.gpupool import GPU, GPUPool, Owner
from tfspawner.hubstate import HubState

IMAGE = "registry.example/tf@sha256:" + "a" * 64
ALICE, BOB = Owner("alice"), Owner("bob")


def container(image=IMAGE, profile="gpu", user="4242:100", token="secret", gpus="0"):
    labels = {
        containerspec.LABEL_IMAGE: image,
        containerspec.LABEL_PROFILE: profile,
        containerspec.LABEL_GPUS: gpus,
    }
    env = [f"JUPYTERHUB_API_TOKEN={token}"] if token else ["OTHER=1"]
    return {
        "Id": "c1",
        "Created": "2026-11-28T09:00:00.000000000Z",
        "Config": {"Labels": labels, "User": user, "Env": env},
    }


def state() -> HubState:
    # No engine: judging and recording an adoption is in-memory work.
    return HubState("hub", GPUPool([GPU("0"), GPU("1")]), None, logging.getLogger("test"))


@pytest.mark.parametrize(
    "changes, why",
    [
        ({}, None),
        ({"image": "registry.example/tf@sha256:" + "b" * 64}, "from another image"),
        ({"profile": "cpu"}, "with another profile (cpu)"),
        ({"user": "0:0"}, "as another user id"),
        ({"token": ""}, "without a token the hub can use"),
    ],
)
def test_why_not(changes, why):
    assert (
        adoption.why_not(container(**changes), image=IMAGE, profile="gpu", user="4242:100") == why
    )


def test_judge_records_the_labelled_gpus():
    hub = state()
    ids, why = adoption.judge(
        container(gpus="1"), hub, ALICE, image=IMAGE, profile="gpu", user="4242:100"
    )
    assert (ids, why) == (["1"], None)
    assert hub.pool.ids_of(ALICE) == ["1"]


def test_judge_refuses_a_gpu_held_by_another_server():
    hub = state()
    hub.pool.restore(BOB, ["0"])
    ids, why = adoption.judge(
        container(gpus="0"), hub, ALICE, image=IMAGE, profile="gpu", user="4242:100"
    )
    assert ids == [] and why.startswith("with a GPU the hub has given to another server")
    assert hub.pool.ids_of(BOB) == ["0"] and hub.pool.ids_of(ALICE) == []


def test_judge_leaves_the_pool_alone_when_the_container_does_not_fit():
    hub = state()
    ids, why = adoption.judge(
        container(profile="cpu"), hub, ALICE, image=IMAGE, profile="gpu", user="4242:100"
    )
    assert (ids, why) == ([], "with another profile (cpu)")
    assert hub.pool.ids_of(ALICE) == []


def test_api_token_is_read_from_the_environment():
    assert adoption.api_token(container()) == "secret"
    assert adoption.api_token(container(token="")) == ""
