"""What admin settings may put into a user container: an allowlist.

Every keyword of docker-py's ``create_host_config`` and ``create_container`` is
in a table below: allowed (with a check of its value where one is needed), set
by tfspawner itself, refused, or never allowed. ``extra_host_config`` and
``extra_create_kwargs`` may use only the allowed ones; host paths bound into a
container are normalised and kept away from the engine and the host's system
directories. Admins can name refused keys and host paths in
``TFSpawner.allow_unsafe_container_settings``; the "never" rules (privileged,
host namespaces, the Docker socket, the image, the user, the name) hold even then.

Pure: the spawner calls ``check_admin_settings`` with its settings when the hub
starts (callables at each spawn, since they depend on the user) and
``check_create_call`` with the finished create call.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

ESCAPE_SETTING = "TFSpawner.allow_unsafe_container_settings"
# containerspec.LABEL_PREFIX: the labels that find and count tfspawner's containers.
LABEL_PREFIX = "tfspawner."


class UnsafeContainerConfig(ValueError):
    """Raised when config would weaken a user container's isolation."""


# --- host paths --------------------------------------------------------------------

# The engine's sockets: whoever reaches one is root on the host.
SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)
SOCKET_NAMES = ("docker.sock", "containerd.sock")
# Never bound, nor any directory above them: binding /var exposes /var/run/docker.sock.
PROTECTED = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/run",
)
# Nothing inside them either: kernel interfaces, devices, the engine's state,
# host configuration and secrets.
NOTHING_INSIDE = (
    "/boot",
    "/dev",
    "/etc",
    "/proc",
    "/root",
    "/run",
    "/sys",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/run",
)


def normalise(path: str) -> str:
    """``path`` as the engine resolves it: no ``.``, ``..``, repeated or trailing ``/``."""
    path = posixpath.normpath(path)
    # POSIX lets normpath keep a leading "//"; the engine does not.
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _inside(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def path_refusal(source: str) -> tuple[str, bool] | None:
    """Why the bind source ``source`` may not reach a user container, and whether that is final.

    Sources that do not start with ``/`` are volume names and always fine. Symlinks
    on the host cannot be seen from here: bind only directories you control.
    """
    if not source.startswith("/"):
        return None
    path = normalise(source)
    if (
        posixpath.basename(path) in SOCKET_NAMES
        or path in SOCKETS
        or any(_inside(socket, path) for socket in SOCKETS)
    ):
        return (
            f"host path {path} exposes the Docker socket, which makes the user root on the host",
            True,
        )
    for directory in PROTECTED:
        if path == directory or _inside(directory, path):
            return f"host path {path} is or contains the host's {directory}", False
    for directory in NOTHING_INSIDE:
        if _inside(path, directory):
            return f"host path {path} is inside the host's {directory}", False
    return None


# --- value checks: each returns why a value is refused, or None ----------------------

Check = Callable[[Any], "str | None"]

# Capabilities a non-root user may hold without reaching the host or other
# users' files: no DAC_OVERRIDE, CHOWN, FOWNER, SETUID or SETGID (those open
# shared storage), no SYS_ADMIN, SYS_MODULE, NET_ADMIN, SYS_NICE, MKNOD...
SAFE_CAPABILITIES = ("AUDIT_WRITE", "IPC_LOCK", "KILL", "NET_BIND_SERVICE", "SYS_PTRACE")
# Kubernetes' "safe" sysctls: namespaced, so they change this container only.
SAFE_SYSCTLS = (
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_syncookies",
)
# Not nice, rtprio or rttime: they let a notebook outrank the host's other work.
SAFE_ULIMITS = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nofile",
    "nproc",
    "rss",
    "sigpending",
    "stack",
)
# Variables that tfspawner and the hub set; an admin's value would fight theirs.
RESERVED_ENV_PREFIXES = ("NVIDIA_", "JUPYTERHUB_", "JPY_")
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def capability(name: Any) -> str:
    """The engine's spelling: ``cap_sys_admin`` and ``CAP_SYS_ADMIN`` are ``SYS_ADMIN``."""
    name = str(name).upper()
    return name[4:] if name.startswith("CAP_") else name


def _capabilities(value: Any) -> str | None:
    for cap in _items(value):
        if capability(cap) not in SAFE_CAPABILITIES:
            return (
                f"capability {capability(cap)} is not one of {', '.join(SAFE_CAPABILITIES)}, "
                "the ones that cannot reach the host or other users' files"
            )
    return None


def _security_opt(value: Any) -> str | None:
    for opt in _items(value):
        # Both "name=value" and the engine's older "name:value".
        name, _, setting = re.fullmatch(r"([^=:]*)([=:]?)(.*)", str(opt), re.S).groups()
        if name == "no-new-privileges" and setting in ("", "true"):
            continue
        if name == "label" and setting.startswith("level:"):
            continue  # an SELinux MCS level only narrows what the container may touch
        if name == "apparmor" and setting == "docker-default":
            continue
        return f"{opt!r} would replace or loosen the engine's confinement"
    return None


def _network_mode(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("container:"):
        return "it joins another container's network namespace, perhaps another user's"
    if not (isinstance(value, str) and _NETWORK_NAME.fullmatch(value)):
        return "only the name of a Docker network is allowed"
    return None


def _ipc_mode(value: Any) -> str | None:
    if value in ("", "private", "shareable", "none"):
        return None
    return "only 'private', 'shareable' or 'none': other values share another IPC namespace"


def _cgroupns(value: Any) -> str | None:
    return None if value in ("", "private") else "only 'private'"


def _runtime(value: Any) -> str | None:
    if value in ("runc", "nvidia", "runsc"):
        return None
    return "only 'runc', 'nvidia' or 'runsc'; other runtimes may not confine the container"


def _sysctls(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "must be a dict"
    for name in value:
        if str(name).replace("/", ".") not in SAFE_SYSCTLS:
            return f"{name} is not one of the namespaced sysctls {', '.join(SAFE_SYSCTLS)}"
    return None


def _ulimits(value: Any) -> str | None:
    for limit in _items(value):
        name = limit.get("Name", limit.get("name")) if isinstance(limit, Mapping) else None
        if name not in SAFE_ULIMITS:
            return f"ulimit {name!r} is not one of {', '.join(SAFE_ULIMITS)}"
    return None


def _oom_score_adj(value: Any) -> str | None:
    if isinstance(value, int) and 0 <= value <= 1000:
        return None
    return "only 0 to 1000: a negative score makes the kernel kill the host's processes first"


def _group_add(value: Any) -> str | None:
    for group in _items(value):
        if str(group) in ("0", "root"):
            return "group 0 is root's group, which owns much of the host's files"
    return None


def _environment(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "must be a dict of names to values"
    for name in value:
        if str(name).startswith(RESERVED_ENV_PREFIXES):
            return (
                f"{name} is set by tfspawner and the hub (GPUs, the hub's API, the server's token)"
            )
    return None


def _labels(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "must be a dict"
    for name in value:
        if str(name).startswith(LABEL_PREFIX):
            return f"{name}: labels starting with {LABEL_PREFIX!r} find and count tfspawner's containers"
    return None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be True or False"


def _absolute(value: Any) -> str | None:
    return None if isinstance(value, str) and value.startswith("/") else "must be an absolute path"


def _dict(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else "must be a dict"


def _all_dropped(value: Any) -> str | None:
    return None if list(value or []) == ["ALL"] else "every capability must be dropped"


def _not_privileged(value: Any) -> str | None:
    return None if value is False else "must be False"


def _positive(value: Any) -> str | None:
    return None if isinstance(value, int) and value > 0 else "must be a positive number"


def _exact_gpus(value: Any) -> str | None:
    for request in _items(value):
        if not isinstance(request, Mapping) or not request.get("DeviceIDs") or request.get("Count"):
            return "GPUs are handed out by exact device id, never by count"
    return None


def _not_root(value: Any) -> str | None:
    parts = str(value if value is not None else "").split(":")
    if parts[0] in ("", "0", "root") or (len(parts) > 1 and parts[1] in ("0", "root")):
        return f"{value!r} runs the container as root"
    return None


def _items(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Mapping)):
        return [value]
    return list(value)


# --- the tables ----------------------------------------------------------------------

ALLOW, SPAWNER, REFUSE, NEVER = "allow", "spawner", "refuse", "never"


class Rule(NamedTuple):
    """How one keyword is treated.

    ``allow``: admins may set it; ``check`` vets the value. ``spawner``: tfspawner
    sets it; ``check`` vets its value in the finished call. ``refuse``: only when
    named in the escape hatch. ``never``: not even then. ``why`` explains a refusal.
    """

    kind: str
    check: Check | None = None
    why: str = ""
    # The finished call holds tfspawner's values too, e.g. JUPYTERHUB_* variables.
    final: Check | None = None


def allow(check: Check | None = None, final: Check | None = None) -> Rule:
    return Rule(ALLOW, check, final=final)


def spawner(why: str, check: Check | None = None) -> Rule:
    return Rule(SPAWNER, check, why)


def refuse(why: str) -> Rule:
    return Rule(REFUSE, why=why)


def never(why: str, final: Check | None = None) -> Rule:
    return Rule(NEVER, why=why, final=final)


_GENERIC = "tfspawner has no use for it in a user container"
_HOST_NAMESPACE = "it shares a namespace of the host or of another container"

# Every keyword of docker-py 7's create_host_config.
HOST_CONFIG: dict[str, Rule] = {
    # Storage: host paths are checked one by one (see path_refusal).
    "binds": allow(),
    "mounts": allow(),
    "tmpfs": allow(_dict),
    "read_only": allow(_bool),
    "storage_opt": allow(_dict),
    "volumes_from": refuse(
        "it mounts another container's volumes, such as another user's notebooks"
    ),
    "volume_driver": refuse("it changes the driver of every volume the container mounts"),
    # Resources: limits only take away.
    "mem_limit": allow(),
    "memswap_limit": allow(),
    "mem_reservation": allow(),
    "mem_swappiness": allow(),
    "kernel_memory": allow(),
    "shm_size": allow(),
    "cpu_period": allow(),
    "cpu_quota": allow(),
    "cpu_shares": allow(),
    "cpu_count": allow(),
    "cpu_percent": allow(),
    "cpu_rt_period": allow(),
    "cpu_rt_runtime": allow(),
    "cpuset_cpus": allow(),
    "cpuset_mems": allow(),
    "nano_cpus": allow(),
    "blkio_weight": allow(),
    "blkio_weight_device": allow(),
    "device_read_bps": allow(),
    "device_read_iops": allow(),
    "device_write_bps": allow(),
    "device_write_iops": allow(),
    "ulimits": allow(_ulimits),
    "oom_score_adj": allow(_oom_score_adj),
    "sysctls": allow(_sysctls),
    "oom_kill_disable": refuse(
        "the kernel could no longer stop a notebook that outgrows its memory"
    ),
    "pids_limit": spawner("set TFSpawner.pids_limit", _positive),
    "cgroup_parent": refuse("it moves the container out of the engine's cgroup and its limits"),
    "cgroupns": allow(_cgroupns),
    # Confinement.
    "privileged": never("it makes the user root on the host", _not_privileged),
    "cap_add": allow(_capabilities),
    "cap_drop": spawner(
        "every capability is dropped; add harmless ones back with cap_add", _all_dropped
    ),
    "security_opt": allow(_security_opt),
    "group_add": allow(_group_add),
    "devices": refuse("it gives the user the host's devices"),
    "device_cgroup_rules": refuse("it lets the container open host devices"),
    "device_requests": spawner(
        "GPUs come from TFSpawner.gpu_pool and the profiles' gpus", _exact_gpus
    ),
    "runtime": allow(_runtime),
    "init": allow(_bool),
    "init_path": refuse("it runs a host binary as the container's first process"),
    "isolation": refuse("it is for Windows containers"),
    "lxc_conf": refuse("it is raw runtime configuration"),
    "userns_mode": refuse(_HOST_NAMESPACE),
    "uts_mode": refuse(_HOST_NAMESPACE),
    "pid_mode": refuse(_HOST_NAMESPACE),
    "ipc_mode": allow(_ipc_mode),
    # Network.
    "network_mode": allow(_network_mode),
    "dns": allow(),
    "dns_opt": allow(),
    "dns_search": allow(),
    "extra_hosts": allow(),
    "links": refuse("it connects the container to other containers by name"),
    "port_bindings": spawner("the server's port is published by tfspawner"),
    "publish_all_ports": refuse("it publishes the server on host ports, around the proxy"),
    # Life cycle.
    "auto_remove": spawner("tfspawner removes containers after reading why they stopped"),
    "restart_policy": refuse(
        "the engine would restart a stopped server, GPUs and all, behind the hub's back"
    ),
    "log_config": allow(),
}

# Every keyword of docker-py 7's create_container.
CREATE_KWARGS: dict[str, Rule] = {
    "image": never("images are pinned in TFSpawner.images"),
    "platform": refuse("images are pinned in TFSpawner.images"),
    "name": never("tfspawner names containers so that it finds them again"),
    "user": never(
        "the user comes from TFSpawner.uid_strategy; user containers never run as root", _not_root
    ),
    "host_config": never("it would replace the host config that tfspawner builds and checks"),
    "command": spawner("set TFSpawner.cmd"),
    "ports": spawner("the server's port is exposed by tfspawner"),
    "volumes": spawner("set TFSpawner.volumes"),
    "entrypoint": refuse("it replaces the image's entrypoint, which TFSpawner.cmd relies on"),
    # The spawner's variables and labels win over these (containerspec.create_kwargs).
    "environment": allow(_environment, final=_dict),
    "labels": allow(_labels, final=_dict),
    "working_dir": allow(_absolute),
    "hostname": allow(),
    "domainname": allow(),
    "healthcheck": allow(_dict),
    "stop_signal": allow(),
    "stop_timeout": allow(),
    "mac_address": refuse("it could take another container's address on the network"),
    "network_disabled": refuse("the hub could not reach the server"),
    "networking_config": refuse("it connects the container to other networks"),
    "runtime": refuse("set it in extra_host_config"),
    "detach": refuse(_GENERIC),
    "stdin_open": refuse(_GENERIC),
    "tty": refuse(_GENERIC),
    "use_config_proxy": refuse(_GENERIC),
}

# Modes that share a host namespace: never, whatever the escape hatch says.
HOST_NAMESPACE_KEYS = (
    "network_mode",
    "pid_mode",
    "ipc_mode",
    "uts_mode",
    "userns_mode",
    "cgroupns",
)


# --- checking ------------------------------------------------------------------------


class _Allowed(NamedTuple):
    keys: frozenset[str]
    paths: frozenset[str]


def _escape_hint(entry: str) -> str:
    return f". To allow it anyway, add {entry!r} to {ESCAPE_SETTING}"


def _never(where: str, reason: str) -> UnsafeContainerConfig:
    return UnsafeContainerConfig(
        f"{where}: {reason}; this is never allowed in a user container, not even by {ESCAPE_SETTING}"
    )


def allowed_escapes(entries: Iterable[str]) -> _Allowed:
    """The escape hatch's entries: keys to let through, and normalised host paths to bind."""
    keys, paths = set(), set()
    for entry in entries:
        where = f"{ESCAPE_SETTING}[{entry!r}]"
        if entry.startswith("/"):
            refusal = path_refusal(entry)
            if refusal and refusal[1]:
                raise _never(where, refusal[0])
            paths.add(normalise(entry))
            continue
        rule = HOST_CONFIG.get(entry) or CREATE_KWARGS.get(entry)
        if rule is None:
            raise UnsafeContainerConfig(
                f"{where}: not a keyword of create_host_config or create_container, "
                "nor an absolute host path"
            )
        if rule.kind == NEVER:
            raise _never(where, rule.why)
        if entry in ("binds", "mounts"):
            raise UnsafeContainerConfig(f"{where}: name the host paths to allow instead")
        if rule.kind == SPAWNER:
            raise UnsafeContainerConfig(f"{where}: tfspawner sets it itself ({rule.why})")
        keys.add(entry)
    return _Allowed(frozenset(keys), frozenset(paths))


def _hard_refusal(key: str, value: Any) -> str | None:
    if key == "privileged" and value:
        return "privileged=True makes the user root on the host"
    if key in HOST_NAMESPACE_KEYS and value == "host":
        return f"{key}='host' shares the host's namespace with the user"
    return None


def _bind_sources(binds: Any) -> list[str]:
    if isinstance(binds, Mapping):
        return [str(source) for source in binds]
    # docker-py's list form: "source:target[:mode]".
    return [str(bind).split(":", 1)[0] for bind in _items(binds)]


def _mount_sources(mount: Any) -> tuple[str | None, list[str]]:
    """A mount's type and the host paths it binds, for docker-py Mount dicts in either case."""
    if isinstance(mount, str):
        source = mount.split(":", 1)[0]
        return ("bind" if source.startswith("/") else "volume"), [source]
    if not isinstance(mount, Mapping):
        return None, []

    def get(*names):
        return next((mount[name] for name in names if mount.get(name) is not None), None)

    kind = get("Type", "type") or "volume"
    source = get("Source", "source")
    if kind == "bind":
        return kind, [str(source or "")]
    driver = get("driver_config") or (get("VolumeOptions") or {}).get("DriverConfig") or {}
    options = (driver.get("Options") or driver.get("options") or {}) if driver else {}
    # The local driver with o=bind binds its "device", a host path, behind a volume name.
    if "bind" in str(options.get("o", "")).replace("rbind", "bind").split(","):
        return kind, [str(options.get("device", ""))]
    return kind, []


class _Checker:
    """Walks settings, raising on the first refusal and noting what the escape hatch let through."""

    def __init__(self, allowed: _Allowed):
        self.allowed = allowed
        self.escapes: list[str] = []

    def refuse(self, where: str, message: str, entry: str, note: str = "") -> None:
        if entry in self.allowed.keys or entry in self.allowed.paths:
            self.escapes.append(note or where)
            return
        raise UnsafeContainerConfig(f"{where}: {message}{_escape_hint(entry)}")

    def path(self, where: str, source: str) -> None:
        refusal = path_refusal(source)
        if refusal is None:
            return
        reason, final = refusal
        if final:
            raise _never(where, reason)
        path = normalise(source)
        self.refuse(where, reason, path, note=f"{where}: {path}")

    def mounts(self, where: str, mounts: Any) -> None:
        for index, mount in enumerate(_items(mounts)):
            kind, sources = _mount_sources(mount)
            if kind not in ("volume", "bind", "tmpfs"):
                raise UnsafeContainerConfig(
                    f"{where}[{index}]: mount type {kind!r} is not allowed in a user container; "
                    "use 'volume', 'bind' or 'tmpfs'"
                )
            for source in sources:
                self.path(f"{where}[{index}]", source)

    def kwargs(self, kwargs: Mapping, table: dict[str, Rule], setting: str, *, final: bool) -> None:
        for key, value in kwargs.items():
            where = f"{setting}[{key!r}]"
            rule = table.get(key)
            if rule is None:
                raise UnsafeContainerConfig(f"{where}: not a keyword docker-py accepts here")
            self.value(where, key, value, rule, final=final)

    def value(self, where: str, key: str, value: Any, rule: Rule, *, final: bool) -> None:
        hard = _hard_refusal(key, value)
        if hard:
            raise _never(where, hard)
        if not final and rule.kind == NEVER:
            raise _never(where, rule.why)
        if not final and rule.kind == SPAWNER:
            raise UnsafeContainerConfig(f"{where}: tfspawner sets it itself ({rule.why})")
        if rule.kind == REFUSE:
            self.refuse(where, f"not allowed in a user container ({rule.why})", key)
        elif key == "binds":
            for source in _bind_sources(value):
                self.path(where, source)
        elif key == "mounts":
            self.mounts(where, value)
        else:
            check = rule.final if final and rule.final else rule.check
            reason = check(value) if check else None
            if reason and rule.kind != ALLOW:
                raise _never(where, reason)
            if reason:
                self.refuse(where, f"{value!r} is not allowed in a user container ({reason})", key)


def check_isolation(host_config: Mapping[str, Any], setting: str) -> None:
    """The rules no setting can lift: privileged, host namespaces, the Docker socket."""
    for key, value in host_config.items():
        hard = _hard_refusal(key, value)
        if hard:
            raise _never(f"{setting}[{key!r}]", hard)
    sources = [("binds", source) for source in _bind_sources(host_config.get("binds"))]
    for mount in _items(host_config.get("mounts")):
        sources += [("mounts", source) for source in _mount_sources(mount)[1]]
    for key, source in sources:
        refusal = path_refusal(source)
        if refusal and refusal[1]:
            raise _never(f"{setting}[{key!r}]", refusal[0])


def warn_unchecked(log, unchecked: Iterable[str], into: str = "user containers") -> None:
    """Log what the escape hatch let through, so it is never silent."""
    if unchecked:
        log.warning(
            "%s lets these unchecked settings into %s: %s",
            ESCAPE_SETTING,
            into,
            "; ".join(unchecked),
        )


def check_admin_settings(
    *,
    extra_host_config: Any = None,
    extra_create_kwargs: Any = None,
    volumes: Mapping[str, Any] | None = None,
    read_only_volumes: Mapping[str, Any] | None = None,
    mounts: Iterable[Any] = (),
    datasets: Mapping[str, Iterable[str]] | None = None,
    cap_add: Iterable[str] = (),
    network_name: str | None = None,
    allow_unsafe: Iterable[str] = (),
) -> list[str]:
    """Check what an admin configured for user containers; raise ``UnsafeContainerConfig``.

    Callables are skipped: the spawner checks what they return at each spawn.
    ``datasets`` maps a profile's slug to its dataset sources. Returns the
    settings that only the escape hatch lets through, for a warning.
    """
    checker = _Checker(allowed_escapes(allow_unsafe))
    if isinstance(extra_host_config, Mapping):
        checker.kwargs(extra_host_config, HOST_CONFIG, "TFSpawner.extra_host_config", final=False)
    if isinstance(extra_create_kwargs, Mapping):
        checker.kwargs(
            extra_create_kwargs, CREATE_KWARGS, "TFSpawner.extra_create_kwargs", final=False
        )
    for setting, binds in (("volumes", volumes), ("read_only_volumes", read_only_volumes)):
        for source in binds or {}:
            checker.path(f"TFSpawner.{setting}[{source!r}]", str(source))
    checker.mounts("TFSpawner.mounts", list(mounts))
    for slug, sources in (datasets or {}).items():
        for source in sources:
            checker.path(f"TFSpawner.profiles[{slug!r}]['datasets']", source)
    # The spawner's own traits that end up in the same keywords.
    for where, key, value in (
        ("TFSpawner.cap_add", "cap_add", list(cap_add)),
        ("TFSpawner.network_name", "network_mode", network_name),
    ):
        if value:
            checker.value(where, key, value, HOST_CONFIG[key], final=False)
    return checker.escapes


def check_create_call(
    host_config: Mapping[str, Any],
    create_kwargs: Mapping[str, Any],
    allow_unsafe: Iterable[str] = (),
) -> None:
    """Check the finished create call, the spawner's values included, before it reaches the engine."""
    checker = _Checker(allowed_escapes(allow_unsafe))
    checker.kwargs(host_config, HOST_CONFIG, "the container's host config", final=True)
    checker.kwargs(create_kwargs, CREATE_KWARGS, "the container's create call", final=True)
    opts = [str(opt) for opt in _items(host_config.get("security_opt"))]
    if "no-new-privileges" not in opts and "no-new-privileges:true" not in opts:
        raise _never("the container's host config['security_opt']", "no-new-privileges is missing")
