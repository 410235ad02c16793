"""The ``tfspawner`` command for admins."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

from . import admincmd, imageref, registryauth
from .engine import admin
from .errors import CommandError
from .gpupool import Owner


def load_config(config_file: str):
    """The traitlets config of a jupyterhub_config.py; any error it raises is one CommandError."""
    path = Path(config_file)
    if not path.is_file():
        raise CommandError(f"config file {config_file} not found (use -f PATH)")
    try:
        return PyFileConfigLoader(path.name, path=str(path.parent.resolve())).load_config()
    except Exception as e:
        # The file is the admin's Python: it raises for a missing TFSPAWNER_* variable.
        cause = e.__cause__ or e
        raise CommandError(f"{config_file}: {cause}") from None


SWARM_SPAWNERS = {"tfswarmspawner", "tfspawner.swarmspawner.TFSwarmSpawner"}


def on_swarm(config_file: str) -> bool:
    """Whether the config's spawner_class is TFSwarmSpawner."""
    spawner_class = load_config(config_file).JupyterHub.get("spawner_class", "")
    if isinstance(spawner_class, type):
        spawner_class = f"{spawner_class.__module__}.{spawner_class.__name__}"
    return spawner_class in SWARM_SPAWNERS


def load_spawner(config_file: str):
    """A TFSpawner (or TFSwarmSpawner) configured from a jupyterhub_config.py, as the hub sees it."""
    from .hub import NoUser
    from .spawner import TFSpawner

    spawner_class = TFSpawner
    if on_swarm(config_file):
        from .swarmspawner import TFSwarmSpawner

        spawner_class = TFSwarmSpawner
    try:
        return spawner_class(config=load_config(config_file), user=NoUser())
    except CommandError:
        raise
    except Exception as e:
        raise CommandError(f"{config_file}: {e}") from None


def pull(ref: imageref.ImageRef, engine: admin.AdminEngine, label: str) -> str:
    """Pull one pinned image by digest, drawing a progress bar; return what happened."""
    return engine.pull(ref, admin.progress_bar(label))


def cmd_images_pin(args) -> int:
    print(admin.connect().pin(args.reference))
    return 0


def cmd_images_pull(args) -> int:
    refs = load_spawner(args.config).settings.refs
    engine = admin.connect()
    for alias, ref in refs.items():
        if not ref.pinned:
            print(f"{alias}: {ref} is not pinned; skipped", file=sys.stderr)
            continue
        print(f"{alias}: {ref} {pull(ref, engine, alias)}")
    return 0


class Report:
    """Doctor's findings, printed as they come; failures make the exit status 1."""

    def __init__(self, out=sys.stdout):
        self.out, self.failed = out, False

    def ok(self, what: str, detail: str) -> None:
        print(f"ok    {what}: {detail}", file=self.out)

    def warn(self, what: str, detail: str) -> None:
        print(f"warn  {what}: {detail}", file=self.out)

    def fail(self, what: str, detail: str) -> None:
        self.failed = True
        print(f"FAIL  {what}: {detail}", file=self.out)


def doctor(config_file: str, report: Report) -> None:
    refs, profiles, gpus = {}, [], []
    try:
        settings = load_spawner(config_file).settings
        refs, profiles, gpus = settings.refs, settings.profiles, settings.gpus
        report.ok(
            "config", f"{config_file}: {len(profiles)} profile(s), {len(gpus)} GPU(s) in the pool"
        )
    except Exception as e:
        report.fail("config", str(e))

    try:
        engine = admin.connect()
        info = engine.info()
        report.ok("engine", f"Docker {info.get('ServerVersion')} at {engine.address}")
    except CommandError as e:
        report.fail("engine", str(e))
        engine = info = None

    needs_gpu = any(p.gpus for p in profiles)
    if info is not None:
        runtimes = set(info.get("Runtimes") or {})
        labels = info.get("Labels") or []
        if "nvidia" in runtimes:
            report.ok("gpu runtime", "the engine has the nvidia runtime")
        elif any(label.startswith("tfspawner.testbed.gpu=") for label in labels):
            report.ok("gpu runtime", "stand-in NVIDIA hook of the test bed (no real GPU)")
        elif needs_gpu:
            report.fail(
                "gpu runtime",
                "GPU profiles are configured but the engine has no nvidia runtime; install "
                "the NVIDIA container toolkit (docs/nvidia-container-toolkit.md)",
            )
        else:
            report.ok("gpu runtime", "none, and no profile asks for a GPU")

    if engine is not None:
        for alias, ref in refs.items():
            if not ref.pinned:
                report.warn(f"image {alias}", f"{ref} is not pinned by digest")
                continue
            state = engine.image_state(ref)
            if state == "absent":
                report.fail(
                    f"image {alias}", f"{ref} is not on this host; run `tfspawner images pull`"
                )
            elif state == "pinned":
                report.ok(f"image {alias}", f"{ref.name} matches its pin {ref.digest[:19]}")
            else:
                report.fail(
                    f"image {alias}", f"{ref} is present but does not carry its pinned digest"
                )
        check_registries(engine, refs, report)

    proxy = shutil.which("configurable-http-proxy")
    if proxy:
        report.ok("proxy", proxy)
    else:
        report.fail(
            "proxy",
            "configurable-http-proxy is not on PATH; npm install -g configurable-http-proxy",
        )


def check_registries(engine: admin.AdminEngine, refs: dict, report: Report) -> None:
    """Ask each registry for one pinned image with the login the hub would send."""
    by_registry: dict[str, imageref.ImageRef] = {}
    for ref in refs.values():
        if ref.pinned:
            by_registry.setdefault(registryauth.registry_of(ref), ref)
    for registry, ref in sorted(by_registry.items()):
        what = f"registry {registry}"
        try:
            creds = registryauth.lookup(registry)
        except registryauth.CredentialError as e:
            report.fail(what, str(e))
            continue
        try:
            engine.distribution(ref, creds)
        except admin.RegistryFailed as e:
            why = str(e)
            if registryauth.refused(why):
                report.fail(what, f"refuses the login ({creds.source}): {why}")
            else:
                report.fail(what, f"{ref}: {why}")
            continue
        if creds.found:
            report.ok(what, f"accepts the login from {creds.source}")
        else:
            report.ok(what, f"answers without a login ({creds.source})")


def cmd_doctor(args) -> int:
    report = Report()
    doctor(args.config, report)
    return 1 if report.failed else 0


def known_servers(config_file: str) -> set | None:
    """Servers the hub's database says are running; None when it cannot be read."""
    import sqlalchemy
    from jupyterhub import orm
    from sqlalchemy.orm import Session

    config = load_config(config_file)
    url = config.JupyterHub.get("db_url", "sqlite:///jupyterhub.sqlite")
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        return None  # connecting would create an empty database
    try:
        engine = sqlalchemy.create_engine(url)
        with Session(engine) as db:
            query = db.query(orm.Spawner).filter(orm.Spawner.server != None)  # noqa: E711
            return {Owner(spawner.user.name, spawner.name) for spawner in query}
    except Exception as e:
        print(f"cannot read the hub database ({e.__class__.__name__})", file=sys.stderr)
        return None


def _owner(text: str) -> Owner:
    user, _, server = text.partition("/")
    return Owner(user, server)


def cmd_gpus(args) -> int:
    from . import nvml

    if on_swarm(args.config):
        return swarm_gpus(args)
    spawner = load_spawner(args.config)
    engine = admin.connect()
    known = known_servers(args.config)
    records = engine.servers(spawner.hub_name)
    if args.remove:
        return remove_unknown(engine, _owner(args.remove), records, known)
    try:
        found = nvml.discover()
        print("NVML found: " + ", ".join(f"{g.describe()} {g.uuid}" for g in found))
    except nvml.GPUDiscoveryError as e:
        print(f"NVML: {e}")
    gpus = spawner.settings.gpus
    print(f"pool ({spawner.hub_name}): " + (", ".join(g.describe() for g in gpus) or "empty"))
    holders = {}
    unknown = []
    for record in records:
        who = f"{record['user']}/{record['server']}" if record["server"] else record["user"]
        if known is not None and _owner(who) not in known:
            unknown.append(record)
            who += f" (not known to the hub, since {record['since'][:16]})"
        for gpu_id in record["gpus"]:
            holders[gpu_id] = who
    for gpu in gpus:
        print(f"  {gpu.id:>6}  {holders.get(gpu.id, 'free')}")
    for gpu_id in sorted(set(holders) - {g.id for g in gpus}):
        print(f"  {gpu_id:>6}  {holders[gpu_id]} (not in the configured pool)")
    _report_unknown(
        known, unknown, lambda r: f"profile {r['profile'] or '-'}, container {r['container']}"
    )
    return 0


def swarm_gpus(args) -> int:
    """The swarm's GPUs: node, UUID, holder and since when, read from the manager."""
    from .engine import swarmadmin

    spawner = load_spawner(args.config)
    engine = swarmadmin.connect(spawner.client_kwargs)
    known = known_servers(args.config)
    records = engine.servers(spawner.hub_name)
    if args.remove:
        return remove_unknown(engine, _owner(args.remove), records, known)
    gpus = engine.gpus(spawner.gpu_resource)
    nodes = {node["ID"] for node, _ in gpus}
    print(
        f"pool ({spawner.hub_name}, swarm at {engine.address}): "
        f"{len(gpus)} GPU(s) on {len(nodes)} node(s)"
    )
    holders: dict[str, tuple[str, dict]] = {}
    unknown = []
    for record in records:
        who = f"{record['user']}/{record['server']}" if record["server"] else record["user"]
        if known is not None and _owner(who) not in known:
            unknown.append(record)
            who += " (not known to the hub)"
        for gpu_id in record["gpus"]:
            holders[gpu_id] = (who, record)
    print(f"  {'NODE':<24} {'GPU':<44} {'HOLDER':<24} SINCE")
    for node, uuid in gpus:
        where = f"{swarmadmin.node_name(node)} ({node['ID'][:12]})"
        who, record = holders.get(uuid, ("free", {}))
        print(f"  {where:<24} {uuid:<44} {who:<24} {swarmadmin.since(record)}")
    for gpu_id in sorted(set(holders) - {uuid for _, uuid in gpus}):
        who, record = holders[gpu_id]
        print(f"  {'?':<24} {gpu_id:<44} {who:<24} {swarmadmin.since(record)} (no node has it)")
    _report_unknown(
        known, unknown, lambda r: f"node {(r['node'] or '-')[:12]}, service {r['container']}"
    )
    return 0


def _report_unknown(known: set | None, unknown: list[dict], where) -> None:
    """The servers the hub does not know, one line each; ``where`` says where each runs."""
    if known is None:
        print("The hub database could not be read, so servers it lost are not told apart.")
    for record in unknown:
        who = f"{record['user']}/{record['server']}" if record["server"] else record["user"]
        print(
            f"not known to the hub: {who}, GPUs {','.join(record['gpus']) or 'none'}, "
            f"{where(record)}, since {record['since']}"
        )


def remove_unknown(engine: admin.AdminEngine, owner, records: list[dict], known: set | None) -> int:
    """Stop and remove a running server the hub does not know; its volume stays."""
    if known is None:
        raise CommandError(
            "the hub database cannot be read, so it is not certain the hub does not know "
            f"{owner}; stop it from the hub's admin page instead"
        )
    if owner in known:
        raise CommandError(f"the hub knows {owner}; stop it from the hub's admin page instead")
    mine = [r for r in records if (r["user"], r["server"]) == (owner.user, owner.server)]
    if not mine:
        raise CommandError(f"no running container of {owner}")
    for record in mine:
        engine.remove(record["id"])
        print(
            f"removed container {record['container']} of {owner}; "
            f"GPUs {','.join(record['gpus']) or 'none'} are free again; its notebooks stay"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfspawner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    images = commands.add_parser("images", help="the pinned image catalogue")
    image_commands = images.add_subparsers(dest="images_command", required=True)
    pin_parser = image_commands.add_parser(
        "pin", help="resolve REF's tag to its digest and print the pinned reference"
    )
    pin_parser.add_argument(
        "reference", metavar="REF", help="e.g. tensorflow/tensorflow:2.9.3-gpu-jupyter"
    )
    pin_parser.set_defaults(func=cmd_images_pin)
    pull_parser = image_commands.add_parser(
        "pull", help="pull every image of TFSpawner.images and the catalogue file by digest"
    )
    pull_parser.add_argument("-f", "--config", default="jupyterhub_config.py")
    pull_parser.set_defaults(func=cmd_images_pull)
    # Imported here: imagecycle builds on this module's helpers.
    from . import imagecycle

    imagecycle.add_commands(image_commands)

    doctor_parser = commands.add_parser(
        "doctor", help="check the engine, GPU runtime, images, proxy and config"
    )
    doctor_parser.add_argument("-f", "--config", default="jupyterhub_config.py")
    doctor_parser.set_defaults(func=cmd_doctor)

    gpus_parser = commands.add_parser(
        "gpus", help="the GPU pool, what NVML finds, and who holds what (from engine labels)"
    )
    gpus_parser.add_argument("-f", "--config", default="jupyterhub_config.py")
    gpus_parser.add_argument(
        "--remove",
        metavar="USER[/SERVER]",
        help="stop and remove a running server the hub does not know, freeing its GPUs",
    )
    gpus_parser.set_defaults(func=cmd_gpus)
    admincmd.add_parser(commands)
    from . import volumecmd

    volumecmd.add_parser(commands)
    from . import sshproxy  # stdlib only: it also runs alone, on users' machines

    sshproxy.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as e:
        print(f"tfspawner: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # ConfigError and trait errors name the setting
        print(f"tfspawner: configuration error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
