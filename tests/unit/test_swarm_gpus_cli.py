"""`tfspawner gpus` on a swarm: node, UUID, holder and since, read through the Swarm admin engine."""

from __future__ import annotations

from tfspawner import cli
from tfspawner.engine import swarmadmin

NODE = {"ID": "node1abcdefghijk", "Description": {"Hostname": "gpu1"}}


class FakeSwarm:
    address = "unix:///manager.sock"

    def servers(self, hub_name):
        return [
            {
                "user": "ann",
                "server": "",
                "container": "jupyter-ann",
                "id": "svc1",
                "gpus": ["GPU-b"],
                "profile": "gpu",
                "since": "2026-01-02T03:04:05+00:00",
                "node": NODE["ID"],
            }
        ]

    def gpus(self, kind):
        return [(NODE, "GPU-a"), (NODE, "GPU-b")]


def test_gpus_on_a_swarm_lists_node_uuid_holder_since(tmp_path, monkeypatch, capsys):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        'c.JupyterHub.spawner_class = "tfswarmspawner"\n'
        'c.TFSwarmSpawner.manager_url = "unix:///manager.sock"\n'
        f'c.TFSpawner.images = {{"small": "r/x@sha256:{"0" * 64}"}}\n'
        'c.TFSpawner.profiles = [{"slug": "cpu", "display_name": "CPU", "image": "small"}]\n'
        f'c.JupyterHub.db_url = "sqlite:///{tmp_path}/none.sqlite"\n'
    )
    seen = {}

    def connect(kwargs):
        seen.update(kwargs)
        return FakeSwarm()

    monkeypatch.setattr(swarmadmin, "connect", connect)
    assert cli.main(["gpus", "-f", str(config)]) == 0
    out = capsys.readouterr().out
    assert seen["base_url"] == "unix:///manager.sock"
    assert "2 GPU(s) on 1 node(s)" in out
    (free,) = [line for line in out.splitlines() if "GPU-a" in line]
    assert "gpu1 (node1abcdefg)" in free and "free" in free
    (held,) = [line for line in out.splitlines() if "GPU-b" in line]
    assert "ann" in held and "2026-01-02T03:04:05" in held


def test_home_record_names_are_stable_and_per_volume():
    from tfspawner import swarmspec

    name = swarmspec.home_record_name("jupyter", "tfspawner-hub-ann")
    assert name == swarmspec.home_record_name("jupyter", "tfspawner-hub-ann")
    assert name != swarmspec.home_record_name("jupyter", "tfspawner-hub-bob")
    assert name.startswith("jupyter-home-")


def test_volumes_move_finds_nodes_by_id_prefix_or_unique_hostname():
    import pytest

    from tfspawner.errors import CommandError
    from tfspawner.volumecmd import find_node

    nodes = [
        {"ID": "abc123", "Description": {"Hostname": "gpu1"}},
        {"ID": "abd456", "Description": {"Hostname": "vm"}},
        {"ID": "xyz789", "Description": {"Hostname": "vm"}},
    ]
    assert find_node(nodes, "abc123")["ID"] == "abc123"
    assert find_node(nodes, "abd")["ID"] == "abd456"
    assert find_node(nodes, "gpu1")["ID"] == "abc123"
    with pytest.raises(CommandError, match="2 nodes"):
        find_node(nodes, "vm")
    with pytest.raises(CommandError, match="no node"):
        find_node(nodes, "nope")
