"""What a student reads when their server cannot start or has stopped: one sentence each.

Each refusal is an error the hub shows on the spawn page and returns to REST
callers with its HTTP status; none of them blames the student for the hub's
configuration, and each says whether their files are safe.
"""

from __future__ import annotations

from . import limits
from .errors import spawn_refused


def misconfigured(error) -> Exception:
    return spawn_refused(
        f"The hub is misconfigured ({error}). Please tell the hub's administrator.",
        reason="config",
        status_code=500,
    )


def unsafe_identity(error) -> Exception:
    return spawn_refused(
        f"Your server cannot start: {error}. Please tell the hub's administrator.",
        reason="identity",
    )


def uid_taken() -> Exception:
    return spawn_refused(
        "Your server cannot start: the user id it would run as belonged to another "
        "account. Please tell the hub's administrator.",
        reason="identity",
        status_code=500,
    )


def storage_of_another_uid() -> Exception:
    return spawn_refused(
        "Your server cannot start: your notebook storage belongs to another user id. "
        "Please tell the hub's administrator; your files have not been touched.",
        reason="volume",
        status_code=500,
    )


def storage_not_prepared() -> Exception:
    return spawn_refused(
        "Your notebook storage could not be prepared, so your server was not "
        "started. Please tell the hub's administrator.",
        reason="volume",
        status_code=500,
    )


def image_absent(ref) -> Exception:
    return spawn_refused(
        f"The image {ref} is not on this host. Please tell the hub's administrator.",
        reason="image",
        status_code=503,
    )


def pull_refused(login_refused: bool) -> Exception:
    if login_refused:
        return spawn_refused(
            "The image for your server could not be downloaded because its registry "
            "did not accept the hub's login, so it was not started. Please tell the "
            "hub's administrator.",
            reason="image-registry-login",
            status_code=503,
        )
    return spawn_refused(
        "The image for your server could not be downloaded right now, so it was "
        "not started. Please try again later or tell the hub's administrator.",
        reason="image-pull",
        status_code=503,
    )


def digest_mismatch(digest: str) -> Exception:
    return spawn_refused(
        f"The image for your server does not match its pinned digest {digest}; "
        "it was not started. Please tell the hub's administrator.",
        reason="image-digest",
        status_code=500,
    )


def gpu_unavailable(why: str) -> Exception:
    return spawn_refused(why, reason="gpu-unavailable", status_code=503)


def gpu_taken_meanwhile() -> Exception:
    return gpu_unavailable(
        "The GPU picked for your server was taken by another server at the same "
        "moment, so yours was not started. Please start it again, or pick a CPU "
        "profile."
    )


def bad_options(why: str) -> Exception:
    return spawn_refused(why, reason="options", status_code=400)


def check_the_form() -> Exception:
    # Status 200: the hub shows the form again with this line, nothing failed.
    return spawn_refused(
        "Check the server options below and press Start.", reason="options", status_code=200
    )


def failed_to_boot(why: str) -> Exception:
    return spawn_refused(why, reason="boot", status_code=500)


def adopted() -> str:
    return "Your server was still running: reconnected, kernels and all"


def replaced(why: str) -> str:
    return (
        f"Your previous server was still running {why}, so it was stopped to start the one "
        "you asked for. Your saved files are safe."
    )


def exit_reason(state: dict, memory: int | None) -> str:
    """Why a server stopped on its own, shown on the user's next visit."""
    if state.get("OOMKilled"):
        limit = f" {limits.format_bytes(memory)}" if memory else ""
        return (
            f"Your server was stopped because it used more than its{limit} memory limit. "
            "Your saved files are safe; free memory in your notebooks (or pick a larger "
            "profile) and start it again."
        )
    return (
        f"Your server stopped unexpectedly (exit code {state.get('ExitCode')}). "
        "Your saved files are safe; start it again."
    )


# --- on a swarm ------------------------------------------------------------------


def node_down(node_id: str) -> Exception:
    return spawn_refused(
        f"The node that holds your files ({node_id[:12]}) is down or drained, so your "
        "server cannot start there; please tell an admin. Your saved files are safe on it.",
        reason="node-down",
        status_code=503,
    )


def task_refused(message: str, final_refusal: bool) -> Exception:
    """A task the swarm refused (503: trying later may help) or that failed (500)."""
    return spawn_refused(message, reason="swarm", status_code=503 if final_refusal else 500)


def service_vanished() -> str:
    return "Your server's service vanished while starting."


def no_address(network: str) -> str:
    return f"Your server has no address on the network {network}."


NO_WORKER = "no ready worker node in the swarm"
HOST_ROOT_ON_SWARM = (
    "TFSpawner.volume_host_root is a directory of one host; on a swarm use named "
    "volumes (optionally NFS-backed through the local driver)"
)
