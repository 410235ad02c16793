"""`tfspawner volumes move` on the real three-node swarm: a user's files follow them to another node."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_swarm_spawner import (  # noqa: F401 (fixtures)
    exec_on_node,
    live_services,
    manager,
    swarm,
    swarm_hub,
)
from tfspawner import cli, containerspec, swarmspec

pytestmark = pytest.mark.swarm


def volumes_on(bed, node_id: str, hub_name: str) -> list[str]:
    client = bed.node(node_id).client()
    try:
        found = client.volumes.list(filters={"label": f"{containerspec.LABEL_HUB}={hub_name}"})
        return [v.name for v in found]
    finally:
        client.close()


async def test_a_volume_moved_to_another_node_goes_with_the_next_start(
    swarm_hub,  # noqa: F811
    swarm,  # noqa: F811
    manager,  # noqa: F811
    capsys,
):
    hub = swarm_hub()
    config = str(hub.dir / "jupyterhub_config.py")
    await hub.create_user("gail")
    await hub.spawn("gail")
    _, task = live_services(manager, hub)["gail"]
    old = task["NodeID"]
    new = next(w.id for w in swarm.workers if w.id != old)
    uid = exec_on_node(swarm, task, ["id", "-u"])
    async with hub.client() as c:
        r = await c.put(
            "/user/gail/api/contents/moved.txt",
            json={"type": "file", "format": "text", "content": "came along"},
        )
        assert r.status_code in (200, 201), r.text

    # Refused while the server runs: nothing is copied.
    move = ["volumes", "move", "gail", "--to", new, "-f", config]
    assert await asyncio.to_thread(cli.main, move) == 1
    assert "stop it first" in capsys.readouterr().err
    assert volumes_on(swarm, new, hub.hub_name) == []

    await hub.stop_server("gail")
    assert await asyncio.to_thread(cli.main, move) == 0, capsys.readouterr().err
    assert "moved" in capsys.readouterr().out
    # The old volume stays without --remove-old; no helper service is left.
    assert volumes_on(swarm, old, hub.hub_name)
    assert not manager.services.list(filters={"label": f"{containerspec.LABEL_HUB}={hub.hub_name}"})

    await hub.spawn("gail")
    labels, task = live_services(manager, hub)["gail"]
    assert task["NodeID"] == new == labels[swarmspec.LABEL_NODE]
    # The file, with its owner, on the new node.
    assert exec_on_node(swarm, task, ["stat", "-c", "%u", "moved.txt"]) == uid
    async with hub.client() as c:
        r = await c.get("/user/gail/api/contents/moved.txt")
        assert r.status_code == 200, r.text
        assert r.json()["content"] == "came along"

    # Back to the old node: its old volume still has files, so nothing is overwritten.
    await hub.stop_server("gail")
    back = ["volumes", "move", "gail", "--to", old, "-f", config]
    assert await asyncio.to_thread(cli.main, back) == 1
    assert "already has files" in capsys.readouterr().err
    # --remove-old removes the source only after a complete copy (here to the manager).
    manager_id = next(n.id for n in swarm.nodes if n.name == "manager")
    # Each test bed node's engine listens on its own socket, not /var/run/docker.sock.
    socket = swarm.node(new).host.removeprefix("unix://")
    away = ["volumes", "move", "gail", "--to", manager_id, "--remove-old", "-f", config]
    away += ["--node-socket", socket]
    assert await asyncio.to_thread(cli.main, away) == 0, capsys.readouterr().err
    assert "old volume was removed" in capsys.readouterr().out
    assert volumes_on(swarm, new, hub.hub_name) == []
    assert volumes_on(swarm, manager_id, hub.hub_name)
