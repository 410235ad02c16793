"""The Docker engine for the ``tfspawner`` command: blocking calls, plain error messages."""

from __future__ import annotations

import sys
from collections.abc import Callable

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from .. import containerspec, imageref, registryauth
from ..errors import CommandError
from ..pullprogress import PullFailed, PullProgress
from .dockerengine import carries_pin


class RegistryFailed(RuntimeError):
    """The registry answered with an error; the message is redacted."""


class NotInRegistry(RegistryFailed):
    """The registry does not have that manifest."""


def credentials(ref: imageref.ImageRef) -> registryauth.Credentials:
    """The Docker config file's login for ref's registry, as the hub uses it."""
    try:
        return registryauth.lookup(registryauth.registry_of(ref))
    except registryauth.CredentialError as e:
        raise CommandError(str(e)) from None


def registry_error(what: str, ref: imageref.ImageRef, creds, error: Exception) -> CommandError:
    """A CommandError naming the registry and, when it refused the login, where it came from."""
    why = registryauth.redact(registryauth.reason(error), creds)
    if registryauth.refused(why):
        why += f" (login: {creds.source})"
    return CommandError(f"{what} {ref} failed at registry {creds.registry}: {why}")


def connect() -> AdminEngine:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as e:
        raise CommandError(f"cannot reach the Docker engine ({e}); is dockerd running?") from None
    return AdminEngine(client)


class AdminEngine:
    def __init__(self, client: docker.DockerClient):
        self.client = client

    @property
    def address(self) -> str:
        return self.client.api.base_url

    def info(self) -> dict:
        return self.client.info()

    # --- images --------------------------------------------------------------------

    def pin(self, reference: str) -> str:
        """Resolve a tag to its manifest digest in the registry; keep the tag for readers."""
        try:
            ref = imageref.parse(reference)
        except imageref.InvalidImageReference as e:
            raise CommandError(str(e)) from None
        lookup = imageref.ImageRef(ref.domain, ref.path, ref.tag or "latest")
        creds = credentials(lookup)
        try:
            digest = self.client.images.get_registry_data(
                str(lookup), auth_config=creds.auth_config
            ).id
        except APIError as e:
            why = registryauth.redact(registryauth.reason(e), creds)
            raise CommandError(f"could not resolve {lookup} in its registry: {why}") from None
        return str(imageref.ImageRef(ref.domain, ref.path, ref.tag or "latest", digest))

    def image_state(self, ref: imageref.ImageRef) -> str:
        """``absent``, ``pinned`` (present and carries its pin) or ``mismatch``."""
        try:
            image = self.client.images.get(str(ref))
        except ImageNotFound:
            return "absent"
        return "pinned" if carries_pin(ref, image.attrs) else "mismatch"

    def pull(self, ref: imageref.ImageRef, on_progress: Callable[[int], None]) -> str:
        """Pull one pinned image by digest unless present; ``present`` or ``pulled``."""
        if self.image_state(ref) != "absent":
            return "present"
        progress = PullProgress()
        repository, digest = ref.pull_args()
        creds = credentials(ref)
        try:
            for event in self.client.api.pull(
                repository, tag=digest, stream=True, decode=True, auth_config=creds.auth_config
            ):
                progress.update(event)
                on_progress(progress.percent)
        except (APIError, PullFailed) as e:
            raise registry_error("pulling", ref, creds, e) from None
        on_progress(100)
        if self.image_state(ref) != "pinned":
            raise CommandError(f"{ref}: the pulled image does not carry the pinned digest")
        return "pulled"

    def distribution(self, ref: imageref.ImageRef, creds: registryauth.Credentials) -> dict:
        """The registry's descriptor of ref, asked with ``creds``."""
        try:
            return self.client.api.inspect_distribution(str(ref), auth_config=creds.auth_config)
        except APIError as e:
            why = registryauth.redact(registryauth.reason(e), creds)
            raise (NotInRegistry if isinstance(e, NotFound) else RegistryFailed)(why) from None

    def build(self, context: str, dockerfile: str, buildargs: dict, target: str, labels: dict):
        """Build ``target``; return the image id."""
        image_id = None
        try:
            for event in self.client.api.build(
                path=context,
                dockerfile=dockerfile,
                buildargs=buildargs,
                tag=target,
                labels=labels,
                rm=True,
                forcerm=True,
                decode=True,
            ):
                if "error" in event:
                    raise CommandError(f"building {target} failed: {event['error'].strip()}")
                if "aux" in event and "ID" in event["aux"]:
                    image_id = event["aux"]["ID"]
        except DockerException as e:
            raise CommandError(f"building {target} failed: {e}") from None
        return image_id or self.client.images.get(target).id

    def push(self, ref: imageref.ImageRef) -> str:
        """Push ref (a tag) with the registry's login; return the manifest digest."""
        creds = credentials(ref)
        digest = None
        try:
            for event in self.client.api.push(
                ref.name, tag=ref.tag, stream=True, decode=True, auth_config=creds.auth_config
            ):
                if "error" in event:
                    raise APIError(event["error"])
                digest = (event.get("aux") or {}).get("Digest") or digest
        except APIError as e:
            raise registry_error("pushing", ref, creds, e) from None
        if digest is None:
            raise CommandError(f"pushing {ref}: the engine reported no digest")
        return digest

    def image_user(self, ref: imageref.ImageRef) -> str:
        return self.client.images.get(str(ref)).attrs["Config"].get("User") or ""

    def uid_at_start(self, ref: imageref.ImageRef) -> str:
        """What ``id -u`` prints in a container of ref, with no network."""
        try:
            out = self.client.containers.run(
                str(ref), entrypoint=["id", "-u"], network_mode="none", remove=True
            )
        except DockerException as e:
            raise CommandError(f"does not start: {e}") from None
        return out.decode().strip()

    # --- servers -------------------------------------------------------------------

    def servers(self, hub_name: str) -> list[dict]:
        """This hub's running servers as records (user, server, GPUs, profile, image, since)."""
        listed = self.client.api.containers(filters=containerspec.label_filters(hub_name))
        return containerspec.server_records(listed)

    def remove(self, container_id: str) -> None:
        self.client.api.remove_container(container_id, force=True)


def progress_bar(label: str, out=sys.stderr) -> Callable[[int], None]:
    """A text progress bar on ``out``, finished with a newline at 100%."""

    def draw(percent: int) -> None:
        filled = percent * 30 // 100
        out.write(f"\r{label}: [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%")
        if percent >= 100:
            out.write("\n")
        out.flush()

    return draw
