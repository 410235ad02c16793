"""Errors shown to users, working on both JupyterHub 5.x and 6.x."""

from __future__ import annotations

from tornado import web

try:  # JupyterHub >= 6.0
    from jupyterhub.spawner import SpawnException as _SpawnException
except ImportError:  # JupyterHub 5.x
    _SpawnException = None


class ConfigError(ValueError):
    """The admin's config is invalid; the message names the setting."""


def spawn_refused(message: str, *, reason: str, status_code: int = 400) -> web.HTTPError:
    """An error whose ``message`` a student can act on, with an HTTP status for REST callers."""
    if _SpawnException is not None:
        error = _SpawnException(message, reason=reason, status_code=status_code)
    else:
        error = web.HTTPError(status_code, message)
    # The hub's pages show ``jupyterhub_message`` as it is, not the exception's repr.
    error.jupyterhub_message = message
    return error


class CommandError(Exception):
    """An admin command cannot go on; the message says why, in one line."""
