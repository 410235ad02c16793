"""Whether a running container the hub lost track of can serve a new start as it is.

Pure: the container as the engine inspected it, what the start asks for, and
the hub's in-memory GPU pool.
"""

from __future__ import annotations

from . import containerspec, gpupool, profiles


def api_token(container: dict) -> str:
    """The hub token the server was started with; the hub stores it again on adoption."""
    for entry in container["Config"].get("Env") or []:
        key, _, value = entry.partition("=")
        if key == "JUPYTERHUB_API_TOKEN":
            return value
    return ""


def why_not(container: dict, *, image: str, profile: str, user: str) -> str | None:
    """Why the container cannot be adopted, as the end of a sentence; None if it can."""
    labels = container["Config"].get("Labels") or {}
    if labels.get(containerspec.LABEL_IMAGE) != image:
        return "from another image"
    if labels.get(containerspec.LABEL_PROFILE) != profile:
        running = profiles.echo(labels.get(containerspec.LABEL_PROFILE, ""))
        return f"with another profile ({running})"
    if container["Config"].get("User") != user:
        return "as another user id"
    if not api_token(container):
        return "without a token the hub can use"
    return None


def judge(
    container: dict, state, owner: gpupool.Owner, *, image: str, profile: str, user: str
) -> tuple[list[str], str | None]:
    """``(gpu_ids, None)`` once the pool records the container's GPUs, or ``([], why_not)``."""
    why = why_not(container, image=image, profile=profile, user=user)
    if why is not None:
        return [], why
    try:
        return state.adopt_gpus(owner, container, profile), None
    except gpupool.PoolConflict as e:
        return [], f"with a GPU the hub has given to another server ({e})"
