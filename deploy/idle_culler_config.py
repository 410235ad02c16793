# Config for jupyterhub-idle-culler, passed with --config by the culler service
# that jupyterhub_config.py defines.
#
# GPU servers are culled after TFSPAWNER_GPU_IDLE_TIMEOUT instead of the
# culler's --timeout: an idle GPU server keeps a whole GPU from everyone else.
# A server counts as a GPU server when its profile (user_options["profile"],
# which TFSpawner records at start) is one of TFSPAWNER_GPU_PROFILES; a server
# started without a profile ran the default one.
import os

c = get_config()  # noqa: F821

GPU_PROFILES = {p for p in os.environ.get("TFSPAWNER_GPU_PROFILES", "").split(",") if p}
DEFAULT_PROFILE = os.environ.get("TFSPAWNER_DEFAULT_PROFILE", "")
GPU_IDLE_TIMEOUT = int(os.environ.get("TFSPAWNER_GPU_IDLE_TIMEOUT") or 0)


def cull_arbiter(*, inactive, inactive_limit, server, **kwargs):
    if inactive is None:
        return False
    profile = (server.get("user_options") or {}).get("profile") or DEFAULT_PROFILE
    if GPU_IDLE_TIMEOUT and profile in GPU_PROFILES:
        inactive_limit = GPU_IDLE_TIMEOUT
    return inactive.total_seconds() >= inactive_limit


c.IdleCuller.cull_arbiter_hook = cull_arbiter
