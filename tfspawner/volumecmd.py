"""``tfspawner volumes move``: a user's notebook volume to another node of the swarm.

Named volumes are local to a node, and a user's server goes back to the node
that holds theirs. When that node must go (hardware, a drain for good), an
admin moves the volume: its files are copied with owners and modes by two
throwaway helper services, and a home record (a Swarm config, see
``swarmspec.home_record_name``) tells the hub's next start where it is now.
Nothing of the user's is deleted unless ``--remove-old`` is given.
"""

from __future__ import annotations

import json
import sys

from . import containerspec, swarmspec, volumes
from .errors import CommandError


def saved_home(config_file: str, user: str, server: str, per_server: bool) -> str:
    """The node in the hub database's saved state of the server (or a sibling sharing it)."""
    import sqlalchemy
    from jupyterhub import orm
    from sqlalchemy.orm import Session

    from .cli import load_config

    url = load_config(config_file).JupyterHub.get("db_url", "sqlite:///jupyterhub.sqlite")
    if url.startswith("sqlite:///"):
        from pathlib import Path

        if not Path(url[len("sqlite:///") :]).is_file():
            return ""
    try:
        with Session(sqlalchemy.create_engine(url)) as db:
            query = db.query(orm.Spawner).join(orm.User).filter(orm.User.name == user)
            found = {s.name: (s.state or {}) for s in query}
    except Exception as e:
        print(f"cannot read the hub database ({e.__class__.__name__})", file=sys.stderr)
        return ""
    if isinstance(found.get(server), str):
        found[server] = json.loads(found[server])
    node = (found.get(server) or {}).get("swarm_node", "")
    if node or per_server:
        return node
    return next((s.get("swarm_node") for s in found.values() if s.get("swarm_node")), "")


def find_node(nodes: list[dict], wanted: str) -> dict:
    """A node by id, unique id prefix, or unique hostname."""
    exact = [n for n in nodes if n["ID"] == wanted]
    if exact:
        return exact[0]
    matches = [n for n in nodes if n["ID"].startswith(wanted)] or [
        n for n in nodes if (n.get("Description") or {}).get("Hostname") == wanted
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CommandError(f"no node {wanted!r} in the swarm (give its id, see docker node ls)")
    raise CommandError(f"{wanted!r} names {len(matches)} nodes; give the node id")


def cmd_volumes_move(args) -> int:
    from .cli import _owner, known_servers, load_spawner, on_swarm
    from .engine import swarmadmin

    if not on_swarm(args.config):
        raise CommandError("volumes move is for TFSwarmSpawner: on one engine volumes never move")
    spawner = load_spawner(args.config)
    owner = _owner(args.owner)
    storage = spawner.settings.storage
    if storage.host_root:
        raise CommandError("volume_host_root is set: those directories are not named volumes")
    volume = volumes.volume_name(
        spawner.hub_name, owner.user, owner.server, per_server=storage.per_server
    )
    admin = swarmadmin.connect(spawner.client_kwargs)

    # A server that runs could write while its files are copied.
    running = [r for r in admin.servers(spawner.hub_name) if r["user"] == owner.user]
    if not storage.per_server or not owner.server:
        shared = running
    else:
        shared = [r for r in running if r["server"] == owner.server]
    known = known_servers(args.config) or set()
    known_running = [o for o in known if o.user == owner.user]
    if shared or (known_running and not storage.per_server):
        raise CommandError(
            f"{owner} has a server running; stop it first (its volume {volume} is in use)"
        )

    nodes = admin.nodes()
    target = find_node(nodes, args.to)
    record = swarmspec.home_record_name(spawner.prefix, volume)
    source_id = (
        find_node(nodes, args.source)["ID"]
        if args.source
        else swarmadmin.home_of(admin, record)
        or saved_home(args.config, owner.user, owner.server, storage.per_server)
    )
    if not source_id:
        raise CommandError(
            f"neither a home record nor the hub database says which node holds {volume}; "
            "give it with --from NODE"
        )
    if source_id == target["ID"]:
        raise CommandError(f"{volume} is already on node {target['ID'][:12]}")
    if not swarmspec.node_takes_tasks(next((n for n in nodes if n["ID"] == source_id), {})):
        raise CommandError(
            f"node {source_id[:12]}, which holds {volume}, is down or drained; its files can "
            "be copied only while it runs tasks (make it active again, or copy them by hand)"
        )
    if not swarmspec.node_takes_tasks(target):
        raise CommandError(f"node {target['ID'][:12]} is down or drained")

    profile = next((p for p in spawner.settings.profiles if p.default), None)
    profile = profile or spawner.settings.profiles[0]
    image = spawner.settings.image_of(profile)
    helper = containerspec.helper_labels(hub=spawner.hub_name, user=owner.user, server=owner.server)
    volume_labels = {
        containerspec.LABEL_MANAGED: "true",
        containerspec.LABEL_HUB: spawner.hub_name,
        containerspec.LABEL_USER: owner.user,
        containerspec.LABEL_SERVER: owner.server if storage.per_server else "",
    }
    name = f"{spawner.prefix}-move-{record.rsplit('-', 1)[-1][:12]}"
    print(f"copying {volume} from node {source_id[:12]} to node {target['ID'][:12]} ...")
    result = swarmadmin.move_volume(
        admin,
        volume=volume,
        source=source_id,
        target=target["ID"],
        image=image,
        labels=helper,
        volume_labels=volume_labels,
        network=spawner.network_name,
        name=name,
        remove_old=args.remove_old,
        node_socket=args.node_socket,
    )
    swarmadmin.set_home(
        admin,
        record,
        target["ID"],
        {
            containerspec.LABEL_HUB: spawner.hub_name,
            swarmspec.LABEL_NODE: target["ID"],
            swarmspec.LABEL_VOLUME: volume,
        },
    )
    entries = result["entries"]
    print(
        f"moved {volume}"
        + (f" ({entries} entries)" if entries is not None else "")
        + f" to node {target['ID'][:12]}; {owner}'s next start goes there. "
        + (
            "The old volume was removed."
            if result["removed_old"]
            else f"The old volume stays on node {source_id[:12]} (remove it with --remove-old "
            "or docker volume rm there)."
        )
    )
    return 0


def add_parser(subcommands) -> None:
    parser = subcommands.add_parser("volumes", help="users' notebook volumes on a swarm")
    commands = parser.add_subparsers(dest="volumes_command", required=True)
    move = commands.add_parser(
        "move",
        help="copy a user's volume to another node (server stopped); the next start goes there",
    )
    move.add_argument("owner", metavar="USER[/SERVER]")
    move.add_argument("--to", required=True, metavar="NODE", help="node id, prefix or hostname")
    move.add_argument(
        "--from",
        dest="source",
        metavar="NODE",
        help="the node that holds the volume, when neither the home record nor the hub "
        "database says",
    )
    move.add_argument(
        "--remove-old",
        action="store_true",
        help="remove the old volume after a complete copy (a helper on its node uses the "
        "node's Docker socket); kept otherwise",
    )
    move.add_argument(
        "--node-socket",
        default="/var/run/docker.sock",
        metavar="PATH",
        help="with --remove-old: the Docker socket's path on the old node",
    )
    move.add_argument("-f", "--config", default="jupyterhub_config.py")
    move.set_defaults(func=cmd_volumes_move)
