"""The ``tfspawner`` command for admins."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import docker
from docker.errors import APIError, DockerException
from traitlets.config.loader import PyFileConfigLoader

from . import imageref
from .pullprogress import PullFailed, PullProgress


class CommandError(Exception):
    pass


def load_spawner(config_file: str):
    """A TFSpawner configured from a jupyterhub_config.py, as the hub would see it."""
    from .hub import _NoUser
    from .spawner import TFSpawner

    path = Path(config_file)
    if not path.is_file():
        raise CommandError(f"config file {config_file} not found (use -f PATH)")
    config = PyFileConfigLoader(path.name, path=str(path.parent.resolve())).load_config()
    return TFSpawner(config=config, user=_NoUser())


def engine() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as e:
        raise CommandError(f"cannot reach the Docker engine ({e}); is dockerd running?") from None
    return client


def pin(reference: str, client: docker.DockerClient) -> str:
    """Resolve a tag to its manifest digest in the registry; keep the tag for readers."""
    try:
        ref = imageref.parse(reference)
    except imageref.InvalidImageReference as e:
        raise CommandError(str(e)) from None
    lookup = str(imageref.ImageRef(ref.domain, ref.path, ref.tag or "latest"))
    try:
        digest = client.images.get_registry_data(lookup).id
    except APIError as e:
        raise CommandError(f"could not resolve {lookup} in its registry: {e.explanation}") from None
    return str(imageref.ImageRef(ref.domain, ref.path, ref.tag or "latest", digest))


def _bar(label: str, percent: int, out) -> None:
    filled = percent * 30 // 100
    out.write(f"\r{label}: [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%")
    out.flush()


def pull(ref: imageref.ImageRef, client: docker.DockerClient, label: str, out=sys.stderr) -> str:
    """Pull one pinned image by digest, drawing a progress bar; return what happened."""
    try:
        client.images.get(str(ref))
        return "present"
    except docker.errors.ImageNotFound:
        pass
    progress = PullProgress()
    repository, digest = ref.pull_args()
    try:
        for event in client.api.pull(repository, tag=digest, stream=True, decode=True):
            progress.update(event)
            _bar(label, progress.percent, out)
    except (APIError, PullFailed) as e:
        out.write("\n")
        raise CommandError(f"pulling {ref} failed: {e}") from None
    _bar(label, 100, out)
    out.write("\n")
    image = client.images.get(str(ref))
    if not any(ref.matches_repo_digest(d) for d in image.attrs.get("RepoDigests") or []):
        raise CommandError(f"{ref}: the pulled image does not carry the pinned digest")
    return "pulled"


def cmd_images_pin(args) -> int:
    print(pin(args.reference, engine()))
    return 0


def cmd_images_pull(args) -> int:
    spawner = load_spawner(args.config)
    refs, _ = spawner.check_config()
    client = engine()
    for alias, ref in refs.items():
        if not ref.pinned:
            print(f"{alias}: {ref} is not pinned; skipped", file=sys.stderr)
            continue
        print(f"{alias}: {ref} {pull(ref, client, alias)}")
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
        "pull", help="pull every image of TFSpawner.images by digest"
    )
    pull_parser.add_argument("-f", "--config", default="jupyterhub_config.py")
    pull_parser.set_defaults(func=cmd_images_pull)
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
