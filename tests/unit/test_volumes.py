import pytest

from tfspawner import volumes
from tfspawner.volumes import UnsafePath


@pytest.mark.parametrize(
    ("user", "server", "per_server", "name"),
    [
        ("alice", "", False, "tfspawner-hub--alice"),
        ("alice", "gpu", False, "tfspawner-hub--alice"),
        ("alice", "gpu", True, "tfspawner-hub--alice--gpu"),
        ("alice", "", True, "tfspawner-hub--alice"),
        ("Alice", "", False, "tfspawner-hub---41lice"),
        ("a.b", "", False, "tfspawner-hub--a-2eb"),
        ("a-2eb", "", False, "tfspawner-hub--a-2d2eb"),
    ],
)
def test_volume_name(user, server, per_server, name):
    assert volumes.volume_name("hub", user, server, per_server=per_server) == name


@pytest.mark.parametrize(
    ("root", "name", "path"),
    [
        ("/srv/homes", "tfspawner-hub--alice", "/srv/homes/tfspawner-hub--alice"),
        ("/srv/homes/", "x", "/srv/homes/x"),
    ],
)
def test_host_path(root, name, path):
    assert volumes.host_path(root, name) == path


@pytest.mark.parametrize(
    ("root", "name"),
    [
        ("/srv", ".."),
        ("/srv", "../etc"),
        ("/srv", "a/b"),
        ("/srv", "/etc"),
        ("srv", "x"),
        ("/srv", ""),
        ("/srv", "."),
    ],
)
def test_host_path_refuses_traversal(root, name):
    with pytest.raises(UnsafePath):
        volumes.host_path(root, name)


def test_init_scripts_quote_paths():
    assert (
        volumes.init_script("/tf", 100001, 100)
        == "mkdir -p /tf && chown -R 100001:100 /tf && chmod 0700 /tf"
    )
    script = volumes.bind_init_script("/mnt/root", "tfspawner-hub--a", 5, 6)
    assert (
        script
        == "[ -d /mnt/root/tfspawner-hub--a ] || { mkdir /mnt/root/tfspawner-hub--a && chown 5:6 /mnt/root/tfspawner-hub--a && chmod 0700 /mnt/root/tfspawner-hub--a; }"
    )
