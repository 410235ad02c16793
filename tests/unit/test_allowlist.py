import inspect

import pytest
from docker.api.container import ContainerApiMixin
from docker.types import DriverConfig, Mount, Ulimit
from docker.types.containers import HostConfig

from tfspawner import allowlist, containerspec
from tfspawner.allowlist import UnsafeContainerConfig

NEVER = "not even by TFSpawner.allow_unsafe_container_settings"


def test_tables_cover_every_docker_py_keyword():
    host = set(inspect.signature(HostConfig.__init__).parameters) - {"self", "version"}
    create = set(inspect.signature(ContainerApiMixin.create_container).parameters) - {"self"}
    assert set(allowlist.HOST_CONFIG) == host
    assert set(allowlist.CREATE_KWARGS) == create


def test_label_prefix_is_containerspecs():
    assert allowlist.LABEL_PREFIX == containerspec.LABEL_PREFIX


@pytest.mark.parametrize(
    ("path", "normalised"),
    [
        ("/var/run/./docker.sock", "/var/run/docker.sock"),
        ("//var//run/docker.sock", "/var/run/docker.sock"),
        ("///var/run/docker.sock", "/var/run/docker.sock"),
        ("/srv/../var/run/docker.sock", "/var/run/docker.sock"),
        ("/../../var", "/var"),
        ("/var/", "/var"),
        ("/srv/data/", "/srv/data"),
    ],
)
def test_normalise(path, normalised):
    assert allowlist.normalise(path) == normalised


@pytest.mark.parametrize(
    ("source", "refusal"),
    [
        # The engine's sockets, however spelt, and every directory above them: never.
        ("/var/run/docker.sock", "never"),
        ("/var/run/./docker.sock", "never"),
        ("//var//run/docker.sock", "never"),
        ("/srv/../var/run/docker.sock", "never"),
        ("/run/docker.sock", "never"),
        ("/run/user/1000/docker.sock", "never"),
        ("/run/containerd/containerd.sock", "never"),
        ("/", "never"),
        ("//", "never"),
        ("/var", "never"),
        ("/var/", "never"),
        ("/var/run", "never"),
        ("/run", "never"),
        ("/run/containerd", "never"),
        # System directories and what is inside them: only through the escape hatch.
        ("/etc", "refused"),
        ("/etc/localtime", "refused"),
        ("/proc", "refused"),
        ("/proc/1/root", "refused"),
        ("/sys/fs/cgroup", "refused"),
        ("/dev", "refused"),
        ("/dev/shm", "refused"),
        ("/boot", "refused"),
        ("/root/.ssh", "refused"),
        ("/var/lib/docker", "refused"),
        ("/var/lib/docker/volumes/x/_data", "refused"),
        ("/var/lib", "refused"),
        ("/usr", "refused"),
        ("/run/secrets", "refused"),
        # Volume names and ordinary host directories.
        ("course-material", None),
        ("jupyterhub-user-{username}", None),
        ("/srv/datasets", None),
        ("/srv/homes/{username}", None),
        ("/home/alice", None),
        ("/usr/share/fonts", None),
        ("/var/lib/jupyter-data", None),
        ("/data/docker.socket", None),
    ],
)
def test_path_refusal(source, refusal):
    result = allowlist.path_refusal(source)
    if refusal is None:
        assert result is None
    else:
        assert result is not None
        assert result[1] == (refusal == "never"), result


REFUSED = [
    # The Docker socket, however it is reached.
    (
        {"extra_host_config": {"binds": {"/var/run/./docker.sock": {"bind": "/d.sock"}}}},
        "TFSpawner.extra_host_config['binds']: host path /var/run/docker.sock exposes the Docker socket",
    ),
    (
        {"extra_host_config": {"binds": ["//var//run/docker.sock:/var/run/docker.sock:ro"]}},
        "TFSpawner.extra_host_config['binds']: host path /var/run/docker.sock exposes the Docker socket",
    ),
    (
        {"volumes": {"/srv/../var/run/docker.sock": "/d.sock"}},
        "TFSpawner.volumes['/srv/../var/run/docker.sock']: host path /var/run/docker.sock",
    ),
    ({"read_only_volumes": {"/var/": "/host-var"}}, "TFSpawner.read_only_volumes['/var/']"),
    ({"volumes": {"/": "/host"}}, "TFSpawner.volumes['/']: host path / exposes the Docker socket"),
    (
        {"mounts": [{"type": "bind", "source": "/run/docker.sock", "target": "/d.sock"}]},
        "TFSpawner.mounts[0]: host path /run/docker.sock exposes the Docker socket",
    ),
    (
        {"mounts": [Mount("/d.sock", "/var/run/docker.sock", type="bind", read_only=True)]},
        "TFSpawner.mounts[0]: host path /var/run/docker.sock exposes the Docker socket",
    ),
    (
        {"extra_host_config": {"mounts": [Mount("/x", "/var/run/./", type="bind")]}},
        "TFSpawner.extra_host_config['mounts'][0]: host path /var/run exposes the Docker socket",
    ),
    (
        {
            "mounts": [
                Mount(
                    "/x",
                    "innocent-name",
                    driver_config=DriverConfig(
                        "local", {"type": "none", "o": "bind", "device": "/"}
                    ),
                )
            ]
        },
        "TFSpawner.mounts[0]: host path / exposes the Docker socket",
    ),
    # System directories.
    (
        {"volumes": {"/etc": "/host-etc"}},
        "TFSpawner.volumes['/etc']: host path /etc is or contains",
    ),
    ({"volumes": {"/proc/1/root": "/r"}}, "host path /proc/1/root is inside the host's /proc"),
    ({"datasets": {"cpu": ["/var/lib/docker"]}}, "TFSpawner.profiles['cpu']['datasets']"),
    (
        {"mounts": [{"type": "npipe", "source": "x", "target": "/x"}]},
        "TFSpawner.mounts[0]: mount type 'npipe' is not allowed",
    ),
    # Namespaces of the host or of other containers.
    ({"extra_host_config": {"network_mode": "host"}}, "network_mode='host'"),
    (
        {"extra_host_config": {"network_mode": "container:jupyter-bob"}},
        "TFSpawner.extra_host_config['network_mode']: 'container:jupyter-bob' is not allowed",
    ),
    ({"extra_host_config": {"network_mode": "net; rm"}}, "only the name of a Docker network"),
    ({"network_name": "host"}, "TFSpawner.network_name: network_mode='host'"),
    ({"network_name": "container:abc"}, "TFSpawner.network_name: 'container:abc'"),
    ({"extra_host_config": {"pid_mode": "host"}}, "pid_mode='host'"),
    ({"extra_host_config": {"pid_mode": "container:abc"}}, "['pid_mode']: not allowed"),
    ({"extra_host_config": {"ipc_mode": "host"}}, "ipc_mode='host'"),
    ({"extra_host_config": {"ipc_mode": "container:abc"}}, "['ipc_mode']: 'container:abc'"),
    ({"extra_host_config": {"uts_mode": "host"}}, "uts_mode='host'"),
    ({"extra_host_config": {"userns_mode": "host"}}, "userns_mode='host'"),
    ({"extra_host_config": {"cgroupns": "host"}}, "cgroupns='host'"),
    ({"extra_host_config": {"volumes_from": ["jupyter-bob"]}}, "['volumes_from']: not allowed"),
    ({"extra_host_config": {"links": {"jupyter-bob": "bob"}}}, "['links']: not allowed"),
    # Devices and confinement.
    ({"extra_host_config": {"privileged": True}}, "privileged=True"),
    ({"extra_host_config": {"privileged": False}}, "['privileged']: it makes the user root"),
    ({"extra_host_config": {"devices": ["/dev/fuse"]}}, "['devices']: not allowed"),
    ({"extra_host_config": {"device_cgroup_rules": ["c 1:3 mr"]}}, "device_cgroup_rules"),
    ({"extra_host_config": {"security_opt": ["seccomp=unconfined"]}}, "'seccomp=unconfined'"),
    ({"extra_host_config": {"security_opt": ["seccomp:unconfined"]}}, "'seccomp:unconfined'"),
    ({"extra_host_config": {"security_opt": ["apparmor=unconfined"]}}, "'apparmor=unconfined'"),
    ({"extra_host_config": {"security_opt": ["apparmor:unconfined"]}}, "apparmor:unconfined"),
    ({"extra_host_config": {"security_opt": ["label=disable"]}}, "'label=disable'"),
    ({"extra_host_config": {"security_opt": ["label:disable"]}}, "'label:disable'"),
    ({"extra_host_config": {"security_opt": ["label=type:spc_t"]}}, "'label=type:spc_t'"),
    ({"extra_host_config": {"security_opt": ["systempaths=unconfined"]}}, "systempaths"),
    ({"extra_host_config": {"security_opt": ["no-new-privileges=false"]}}, "no-new-privileges"),
    ({"extra_host_config": {"security_opt": ["seccomp=/srv/loose.json"]}}, "seccomp="),
    ({"extra_host_config": {"cap_add": ["SYS_ADMIN"]}}, "capability SYS_ADMIN is not one of"),
    ({"extra_host_config": {"cap_add": ["CAP_SYS_ADMIN"]}}, "capability SYS_ADMIN"),
    ({"extra_host_config": {"cap_add": ["ALL"]}}, "capability ALL"),
    ({"extra_host_config": {"cap_add": ["DAC_OVERRIDE"]}}, "capability DAC_OVERRIDE"),
    ({"extra_host_config": {"cap_add": ["SETUID"]}}, "capability SETUID"),
    ({"cap_add": ["NET_ADMIN"]}, "TFSpawner.cap_add: ['NET_ADMIN'] is not allowed"),
    ({"extra_host_config": {"cap_drop": []}}, "['cap_drop']: tfspawner sets it itself"),
    ({"extra_host_config": {"pids_limit": -1}}, "TFSpawner.pids_limit"),
    ({"extra_host_config": {"device_requests": [{"Count": -1}]}}, "TFSpawner.gpu_pool"),
    ({"extra_host_config": {"sysctls": {"kernel.core_pattern": "|/x"}}}, "kernel.core_pattern"),
    ({"extra_host_config": {"sysctls": {"net.ipv4.ip_forward": "1"}}}, "net.ipv4.ip_forward"),
    ({"extra_host_config": {"ulimits": [Ulimit(name="rtprio", hard=99)]}}, "ulimit 'rtprio'"),
    ({"extra_host_config": {"oom_score_adj": -1000}}, "only 0 to 1000"),
    ({"extra_host_config": {"oom_kill_disable": True}}, "['oom_kill_disable']: not allowed"),
    ({"extra_host_config": {"group_add": [0]}}, "group 0"),
    ({"extra_host_config": {"cgroup_parent": "/"}}, "['cgroup_parent']: not allowed"),
    ({"extra_host_config": {"runtime": "sysbox-runc"}}, "['runtime']: 'sysbox-runc'"),
    ({"extra_host_config": {"init_path": "/usr/bin/sh"}}, "['init_path']: not allowed"),
    ({"extra_host_config": {"publish_all_ports": True}}, "['publish_all_ports']: not allowed"),
    ({"extra_host_config": {"port_bindings": {8888: 8888}}}, "['port_bindings']: tfspawner sets"),
    ({"extra_host_config": {"restart_policy": {"Name": "always"}}}, "['restart_policy']"),
    ({"extra_host_config": {"no_such_key": 1}}, "['no_such_key']: not a keyword"),
    # The create call.
    ({"extra_create_kwargs": {"image": "evil:latest"}}, "['image']: images are pinned"),
    ({"extra_create_kwargs": {"entrypoint": ["/bin/sh"]}}, "['entrypoint']: not allowed"),
    ({"extra_create_kwargs": {"command": ["sh"]}}, "['command']: tfspawner sets it itself"),
    ({"extra_create_kwargs": {"user": "root"}}, "['user']: the user comes from"),
    ({"extra_create_kwargs": {"user": "1000"}}, "['user']: the user comes from"),
    ({"extra_create_kwargs": {"name": "jupyter-bob"}}, "['name']: tfspawner names"),
    ({"extra_create_kwargs": {"host_config": {}}}, "['host_config']: it would replace"),
    ({"extra_create_kwargs": {"volumes": ["/x"]}}, "['volumes']: tfspawner sets"),
    ({"extra_create_kwargs": {"ports": {"22/tcp": None}}}, "['ports']: tfspawner sets"),
    ({"extra_create_kwargs": {"mac_address": "02:42:ac:11:00:02"}}, "['mac_address']"),
    ({"extra_create_kwargs": {"networking_config": {}}}, "['networking_config']"),
    ({"extra_create_kwargs": {"platform": "linux/arm64"}}, "['platform']"),
    (
        {"extra_create_kwargs": {"environment": {"NVIDIA_VISIBLE_DEVICES": "all"}}},
        "TFSpawner.extra_create_kwargs['environment']: {'NVIDIA_VISIBLE_DEVICES': 'all'}",
    ),
    ({"extra_create_kwargs": {"environment": {"JUPYTERHUB_API_URL": "x"}}}, "JUPYTERHUB_API_URL"),
    ({"extra_create_kwargs": {"environment": ["A=1"]}}, "must be a dict"),
    ({"extra_create_kwargs": {"labels": {"tfspawner.init": "true"}}}, "tfspawner.init"),
    ({"extra_create_kwargs": {"working_dir": "tf"}}, "must be an absolute path"),
]


@pytest.mark.parametrize(("settings", "message"), REFUSED)
def test_refused(settings, message):
    with pytest.raises(UnsafeContainerConfig) as raised:
        allowlist.check_admin_settings(**settings)
    assert message in str(raised.value)


ALLOWED = [
    {"extra_host_config": {}, "extra_create_kwargs": {}, "volumes": {}, "mounts": []},
    {
        "extra_host_config": {
            "mem_limit": "4G",
            "memswap_limit": "4G",
            "mem_reservation": "1G",
            "shm_size": "1G",
            "cpu_period": 50_000,
            "cpu_quota": 100_000,
            "cpu_shares": 512,
            "cpuset_cpus": "0-3",
            "nano_cpus": 2_000_000_000,
            "ulimits": [Ulimit(name="nofile", soft=4096, hard=8192), {"Name": "core", "Hard": 0}],
            "oom_score_adj": 500,
            "init": True,
            "read_only": False,
            "tmpfs": {"/tmp": "size=1G"},
            "storage_opt": {"size": "20G"},
            "dns": ["10.0.0.2"],
            "dns_search": ["example.edu"],
            "dns_opt": ["ndots:1"],
            "extra_hosts": {"licence.example.edu": "10.0.0.5"},
            "log_config": {"type": "json-file", "config": {"max-size": "10m"}},
            "sysctls": {"net.ipv4.ping_group_range": "0 2147483647"},
            "network_mode": "jupyterhub-users",
            "ipc_mode": "private",
            "cgroupns": "private",
            "runtime": "nvidia",
            "group_add": ["1500"],
            "cap_add": ["SYS_PTRACE", "cap_net_bind_service"],
            "security_opt": ["no-new-privileges", "no-new-privileges:true", "label=level:s0:c1"],
            "binds": {"/srv/datasets": {"bind": "/data", "mode": "ro"}, "scratch": "/scratch"},
            "mounts": [Mount("/tmp/x", None, type="tmpfs")],
        },
        "extra_create_kwargs": {
            "working_dir": "/tf",
            "environment": {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_CACHE_PATH": "/tmp/cuda"},
            "labels": {"team": "physics"},
            "hostname": "notebook",
            "stop_signal": "SIGINT",
            "stop_timeout": 30,
            "healthcheck": {"test": ["CMD", "true"]},
        },
    },
    {"volumes": {"jupyterhub-user-{username}": "/home/jovyan/work", "/srv/homes/{username}": "/h"}},
    {"read_only_volumes": {"/srv/course": "/course", "/usr/share/fonts": "/usr/share/fonts"}},
    {
        "mounts": [
            {"type": "bind", "source": "/srv/shared", "target": "/shared", "read_only": True},
            {"type": "volume", "source": "scratch-{username}", "target": "/scratch"},
            Mount(
                "/nfs",
                "nfs-home",
                driver_config=DriverConfig("local", {"type": "nfs", "o": "addr=10.0.0.9,rw"}),
            ),
        ]
    },
    {"datasets": {"cpu": ["course-material", "/srv/datasets/mnist"]}},
    {"cap_add": ["SYS_PTRACE"], "network_name": "bridge"},
    # Callables are checked at each spawn, with the user they depend on.
    {"extra_host_config": lambda spawner: {"devices": ["/dev/fuse"]}},
    {"extra_create_kwargs": lambda spawner: {"image": "evil"}},
]


@pytest.mark.parametrize("settings", ALLOWED)
def test_allowed(settings):
    assert allowlist.check_admin_settings(**settings) == []


@pytest.mark.parametrize(
    ("settings", "allow", "used"),
    [
        (
            {"extra_host_config": {"devices": ["/dev/fuse"]}},
            ["devices"],
            ["TFSpawner.extra_host_config['devices']"],
        ),
        (
            {"extra_host_config": {"security_opt": ["seccomp=unconfined"]}},
            ["security_opt"],
            ["TFSpawner.extra_host_config['security_opt']"],
        ),
        ({"cap_add": ["SYS_ADMIN"]}, ["cap_add"], ["TFSpawner.cap_add"]),
        (
            {"extra_create_kwargs": {"entrypoint": ["tini", "--"]}},
            ["entrypoint"],
            ["TFSpawner.extra_create_kwargs['entrypoint']"],
        ),
        (
            {"read_only_volumes": {"/etc/./localtime": "/etc/localtime"}},
            ["/etc/localtime"],
            ["TFSpawner.read_only_volumes['/etc/./localtime']: /etc/localtime"],
        ),
        # Unused entries are fine, and no warning is due.
        ({"extra_host_config": {"mem_limit": "1G"}}, ["devices", "/dev/fuse"], []),
    ],
)
def test_escape_hatch(settings, allow, used):
    assert allowlist.check_admin_settings(**settings, allow_unsafe=allow) == used


@pytest.mark.parametrize(
    ("settings", "allow", "message"),
    [
        # An escape names exactly one key or one path.
        ({"extra_host_config": {"devices": [], "links": {}}}, ["devices"], "['links']"),
        ({"volumes": {"/etc/passwd": "/p"}}, ["/etc/localtime"], "add '/etc/passwd'"),
        # What hands the user the host stays refused whatever the escape hatch says.
        ({"extra_host_config": {"privileged": True}}, ["devices"], NEVER),
        ({"extra_host_config": {"network_mode": "host"}}, ["network_mode"], NEVER),
        ({"extra_host_config": {"pid_mode": "host"}}, ["pid_mode"], NEVER),
        ({"volumes": {"/var/run/docker.sock": "/d"}}, ["security_opt"], NEVER),
        ({"extra_create_kwargs": {"entrypoint": []}}, ["devices"], "add 'entrypoint'"),
    ],
)
def test_escape_hatch_is_exact(settings, allow, message):
    with pytest.raises(UnsafeContainerConfig, match=message.replace("[", r"\[")):
        allowlist.check_admin_settings(**settings, allow_unsafe=allow)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("privileged", "it makes the user root on the host; this is never allowed"),
        ("image", "images are pinned"),
        ("user", "never run as root"),
        ("name", "never allowed"),
        ("host_config", "never allowed"),
        ("/var/run/docker.sock", "exposes the Docker socket"),
        ("/var/run/../run/docker.sock", "exposes the Docker socket"),
        ("/var", "exposes the Docker socket"),
        ("/", "exposes the Docker socket"),
        ("pids_limit", "tfspawner sets it itself"),
        ("binds", "name the host paths to allow instead"),
        ("devicez", "not a keyword of create_host_config or create_container"),
        ("etc/localtime", "not a keyword"),
    ],
)
def test_escape_hatch_entries_are_checked(entry, message):
    with pytest.raises(UnsafeContainerConfig) as raised:
        allowlist.check_admin_settings(allow_unsafe=[entry])
    assert str(raised.value).startswith(f"TFSpawner.allow_unsafe_container_settings[{entry!r}]: ")
    assert message in str(raised.value)


def build_call(host_extra=None, create_extra=None, **overrides):
    """The create call as TFSpawner.create_object builds it."""
    host = dict(
        extra=host_extra or {},
        network_mode="bridge",
        port_bindings={8888: ("127.0.0.1",)},
        binds={"tfspawner-h-alice": {"bind": "/tf", "mode": "rw,nocopy"}},
        mounts=[],
        auto_remove=False,
        mem_limit="4G",
        cpu_limit=2,
        pids_limit=1024,
        cap_add=[],
        gpu_ids=["0"],
        shm_size="2G",
    )
    host.update(overrides)
    create = containerspec.create_kwargs(
        image="registry/tf@sha256:" + "a" * 64,
        name="tfspawner-h-alice",
        command=["jupyterhub-singleuser"],
        environment={"NVIDIA_VISIBLE_DEVICES": "0", "JUPYTERHUB_API_TOKEN": "t"},
        labels=containerspec.labels(hub="h", user="alice", server="", image="i", gpu_ids=["0"]),
        user="100001:100",
        port=8888,
        volumes=[],
        extra=create_extra or {},
    )
    return containerspec.host_config(**host), create


def test_create_call_as_built_passes():
    host, create = build_call(
        {"ulimits": [Ulimit(name="nofile", soft=1, hard=2)], "cap_add": ["SYS_PTRACE"]},
        {"working_dir": "/tf", "labels": {"team": "x"}},
        mounts=[Mount("/data", "course", type="volume", read_only=True)],
    )
    allowlist.check_create_call(host, create)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, c: h.update(privileged=True), "privileged=True"),
        (lambda h, c: h.update(cap_drop=[]), "every capability must be dropped"),
        (lambda h, c: h.update(security_opt=[]), "no-new-privileges is missing"),
        (lambda h, c: h.update(pids_limit=0), "['pids_limit']: must be a positive number"),
        (lambda h, c: h.update(device_requests=[{"Count": -1}]), "never by count"),
        (lambda h, c: h.update(devices=["/dev/sda"]), "host config['devices']: not allowed"),
        (lambda h, c: h.update(network_mode="container:bob"), "'container:bob'"),
        (lambda h, c: h["binds"].update({"/var/run/docker.sock": "/d"}), "Docker socket"),
        (lambda h, c: h["binds"].update({"/etc/shadow": "/s"}), "inside the host's /etc"),
        (lambda h, c: c.update(user="0:100"), "'0:100' runs the container as root"),
        (lambda h, c: c.update(user="root"), "runs the container as root"),
        (lambda h, c: c.update(user=""), "runs the container as root"),
        (lambda h, c: c.update(entrypoint=["sh"]), "create call['entrypoint']: not allowed"),
        (lambda h, c: c.update(networking_config={}), "['networking_config']"),
    ],
)
def test_create_call_is_checked(change, message):
    host, create = build_call()
    change(host, create)
    with pytest.raises(UnsafeContainerConfig) as raised:
        allowlist.check_create_call(host, create)
    assert message in str(raised.value)


def test_create_call_refuses_what_extras_merged_in():
    # The builders keep the spawner's hardening; the allowlist refuses the rest.
    host, create = build_call({"security_opt": ["seccomp=unconfined"]})
    with pytest.raises(UnsafeContainerConfig, match="seccomp=unconfined"):
        allowlist.check_create_call(host, create)
    allowlist.check_create_call(host, create, allow_unsafe=["security_opt"])

    host, create = build_call(binds={"/etc/localtime": {"bind": "/etc/localtime", "mode": "ro"}})
    with pytest.raises(UnsafeContainerConfig, match="'/etc/localtime'"):
        allowlist.check_create_call(host, create)
    allowlist.check_create_call(host, create, allow_unsafe=["/etc/localtime"])


def test_create_kwargs_keep_image_name_and_command_over_extras():
    _, create = build_call(
        create_extra={
            "image": "evil",
            "name": "bob",
            "command": ["sh"],
            "ports": {},
            "volumes": ["/"],
        }
    )
    assert create["image"].startswith("registry/tf@sha256:")
    assert create["name"] == "tfspawner-h-alice"
    assert create["command"] == ["jupyterhub-singleuser"]
    assert create["ports"] == {"8888/tcp": None}
    assert create["volumes"] == []
