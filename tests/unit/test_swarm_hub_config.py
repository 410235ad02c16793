"""jupyterhub_config.py with TFSPAWNER_ENGINE=swarm, and the stack file that sets it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example.edu/tf/2.9@sha256:" + "a" * 64


def load(monkeypatch, **env):
    for name in list(os.environ):
        if name.startswith("TFSPAWNER_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT)).load_config()


def test_engine_swarm_selects_tfswarmspawner_with_its_traits(monkeypatch):
    from tfspawner.hub import NoUser
    from tfspawner.swarmspawner import TFSwarmSpawner

    config = load(
        monkeypatch,
        TFSPAWNER_ENGINE="swarm",
        TFSPAWNER_SWARM_MANAGER_URL="tcp://manager1.example.edu:2376",
        TFSPAWNER_SWARM_NODE_CONSTRAINTS="node.labels.lab == ml",
        TFSPAWNER_IMAGE_CPU=IMAGE,
        TFSPAWNER_IMAGE_GPU=IMAGE,
        TFSPAWNER_ADMIN_USERS="prof",
        TFSPAWNER_NETWORK="tfspawner-servers",
    )
    assert config.JupyterHub.spawner_class == "tfswarmspawner"
    spawner = TFSwarmSpawner(config=config, user=NoUser())
    assert spawner.manager_url == "tcp://manager1.example.edu:2376"
    assert spawner.client_kwargs["base_url"] == "tcp://manager1.example.edu:2376"
    assert spawner.node_constraints == ["node.labels.lab == ml"]
    assert spawner.gpu_resource == "NVIDIA-GPU"
    assert spawner.network_name == "tfspawner-servers"
    assert [p.slug for p in spawner.settings.profiles] == ["tf29-cpu", "tf29-gpu"]


def test_engine_defaults_to_one_docker_host_and_refuses_unknown_engines(monkeypatch):
    env = {"TFSPAWNER_IMAGE_CPU": IMAGE, "TFSPAWNER_ADMIN_USERS": "prof"}
    assert load(monkeypatch, **env).JupyterHub.spawner_class == "tfspawner"
    with pytest.raises(Exception, match="TFSPAWNER_ENGINE must be docker or swarm"):
        load(monkeypatch, TFSPAWNER_ENGINE="kubernetes", **env)


def test_the_swarm_stack_runs_the_hub_with_the_swarm_engine():
    stack = yaml.safe_load((ROOT / "deploy" / "swarm-stack.yaml").read_text())
    environment = stack["services"]["hub"]["environment"]
    assert environment["TFSPAWNER_ENGINE"] == "swarm"
    assert environment["TFSPAWNER_SWARM_MANAGER_URL"] == "unix:///var/run/docker.sock"
    assert "/var/run/docker.sock:/var/run/docker.sock" in stack["services"]["hub"]["volumes"]
