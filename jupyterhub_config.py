# JupyterHub configuration for a tfspawner hub: TensorFlow 2.9 servers on one
# Docker host, with CPU and GPU profiles.
#
# Everything an admin changes is read from TFSPAWNER_* environment variables:
# deploy/compose.yaml passes them into the hub container, and the systemd unit
# reads them from /etc/tfspawner/hub.env. A required variable that is missing
# stops the hub with a message that names it. Check a set of variables without
# starting a hub:
#
#   python3 -c "from traitlets.config import PyFileConfigLoader as L; L('jupyterhub_config.py').load_config()"
#
# The variables, by section below:
#
#   Mode            TFSPAWNER_LOCAL_MODE (1: local development on the test bed)
#   Network         TFSPAWNER_PUBLIC_IP (default 127.0.0.1, for a reverse proxy
#                   on this host; 0.0.0.0 takes connections on every address),
#                   TFSPAWNER_PUBLIC_PORT, TFSPAWNER_NETWORK,
#                   TFSPAWNER_HUB_IP, TFSPAWNER_HUB_CONNECT_IP,
#                   TFSPAWNER_SSL_CERT, TFSPAWNER_SSL_KEY
#   State           TFSPAWNER_DB_URL
#   Login           TFSPAWNER_AUTHENTICATOR (native | generic-oauth | dummy),
#                   TFSPAWNER_ADMIN_USERS, TFSPAWNER_NATIVE_SIGNUP,
#                   TFSPAWNER_OAUTH_* (see "Authentication")
#   Servers         TFSPAWNER_HUB_NAME, TFSPAWNER_IMAGE_CPU, TFSPAWNER_IMAGE_GPU,
#                   TFSPAWNER_IMAGE_CATALOGUE (file of rebuilt pins), DOCKER_CONFIG
#                   (registry logins: the directory of config.json),
#                   TFSPAWNER_GPU_POOL, TFSPAWNER_GPUS_PER_SERVER,
#                   TFSPAWNER_GPU_GROUPS, TFSPAWNER_GPU_LIMIT_PER_USER,
#                   TFSPAWNER_{CPU,GPU}_SERVER_{CPUS,MEM,SHM}, TFSPAWNER_START_TIMEOUT,
#                   TFSPAWNER_{CPU,GPU}_SERVER_ENV (NAME=value;NAME2=value: variables
#                   for every server of that profile, e.g. a course's data URL)
#   Swarm           TFSPAWNER_ENGINE (docker | swarm: TFSwarmSpawner, one
#                   service per server; docs/swarm.md),
#                   TFSPAWNER_SWARM_MANAGER_URL (default: DOCKER_HOST or the
#                   local socket), TFSPAWNER_SWARM_GPU_RESOURCE (default
#                   NVIDIA-GPU), TFSPAWNER_SWARM_NODE_CONSTRAINTS (comma-separated);
#                   on a swarm the GPU profile is offered when TFSPAWNER_IMAGE_GPU
#                   is set, and the GPUs come from the nodes, not TFSPAWNER_GPU_POOL
#   Load            TFSPAWNER_CONCURRENT_SPAWN_LIMIT, TFSPAWNER_ACTIVE_SERVER_LIMIT,
#                   TFSPAWNER_NAMED_SERVER_LIMIT
#   SSH             TFSPAWNER_SSH (1: ssh into your own server through the hub)
#   Culling         TFSPAWNER_IDLE_TIMEOUT, TFSPAWNER_GPU_IDLE_TIMEOUT
import os
import sys

c = get_config()  # noqa: F821


class ConfigError(RuntimeError):
    """A TFSPAWNER_* variable is missing or invalid; the message names it."""


def env(name, default=None):
    """The variable's value; unset and empty both mean ``default``."""
    value = os.environ.get(name, "").strip()
    return value if value else default


def required(name, why):
    value = env(name)
    if value is None:
        raise ConfigError(f"{name} is not set: {why}")
    return value


def env_int(name, default):
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def env_float(name, default):
    value = env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {value!r}") from None


def env_flag(name, default=False):
    value = env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {value!r}")


def env_list(name, default=""):
    return [item.strip() for item in (env(name) or default).split(",") if item.strip()]


def env_vars(name):
    """``NAME=value;NAME2=value2`` as a dict: variables for every server of a profile."""
    pairs = {}
    for item in (env(name) or "").split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name}: {item.strip()!r} is not NAME=value")
        pairs[key.strip()] = value
    return pairs


# --- Mode ----------------------------------------------------------------------
# Local mode runs against the test bed (`scripts/hub-up --local`): its pinned
# TF stand-in image, two fake GPUs behind its stand-in NVIDIA hook, and the
# dummy login. Never set it on a hub that others can reach.
LOCAL_MODE = env_flag("TFSPAWNER_LOCAL_MODE")

# --- Network -------------------------------------------------------------------
# Users reach the proxy at TFSPAWNER_PUBLIC_IP:TFSPAWNER_PUBLIC_PORT on the
# host. The address defaults to 127.0.0.1, for a reverse proxy on the same
# host; set 0.0.0.0 to take users' connections directly. Local mode's dummy
# login lets anyone in, so it never listens beyond 127.0.0.1.
PUBLIC_IP = env("TFSPAWNER_PUBLIC_IP", "127.0.0.1")
PUBLIC_PORT = env_int("TFSPAWNER_PUBLIC_PORT", 8000)
if LOCAL_MODE and PUBLIC_IP != "127.0.0.1":
    raise ConfigError(
        f"TFSPAWNER_PUBLIC_IP is {PUBLIC_IP}, but local mode (TFSPAWNER_LOCAL_MODE=1) lets "
        "anyone log in as anyone, so it listens on 127.0.0.1 only; unset it"
    )
# TLS is usually terminated by the university's reverse proxy; give the hub
# a certificate only when it faces users directly.
if env("TFSPAWNER_SSL_CERT") or env("TFSPAWNER_SSL_KEY"):
    c.JupyterHub.ssl_cert = required(
        "TFSPAWNER_SSL_CERT", "TFSPAWNER_SSL_KEY needs its certificate"
    )
    c.JupyterHub.ssl_key = required("TFSPAWNER_SSL_KEY", "TFSPAWNER_SSL_CERT needs its key")

NETWORK = env("TFSPAWNER_NETWORK")
if NETWORK:
    # The hub runs in a container on this Docker network (deploy/compose.yaml):
    # user containers join it and reach the hub by its container name, and the
    # proxy reaches them by their address on it. Nothing is published per user.
    # The proxy takes connections on every address of the hub's container;
    # compose publishes its port on the host at TFSPAWNER_PUBLIC_IP only.
    c.JupyterHub.bind_url = f"http://0.0.0.0:{PUBLIC_PORT}"
    c.DockerSpawner.network_name = NETWORK
    c.DockerSpawner.use_internal_ip = True
    c.JupyterHub.hub_ip = env("TFSPAWNER_HUB_IP", "0.0.0.0")
    c.JupyterHub.hub_connect_ip = env("TFSPAWNER_HUB_CONNECT_IP", "tfspawner-hub")
else:
    # The hub runs on the host (deploy/systemd): user containers are on the
    # default bridge and reach it through the bridge's gateway. Their ports are
    # published on the host's loopback only, for the proxy.
    c.JupyterHub.bind_url = f"http://{PUBLIC_IP}:{PUBLIC_PORT}"
    c.JupyterHub.hub_ip = env("TFSPAWNER_HUB_IP", "172.17.0.1")
    c.JupyterHub.hub_connect_ip = env("TFSPAWNER_HUB_CONNECT_IP", c.JupyterHub.hub_ip)
    c.DockerSpawner.host_ip = "127.0.0.1"

# --- State ---------------------------------------------------------------------
# The working directory holds the SQLite database and the cookie secret (the
# /srv/jupyterhub volume in the compose deployment). Use PostgreSQL for large
# classes: TFSPAWNER_DB_URL=postgresql://hub:PASSWORD@db/jupyterhub
if env("TFSPAWNER_DB_URL"):
    c.JupyterHub.db_url = env("TFSPAWNER_DB_URL")
# Restarting or upgrading the hub must not stop a class's running servers:
# they keep running, and the hub picks them (and their GPUs, from container
# labels) up again when it comes back.
c.JupyterHub.cleanup_servers = False

# --- Authentication ------------------------------------------------------------
AUTHENTICATOR = env("TFSPAWNER_AUTHENTICATOR", "dummy" if LOCAL_MODE else "native")
ADMINS = set(env_list("TFSPAWNER_ADMIN_USERS", "admin" if LOCAL_MODE else ""))
c.Authenticator.admin_users = ADMINS

if AUTHENTICATOR == "native":
    # Accounts with passwords kept by the hub. People sign up at /hub/signup
    # and an admin approves each one at /hub/authorize. Nobody can sign up
    # under a name in TFSPAWNER_ADMIN_USERS: create each admin's account on
    # the hub's host, which prints a one-time password to change at
    # /hub/change-password (deploy/systemd/README.md for a hub without Docker):
    #
    #   docker exec tfspawner-hub tfspawner admin create NAME -f /srv/tfspawner/jupyterhub_config.py
    if not ADMINS:
        raise ConfigError(
            "TFSPAWNER_ADMIN_USERS is not set: with the native authenticator an admin "
            "must approve every sign-up, so name at least one (comma-separated)"
        )
    c.JupyterHub.authenticator_class = "tfspawner-native"
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.enable_signup = env_flag("TFSPAWNER_NATIVE_SIGNUP", True)
    c.NativeAuthenticator.minimum_password_length = 10
    c.NativeAuthenticator.check_common_password = True
    c.NativeAuthenticator.allowed_failed_logins = 5
    c.NativeAuthenticator.seconds_before_next_try = 600
    # Only approved accounts can log in at all, so every one of them may.
    c.Authenticator.allow_all = True
    # nativeauthenticator 1.3.0's login handler times logins with the statsd
    # client that JupyterHub 6 removed, so every login fails with a 500.
    # Give it a no-op one until a release drops it.
    try:
        from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
    except ImportError:
        pass  # JupyterHub says clearly that the "native" class is missing.
    else:
        if not hasattr(NativeLoginHandler, "statsd"):

            class NoStatsd:
                def timer(self, name):
                    return self

                def start(self):
                    return self

                def stop(self, send=True):
                    pass

            NativeLoginHandler.statsd = NoStatsd()
elif AUTHENTICATOR == "generic-oauth":
    # The university's identity provider (Keycloak, Shibboleth's OIDC
    # provider, Azure AD, ...) over OAuth2 / OpenID Connect.
    why = "TFSPAWNER_AUTHENTICATOR=generic-oauth needs the identity provider's settings"
    c.JupyterHub.authenticator_class = "generic-oauth"
    c.GenericOAuthenticator.client_id = required("TFSPAWNER_OAUTH_CLIENT_ID", why)
    c.GenericOAuthenticator.client_secret = required("TFSPAWNER_OAUTH_CLIENT_SECRET", why)
    # e.g. https://jupyter.example.edu/hub/oauth_callback
    c.GenericOAuthenticator.oauth_callback_url = required("TFSPAWNER_OAUTH_CALLBACK_URL", why)
    c.GenericOAuthenticator.authorize_url = required("TFSPAWNER_OAUTH_AUTHORIZE_URL", why)
    c.GenericOAuthenticator.token_url = required("TFSPAWNER_OAUTH_TOKEN_URL", why)
    c.GenericOAuthenticator.userdata_url = required("TFSPAWNER_OAUTH_USERDATA_URL", why)
    c.GenericOAuthenticator.scope = env_list("TFSPAWNER_OAUTH_SCOPE", "openid,profile,email")
    c.GenericOAuthenticator.username_claim = env(
        "TFSPAWNER_OAUTH_USERNAME_CLAIM", "preferred_username"
    )
    c.GenericOAuthenticator.login_service = env("TFSPAWNER_OAUTH_LOGIN_SERVICE", "university login")
    allowed_groups = set(env_list("TFSPAWNER_OAUTH_ALLOWED_GROUPS"))
    admin_groups = set(env_list("TFSPAWNER_OAUTH_ADMIN_GROUPS"))
    if allowed_groups or admin_groups:
        # The provider's groups become hub groups, so profile "groups" (e.g.
        # TFSPAWNER_GPU_GROUPS) can follow the university's own lists.
        c.GenericOAuthenticator.manage_groups = True
        c.GenericOAuthenticator.auth_state_groups_key = env(
            "TFSPAWNER_OAUTH_GROUPS_KEY", "oauth_user.groups"
        )
        c.GenericOAuthenticator.allowed_groups = allowed_groups
        c.GenericOAuthenticator.admin_groups = admin_groups
    # Everyone the provider knows may log in only when the admin says so.
    c.GenericOAuthenticator.allow_all = env_flag("TFSPAWNER_OAUTH_ALLOW_ALL")
    if not (allowed_groups or c.GenericOAuthenticator.allow_all):
        raise ConfigError(
            "TFSPAWNER_OAUTH_ALLOWED_GROUPS is not set: name the provider groups that may "
            "log in, or set TFSPAWNER_OAUTH_ALLOW_ALL=1 to let everyone the provider knows in"
        )
elif AUTHENTICATOR == "dummy":
    if not LOCAL_MODE:
        raise ConfigError(
            "TFSPAWNER_AUTHENTICATOR=dummy lets anyone log in as anyone with any password; "
            "it is allowed only with TFSPAWNER_LOCAL_MODE=1 (local development)"
        )
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allow_all = True
else:
    raise ConfigError(
        f"TFSPAWNER_AUTHENTICATOR must be native, generic-oauth or dummy, not {AUTHENTICATOR!r}"
    )

# --- Servers -------------------------------------------------------------------
ENGINE = env("TFSPAWNER_ENGINE", "docker")
if ENGINE not in ("docker", "swarm"):
    raise ConfigError(f"TFSPAWNER_ENGINE must be docker or swarm, not {ENGINE!r}")
ON_SWARM = ENGINE == "swarm"
c.JupyterHub.spawner_class = "tfswarmspawner" if ON_SWARM else "tfspawner"
# Two hubs on one Docker engine need different names: containers, GPU
# assignments and volumes are found by it.
c.TFSpawner.hub_name = env("TFSPAWNER_HUB_NAME", "local" if LOCAL_MODE else "jupyterhub")

if ON_SWARM:
    if LOCAL_MODE:
        raise ConfigError("TFSPAWNER_ENGINE=swarm has no local mode; unset TFSPAWNER_LOCAL_MODE")
    c.TFSwarmSpawner.manager_url = env("TFSPAWNER_SWARM_MANAGER_URL", "")
    c.TFSwarmSpawner.gpu_resource = env("TFSPAWNER_SWARM_GPU_RESOURCE", "NVIDIA-GPU")
    c.TFSwarmSpawner.node_constraints = env_list("TFSPAWNER_SWARM_NODE_CONSTRAINTS")
    # The nodes advertise the GPUs; a GPU image is what says the lab wants them.
    HAS_GPUS = bool(env("TFSPAWNER_IMAGE_GPU"))
else:
    # Fake GPUs only exist behind the test bed's stand-in NVIDIA hook.
    # "auto" asks NVML; in a container that needs deploy/compose.gpu.yaml.
    GPU_POOL = env("TFSPAWNER_GPU_POOL", "0,1" if LOCAL_MODE else "")
    if GPU_POOL == "auto":
        c.TFSpawner.gpu_pool = "auto"
    else:
        c.TFSpawner.gpu_pool = env_list("TFSPAWNER_GPU_POOL", GPU_POOL)
    # Without a pool the hub offers the CPU profile only.
    HAS_GPUS = bool(GPU_POOL)

# Images are pinned by digest (`tfspawner images pin REF` prints the pinned
# form); deploy/images builds them from the official TF 2.9 Jupyter images.
# Local mode defaults both to the test bed's TF stand-in.


def image(name):
    if env(name):
        return env(name)
    if LOCAL_MODE:
        return required(
            "TFSPAWNER_TEST_TF_IMAGE",
            f"local mode uses the test bed's image unless {name} is set (source .testbed/env)",
        )
    return required(
        name, "give the image pinned by digest, e.g. registry.example.edu/tf/2.9@sha256:..."
    )


c.TFSpawner.images = {
    "tf-cpu": image("TFSPAWNER_IMAGE_CPU"),
    **({"tf-gpu": image("TFSPAWNER_IMAGE_GPU")} if HAS_GPUS else {}),
}
# The catalogue that `tfspawner images rebuild` and `rollback` write; its
# current pins replace the two above at each spawn, without a hub restart.
c.TFSpawner.image_catalogue_file = env("TFSPAWNER_IMAGE_CATALOGUE", "")

gpus_per_server = env_int("TFSPAWNER_GPUS_PER_SERVER", 1)
cpu_server = {
    "cpus": env_float("TFSPAWNER_CPU_SERVER_CPUS", 2.0),
    "mem": env("TFSPAWNER_CPU_SERVER_MEM", "4G"),
    "shm": env("TFSPAWNER_CPU_SERVER_SHM", "1G"),
    "env": env_vars("TFSPAWNER_CPU_SERVER_ENV"),
}
gpu_server = {
    "cpus": env_float("TFSPAWNER_GPU_SERVER_CPUS", 8.0),
    "mem": env("TFSPAWNER_GPU_SERVER_MEM", "32G"),
    # NCCL and tf.data exchange tensors through /dev/shm.
    "shm": env("TFSPAWNER_GPU_SERVER_SHM", "8G"),
    "env": env_vars("TFSPAWNER_GPU_SERVER_ENV"),
}
PROFILES = [
    {
        "slug": "tf29-cpu",
        "display_name": "TensorFlow 2.9, CPU",
        "description": f"{cpu_server['cpus']:g} CPUs, {cpu_server['mem']} memory, no GPU",
        "image": "tf-cpu",
        "gpus": 0,
        "cpu_limit": cpu_server["cpus"],
        "mem_limit": cpu_server["mem"],
        "shm_size": cpu_server["shm"],
        "extra_env": cpu_server["env"],
        "groups": [],
        "default": True,
    }
]
if HAS_GPUS:
    PROFILES.append(
        {
            "slug": "tf29-gpu",
            "display_name": f"TensorFlow 2.9, {gpus_per_server} GPU"
            + ("s" if gpus_per_server > 1 else ""),
            "description": f"{gpus_per_server} GPU(s) for this server only, "
            f"{gpu_server['cpus']:g} CPUs, {gpu_server['mem']} memory",
            "image": "tf-gpu",
            "gpus": gpus_per_server,
            "cpu_limit": gpu_server["cpus"],
            "mem_limit": gpu_server["mem"],
            "shm_size": gpu_server["shm"],
            "extra_env": gpu_server["env"],
            # Empty: everyone may ask for a GPU. Admins always may.
            "groups": env_list("TFSPAWNER_GPU_GROUPS"),
            "default": False,
        }
    )
c.TFSpawner.profiles = PROFILES
# Across all of a user's servers, named ones included.
c.TFSpawner.gpu_limit_per_user = env_int("TFSPAWNER_GPU_LIMIT_PER_USER", gpus_per_server)

# The first start on a host pulls the image (several GB for the GPU image);
# pre-pull with `tfspawner images pull -f jupyterhub_config.py` (in the hub
# container: `docker exec tfspawner-hub tfspawner images pull -f
# /srv/tfspawner/jupyterhub_config.py`) to make first starts fast.
c.Spawner.start_timeout = env_int("TFSPAWNER_START_TIMEOUT", 600)
c.Spawner.http_timeout = 120

# --- SSH -----------------------------------------------------------------------
# TFSPAWNER_SSH=1 lets users ssh, scp and sftp into their own server, VS Code
# Remote-SSH included, through the hub: the images (deploy/images) run sshd
# as the user behind jupyter-server-proxy at /user/NAME/sshd/, which only the
# owner's hub token opens. /hub/ssh-config shows each user the ~/.ssh/config
# block; the README's "SSH" section has the rest.
if env_flag("TFSPAWNER_SSH"):
    from tfspawner import sshpage

    c.TFSpawner.environment = {"TFSPAWNER_SSH": "1"}
    c.JupyterHub.extra_handlers = sshpage.HANDLERS

# --- Load ----------------------------------------------------------------------
# A lecture hall pressing "Start" at once: spawns beyond this limit are told
# to retry (HTTP 429) instead of piling onto dockerd, which creates containers
# one at a time. 50 in flight keeps a 16-core host responsive; lower it on
# small hosts.
c.JupyterHub.concurrent_spawn_limit = env_int("TFSPAWNER_CONCURRENT_SPAWN_LIMIT", 50)
# 0: no cap on running servers; set it to what the host's memory holds.
c.JupyterHub.active_server_limit = env_int("TFSPAWNER_ACTIVE_SERVER_LIMIT", 0)

# Named servers let one person keep a CPU server for notes and a GPU server
# for training; the GPU cap above still holds across them.
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = env_int("TFSPAWNER_NAMED_SERVER_LIMIT", 3)

# --- Culling -------------------------------------------------------------------
# jupyterhub-idle-culler stops servers idle for TFSPAWNER_IDLE_TIMEOUT seconds,
# and GPU servers after TFSPAWNER_GPU_IDLE_TIMEOUT (deploy/idle_culler_config.py
# tells them apart by profile). Stopping releases the server's GPUs; the
# user's files stay on their volume.
idle_timeout = env_int("TFSPAWNER_IDLE_TIMEOUT", 3600)
gpu_idle_timeout = env_int("TFSPAWNER_GPU_IDLE_TIMEOUT", 1800)
shortest = min(idle_timeout, gpu_idle_timeout) if HAS_GPUS else idle_timeout
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={idle_timeout}",
            # Check often enough that no server outlives its limit by much.
            f"--cull-every={max(10, shortest // 4)}",
            "--config="
            + os.path.join(
                os.path.dirname(os.path.abspath(__file__)), "deploy", "idle_culler_config.py"
            ),
        ],
        "environment": {
            "TFSPAWNER_GPU_PROFILES": ",".join(p["slug"] for p in PROFILES if p["gpus"]),
            "TFSPAWNER_DEFAULT_PROFILE": next(p["slug"] for p in PROFILES if p["default"]),
            "TFSPAWNER_GPU_IDLE_TIMEOUT": str(gpu_idle_timeout),
        },
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
