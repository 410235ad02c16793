"""Registry credentials from the Docker config file, as the docker CLI uses them.

``DOCKER_CONFIG`` (or ``~/.docker/config.json``): ``auths`` entries, a
``credsStore`` or per-registry ``credHelpers``. The file is read again for
each pull, so a rotated password or token is used without a hub restart;
docker-py's client reads it only once, when it is made.

Nothing here logs, and no message made here contains a secret.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from docker import auth
from docker.errors import DockerException
from docker.utils import config as docker_config

from .imageref import ImageRef

# What registries and the engine say when a login is missing or refused.
_REFUSED = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|denied|"
    r"incorrect username or password|\b401\b",
    re.IGNORECASE,
)


class CredentialError(Exception):
    """The configured credential helper failed; the message names it, never a secret."""


@dataclass(frozen=True)
class Credentials:
    """What to send to one registry; ``auth_config`` is kept out of repr."""

    registry: str
    source: str
    auth_config: dict = field(default_factory=dict, repr=False)

    @property
    def found(self) -> bool:
        return bool(self.auth_config)

    def secrets(self) -> list[str]:
        """The strings that must never reach a log or a message."""
        public = {"username", "email", "serveraddress"}
        values = [
            v for k, v in self.auth_config.items() if k.lower() not in public and isinstance(v, str)
        ]
        user = self.auth_config.get("username") or self.auth_config.get("Username")
        password = self.auth_config.get("password") or self.auth_config.get("Password")
        if user and password:
            # config.json's "auth" form, in case an error ever echoes it.
            values.append(base64.b64encode(f"{user}:{password}".encode()).decode())
        return [v for v in values if len(v) >= 4]


def registry_of(ref: ImageRef) -> str:
    """The registry a pull of ``ref`` goes to, spelt as config.json keys it."""
    return auth.resolve_repository_name(ref.name)[0]


def config_file() -> str | None:
    """The Docker config file in use, honouring ``DOCKER_CONFIG``; None if there is none."""
    return docker_config.find_config_file()


def lookup(registry: str, credstore_env: dict | None = None) -> Credentials:
    """The credentials for ``registry`` in the Docker config file, read now.

    Runs a credential helper when one is configured, so call it off the event loop.
    An empty ``auth_config`` means an anonymous pull.
    """
    path = config_file()
    if path is None:
        return Credentials(registry, "no Docker config file")
    try:
        config = auth.load_config(path, credstore_env=credstore_env)
    except DockerException as e:
        raise CredentialError(f"cannot read the Docker config file {path}: {e}") from None
    store = config.get_credential_store(registry)
    source = f"credential helper docker-credential-{store}" if store else path
    try:
        found = auth.resolve_authconfig(config, registry, credstore_env=credstore_env)
    except DockerException as e:
        # A helper's error names the helper and its exit; it never echoes the secret.
        raise CredentialError(f"{source} failed for {registry}: {e}") from None
    if not found:
        return Credentials(registry, f"no login for {registry} in {path}")
    return Credentials(registry, source, dict(found))


def redact(text: str, credentials: Credentials | None) -> str:
    """``text`` with every secret of ``credentials`` replaced by ``***``."""
    if credentials is not None:
        for secret in credentials.secrets():
            text = text.replace(secret, "***")
    return text


def refused(reason: str) -> bool:
    """Whether an engine or registry error says the login was missing or refused."""
    return bool(_REFUSED.search(reason))


def reason(error: Exception) -> str:
    """The engine's own words for a failed registry call, without docker-py's URL."""
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)
