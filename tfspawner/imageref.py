"""Parse and normalise container image references.

Follows the grammar of distribution/reference: ``[domain/]path[:tag][@digest]``.
A reference is parsed with one anchored regular expression, never by splitting
on ``:``, because a colon can separate a registry port, a tag or a digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_NAMESPACE = "library"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"

_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_NAME_MAX = 255


class InvalidImageReference(ValueError):
    """Raised for a string that is not a valid image reference."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference.

    ``domain`` is None when the reference names none (Docker Hub is implied).
    """

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository as written: ``[domain/]path``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def canonical_name(self) -> str:
        """The repository with Docker Hub's implicit domain and namespace filled in."""
        domain = self.domain or DEFAULT_DOMAIN
        path = self.path
        if domain == DEFAULT_DOMAIN and "/" not in path:
            path = f"{OFFICIAL_NAMESPACE}/{path}"
        return f"{domain}/{path}"

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.domain, self.path, self.tag, parse_digest(digest))

    def pull_args(self) -> tuple[str, str]:
        """``(repository, tag_or_digest)`` for the engine's pull call; a digest wins."""
        return self.name, self.digest or self.tag or "latest"

    def matches_repo_digest(self, repo_digest: str) -> bool:
        """Whether an entry of an image's ``RepoDigests`` is this reference's pin."""
        if not self.digest:
            return False
        try:
            other = parse(repo_digest)
        except InvalidImageReference:
            return False
        return other.digest == self.digest and other.canonical_name == self.canonical_name

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_digest(digest: str) -> str:
    if not isinstance(digest, str) or not re.fullmatch(_DIGEST, digest, re.ASCII):
        raise InvalidImageReference(f"{digest!r} is not a sha256 digest (sha256:<64 hex digits>)")
    return digest


def parse(reference: str) -> ImageRef:
    """Parse ``reference``; raise InvalidImageReference with a reason if it is malformed."""
    if not isinstance(reference, str):
        raise InvalidImageReference(f"an image reference must be a string, not {reference!r}")
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise InvalidImageReference(_explain(reference))
    domain, path = match["domain"], match["path"]
    # "a/b" is a Docker Hub namespace/repo; only a component that looks like a
    # host ("." or ":" or localhost) is a registry.
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        if domain != domain.lower():
            raise InvalidImageReference(f"{reference!r}: repository names must be lowercase")
        domain, path = None, f"{domain}/{path}"
    name = f"{domain}/{path}" if domain else path
    if len(name) > _NAME_MAX:
        raise InvalidImageReference(
            f"{reference!r}: the repository name is longer than {_NAME_MAX} characters"
        )
    return ImageRef(domain, path, match["tag"], match["digest"])


def _explain(reference: str) -> str:
    if not reference:
        return "an image reference must not be empty"
    if reference != reference.strip():
        return f"{reference!r}: an image reference must not contain whitespace"
    if "@" in reference:
        return f"{reference!r}: the part after '@' must be sha256:<64 lowercase hex digits>"
    return f"{reference!r} is not a valid image reference ([registry/]name[:tag][@sha256:digest])"
