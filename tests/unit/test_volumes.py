import io
import os
import subprocess
import tarfile

import pytest

from tfspawner import archive, volumes
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


def test_bind_init_script_quotes_paths():
    script = volumes.bind_init_script("/mnt/root", "tfspawner-hub--a", 5, 6)
    assert script == (
        'if [ -d /mnt/root/tfspawner-hub--a ]; then [ "$(stat -c %u /mnt/root/tfspawner-hub--a)" '
        '= "5" ] || exit 3; else mkdir /mnt/root/tfspawner-hub--a && chown 5:6 '
        "/mnt/root/tfspawner-hub--a && chmod 0700 /mnt/root/tfspawner-hub--a; fi"
    )


@pytest.mark.parametrize(
    ("owner", "status", "made"),
    [(None, 0, True), (5, 0, False), (7, volumes.OWNED_BY_ANOTHER_UID, False)],
)
def test_bind_init_script_never_hands_over_another_uids_directory(tmp_path, owner, status, made):
    target = tmp_path / "home"
    if owner is not None:
        target.mkdir()
        os.chown(target, owner, 0)
    script = volumes.bind_init_script(str(tmp_path), "home", 5, 6)
    result = subprocess.run(["/bin/sh", "-c", script], capture_output=True)
    assert result.returncode == status
    assert target.stat().st_uid == (5 if owner is None else owner)
    if made:
        assert oct(target.stat().st_mode & 0o777) == "0o700"


def image_archive(top: str, *entries) -> bytes:
    """An archive as the engine returns it for ``top``: entries (name, type, mode, extra)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, kind, mode, extra in [(top, tarfile.DIRTYPE, 0o755, None), *entries]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.uname = kind, mode, 0, 0, "root"
            data = None
            if kind == tarfile.REGTYPE:
                data = extra.encode()
                info.size = len(data)
            elif extra is not None:
                info.linkname = extra
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def members(archive: bytes) -> dict[str, tuple]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {
            m.name: (m.type, oct(m.mode), m.uid, m.gid, m.uname, m.linkname)
            for m in tar.getmembers()
        }


REG, DIR, SYM, LNK, FIFO = (
    tarfile.REGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.FIFOTYPE,
)


@pytest.mark.parametrize(
    ("notebook_dir", "source", "expected"),
    [
        # Nothing in the image: only the volume's root, the user's, 0700.
        ("/home/jovyan", None, {"home/jovyan": (DIR, "0o700", 7, 8, "", "")}),
        ("/tf/", None, {"tf": (DIR, "0o700", 7, 8, "", "")}),
        ("/srv//work/./nb", None, {"srv/work/nb": (DIR, "0o700", 7, 8, "", "")}),
        (
            "/tf",
            image_archive(
                "tf",
                ("tf/notebooks", DIR, 0o755, None),
                ("tf/notebooks/intro.ipynb", REG, 0o644, "{}"),
                ("tf/run", REG, 0o4755, "#!/bin/sh"),  # setuid dropped
                ("tf/latest", SYM, 0o777, "notebooks/intro.ipynb"),
                ("tf/copy", LNK, 0o644, "tf/notebooks/intro.ipynb"),
                ("tf/pipe", FIFO, 0o644, None),  # left out
                ("tf/escape", LNK, 0o644, "etc/shadow"),  # link out of the tree: left out
                ("other", REG, 0o644, "x"),  # not under the directory: left out
            ),
            {
                "tf": (DIR, "0o700", 7, 8, "", ""),
                "tf/notebooks": (DIR, "0o755", 7, 8, "", ""),
                "tf/notebooks/intro.ipynb": (REG, "0o644", 7, 8, "", ""),
                "tf/run": (REG, "0o755", 7, 8, "", ""),
                "tf/latest": (SYM, "0o777", 7, 8, "", "notebooks/intro.ipynb"),
                "tf/copy": (LNK, "0o644", 7, 8, "", "tf/notebooks/intro.ipynb"),
            },
        ),
        (
            # Below a parent: names and hard-link targets move under it, symlinks do not.
            "/home/jovyan",
            image_archive(
                "jovyan",
                ("jovyan/.bashrc", REG, 0o644, "set -o vi"),
                ("jovyan/.profile", LNK, 0o644, "jovyan/.bashrc"),
                ("jovyan/data", SYM, 0o777, "/srv/data"),
            ),
            {
                "home/jovyan": (DIR, "0o700", 7, 8, "", ""),
                "home/jovyan/.bashrc": (REG, "0o644", 7, 8, "", ""),
                "home/jovyan/.profile": (LNK, "0o644", 7, 8, "", "home/jovyan/.bashrc"),
                "home/jovyan/data": (SYM, "0o777", 7, 8, "", "/srv/data"),
            },
        ),
    ],
)
def test_seed_members_hand_the_volume_and_the_image_files_to_the_user(
    notebook_dir, source, expected
):
    built = archive.build(volumes.seed_members(source, notebook_dir, 7, 8))
    assert members(built) == expected


def test_seed_members_keep_file_contents():
    source = image_archive("tf", ("tf/a.txt", REG, 0o600, "hello"))
    built = archive.build(volumes.seed_members(source, "/tf", 1, 1))
    assert archive.read_text(built, "tf/a.txt") == "hello"


@pytest.mark.parametrize("notebook_dir", ["/", "tf", "", "/tf/.."])
def test_seed_members_refuse_a_directory_they_cannot_name(notebook_dir):
    with pytest.raises(UnsafePath):
        volumes.seed_members(None, notebook_dir, 1, 1)


def test_account_files_and_volume_seed_travel_in_one_archive():
    built = archive.build(
        [
            archive.text_file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
            *volumes.seed_members(None, "/home/jovyan", 1000, 100),
        ]
    )
    assert members(built) == {
        "etc/passwd": (REG, "0o644", 0, 0, "", ""),
        "home/jovyan": (DIR, "0o700", 1000, 100, "", ""),
    }
    assert archive.read_text(built, "etc/passwd") == "root:x:0:0::/root:/bin/sh\n"
    assert archive.read_text(built, "home/jovyan") == ""
