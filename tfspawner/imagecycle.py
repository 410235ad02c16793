"""``tfspawner images recipe|rebuild|rollback|status|verify``: the monthly image cycle.

``rebuild`` resolves each recipe's base tag to its newest digest, builds the
recipe's Dockerfile on that base (pinned), pushes the result and appends the
new pin to the catalogue file, which the hub reads at each spawn.
"""

from __future__ import annotations

import datetime
import os
import sys

from . import adminview, catalogue, cli, containerspec, imageref, registryauth
from .engine import admin
from .errors import CommandError


def catalogue_path(args) -> str:
    """--catalogue, else TFSpawner.image_catalogue_file of the config."""
    if args.catalogue:
        return args.catalogue
    path = cli.load_spawner(args.config).image_catalogue_file
    if not path:
        raise CommandError(
            f"{args.config} sets no TFSpawner.image_catalogue_file; set it or pass --catalogue FILE"
        )
    return path


def load(path: str, missing_ok: bool = True) -> dict:
    try:
        return catalogue.load(path, missing_ok=missing_ok)
    except catalogue.CatalogueError as e:
        raise CommandError(str(e)) from None


def save(path: str, data: dict) -> None:
    try:
        catalogue.save(path, data)
    except (OSError, catalogue.CatalogueError) as e:
        raise CommandError(f"cannot write {path}: {e}") from None


def runs_as_root(user: str) -> bool:
    """Whether an image's ``Config.User`` starts its processes as root."""
    name = (user or "").split(":", 1)[0]
    return name in ("", "root", "0")


# --- recipe --------------------------------------------------------------------------


def cmd_recipe(args) -> int:
    path = catalogue_path(args)
    build_args = {}
    for item in args.build_arg or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--build-arg {item!r}: use NAME=VALUE")
        build_args[key] = value
    recipe = {
        "base": args.base,
        "repository": args.repository,
        "context": os.path.abspath(args.context),
        "dockerfile": args.dockerfile,
        "build_args": build_args,
    }
    if not os.path.isfile(os.path.join(recipe["context"], args.dockerfile)):
        raise CommandError(f"no {args.dockerfile} in {recipe['context']}")
    try:
        data = catalogue.set_recipe(load(path), args.alias, recipe)
    except catalogue.CatalogueError as e:
        raise CommandError(str(e)) from None
    save(path, data)
    print(f"{args.alias}: builds {args.repository} from {args.base} ({recipe['context']})")
    return 0


# --- rebuild -------------------------------------------------------------------------


def newest_digest(engine: admin.AdminEngine, ref: imageref.ImageRef) -> str:
    """The digest the registry gives ref's tag now."""
    creds = admin.credentials(ref)
    try:
        info = engine.distribution(ref, creds)
    except admin.RegistryFailed as e:
        why = str(e) + (f" (login: {creds.source})" if registryauth.refused(str(e)) else "")
        raise CommandError(f"resolving {ref} failed at registry {creds.registry}: {why}") from None
    return info["Descriptor"]["digest"]


def build(engine: admin.AdminEngine, recipe: dict, base: str, target: str) -> str:
    """Build the recipe on ``base`` as ``target``; return the image id."""
    return engine.build(
        recipe["context"],
        recipe.get("dockerfile") or "Dockerfile",
        {**recipe.get("build_args", {}), "BASE_IMAGE": base},
        target,
        {containerspec.LABEL_PREFIX + "base": base},
    )


def rebuild_one(engine: admin.AdminEngine, alias: str, recipe: dict, tag: str) -> tuple[str, str]:
    """(new pin, pinned base) for one alias."""
    base_tag = imageref.parse(recipe["base"])
    base_tag = imageref.ImageRef(base_tag.domain, base_tag.path, base_tag.tag or "latest")
    base = base_tag.with_digest(newest_digest(engine, base_tag))
    print(f"{alias}: base {base}", file=sys.stderr)
    cli.pull(base, engine, f"{alias} base")
    repository = imageref.parse(recipe["repository"])
    target = imageref.ImageRef(repository.domain, repository.path, tag)
    print(f"{alias}: building {target}", file=sys.stderr)
    build(engine, recipe, str(base), str(target))
    pinned = target.with_digest(engine.push(target))
    # Checked before the catalogue names it: the hub reads the pin at the next spawn.
    why = verify_one(engine, pinned, start=True)
    if why is not None:
        raise CommandError(
            f"{alias}: {pinned} fails verification ({why}); the catalogue is unchanged"
        )
    return str(pinned), str(base)


def cmd_rebuild(args) -> int:
    path = catalogue_path(args)
    data = load(path, missing_ok=False)
    recipes = {a: e["recipe"] for a, e in data["images"].items() if e.get("recipe")}
    aliases = args.alias or sorted(recipes)
    for alias in aliases:
        if alias not in recipes:
            raise CommandError(f"{alias}: no recipe in {path} (`tfspawner images recipe`)")
    if not aliases:
        raise CommandError(f"{path} has no recipes (`tfspawner images recipe`)")
    engine = admin.connect()
    now = datetime.datetime.now(datetime.timezone.utc)
    tag = args.tag or now.strftime("%Y%m%d-%H%M%S")
    for alias in aliases:
        pinned, base = rebuild_one(engine, alias, recipes[alias], tag)
        # Saved per alias: a later failure keeps what was already pushed.
        data = catalogue.add_pin(load(path), alias, pinned, base, now.isoformat(timespec="seconds"))
        save(path, data)
        print(f"{alias}: {pinned}")
    return 0


# --- rollback ------------------------------------------------------------------------


def cmd_rollback(args) -> int:
    path = catalogue_path(args)
    data = load(path, missing_ok=False)
    aliases = args.alias or [
        alias
        for alias, entry in data["images"].items()
        if entry.get("current", len(entry.get("pins") or []) - 1) > 0
    ]
    if not aliases:
        raise CommandError(f"no alias in {path} has an earlier pin")
    for alias in aliases:
        try:
            data, was, now = catalogue.rollback(data, alias)
        except catalogue.CatalogueError as e:
            raise CommandError(str(e)) from None
        print(f"{alias}: {was} -> {now}")
    save(path, data)
    return 0


# --- status --------------------------------------------------------------------------


def cmd_status(args) -> int:
    spawner = cli.load_spawner(args.config)
    refs, profiles = spawner.settings.refs, spawner.settings.profiles
    servers = admin.connect().servers(spawner.hub_name)
    pins = {alias: str(ref) for alias, ref in refs.items()}
    stale = catalogue.stale_servers(servers, {p.slug: p.image for p in profiles}, pins)
    # The admin page's images table, as text.
    images = adminview.images_view(refs, stale, spawner.image_catalogue_file)
    for entry in images["aliases"]:
        source = f"catalogue, built {entry['built']}" if entry["built"] else entry["source"]
        print(
            f"{entry['alias']}: current pin {entry['image']} ({source}; "
            f"{entry['stale']} running server(s) on an older pin)"
        )
    if images["catalogue_file"]:
        print(
            f"catalogue {images['catalogue_file']} last rebuilt: {images['last_rebuilt'] or 'never'}"
        )
    for server in stale:
        who = f"{server['user']}/{server['server']}" if server["server"] else server["user"]
        running = server["image"] or "(unlabelled)"
        print(f"stale: {who} ({server['alias']}) runs {running} since {server['since'][:16]}")
    print(f"{len(stale)} of {len(servers)} running server(s) run an older image than their pin")
    return 0


# --- verify --------------------------------------------------------------------------


def pins_to_verify(args) -> list[tuple[str, imageref.ImageRef, bool]]:
    """(alias, pinned reference, current) from the config's images and the catalogue file."""
    found = []
    path = args.catalogue
    if args.config and not args.catalogue:
        spawner = cli.load_spawner(args.config)
        path = spawner.image_catalogue_file
        overridden = catalogue.current_pins(load(path)) if path else {}
        for alias, reference in spawner.images.items():
            found.append((alias, reference, alias not in overridden))
    if path:
        found.extend(catalogue.all_pins(load(path, missing_ok=False)))
    if not found:
        raise CommandError("no pins to verify")
    result = []
    for alias, reference, current in found:
        try:
            result.append((alias, imageref.parse(reference), current))
        except imageref.InvalidImageReference as e:
            raise CommandError(f"{alias}: {e}") from None
    return result


def verify_one(engine: admin.AdminEngine, ref: imageref.ImageRef, start: bool) -> str | None:
    """Why ref fails verification; None when it passes."""
    if not ref.pinned:
        return f"{ref} is not pinned by digest"
    creds = admin.credentials(ref)
    try:
        info = engine.distribution(ref, creds)
    except admin.NotInRegistry:
        return f"{ref.digest} is not in {creds.registry}"
    except admin.RegistryFailed as e:
        why = str(e)
        if registryauth.refused(why):
            why = f"{creds.registry} refuses the login ({creds.source}): {why}"
        return why
    if info["Descriptor"]["digest"] != ref.digest:
        return f"{creds.registry} gives {info['Descriptor']['digest']}, not the pin"
    if not start:
        return None
    try:
        cli.pull(ref, engine, str(ref.name))
        user = engine.image_user(ref)
        if runs_as_root(user):
            return f"starts as root (USER {user or 'unset'})"
        uid = engine.uid_at_start(ref)
    except CommandError as e:
        return str(e)
    if uid in ("", "0"):
        return f"starts as uid {uid or '?'}"
    return None


def cmd_verify(args) -> int:
    pins = pins_to_verify(args)
    engine = admin.connect()
    report = cli.Report()
    for alias, ref, current in pins:
        what = f"{alias} {'(current)' if current else '(earlier)'}"
        why = verify_one(engine, ref, start=current or not args.current_only)
        if why is None:
            report.ok(what, f"{ref} is in its registry and starts as non-root")
        else:
            report.fail(what, f"{ref}: {why}")
    return 1 if report.failed else 0


# --- parser --------------------------------------------------------------------------


def add_commands(image_commands) -> None:
    def where(parser, config_default="jupyterhub_config.py"):
        parser.add_argument("-f", "--config", default=config_default)
        parser.add_argument(
            "--catalogue",
            metavar="FILE",
            help="the catalogue file, if not TFSpawner.image_catalogue_file of the config",
        )

    recipe = image_commands.add_parser(
        "recipe", help="set how ALIAS is rebuilt: its base tag, repository and Dockerfile"
    )
    recipe.add_argument("alias", metavar="ALIAS")
    recipe.add_argument("--base", required=True, help="the base tag to follow, e.g. REPO:TAG")
    recipe.add_argument(
        "--repository", required=True, help="where to push, e.g. registry.example.edu/tf/cpu"
    )
    recipe.add_argument("--context", default="deploy/images", help="build context directory")
    recipe.add_argument("--dockerfile", default="Dockerfile", help="relative to the context")
    recipe.add_argument("--build-arg", action="append", metavar="NAME=VALUE")
    where(recipe)
    recipe.set_defaults(func=cmd_recipe)

    rebuild = image_commands.add_parser(
        "rebuild",
        help="rebuild each recipe on its base's newest digest, push it, pin it in the catalogue",
    )
    rebuild.add_argument("alias", metavar="ALIAS", nargs="*", help="default: every recipe")
    rebuild.add_argument("--tag", help="tag to push (default: the UTC time, YYYYmmdd-HHMMSS)")
    where(rebuild)
    rebuild.set_defaults(func=cmd_rebuild)

    rollback = image_commands.add_parser(
        "rollback", help="make each alias's previous pin current again"
    )
    rollback.add_argument(
        "alias", metavar="ALIAS", nargs="*", help="default: every alias with an earlier pin"
    )
    where(rollback)
    rollback.set_defaults(func=cmd_rollback)

    status = image_commands.add_parser(
        "status", help="each alias's current pin, and running servers on an older image"
    )
    status.add_argument("-f", "--config", default="jupyterhub_config.py")
    status.set_defaults(func=cmd_status)

    verify = image_commands.add_parser(
        "verify",
        help="every pin is in its registry with its digest and starts as non-root; "
        "exit 1 otherwise",
    )
    verify.add_argument("--current-only", action="store_true", help="start only the current pins")
    where(verify)
    verify.set_defaults(func=cmd_verify)
