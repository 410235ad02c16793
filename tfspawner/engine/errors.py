"""What the engine seam raises, whatever the engine: callers never see docker-py's errors."""

from __future__ import annotations


class EngineUnreachable(RuntimeError):
    """No engine answers at the configured address."""


class ImageAbsent(LookupError):
    """The image is not on the engine and may not be pulled."""


class PullRefused(RuntimeError):
    """A pull failed; ``login_refused`` when the registry did not accept the login."""

    def __init__(self, why: str, *, registry: str, login_refused: bool):
        super().__init__(why)
        self.registry = registry
        self.login_refused = login_refused
