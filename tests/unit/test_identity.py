import pytest

from tfspawner import identity
from tfspawner.identity import UnsafeIdentity

PASSWD = {"ldapuser": (20001, 500), "daemon": (1, 1), "www-data": (33, 33), "edge": (1000, 100)}


def lookup(name):
    return PASSWD[name]


def resolve(strategy, username="alice", static_map=None):
    return identity.resolve(
        strategy,
        username=username,
        hub_user_id=7,
        base=100000,
        default_gid=100,
        static_map=static_map or {},
        passwd_lookup=lookup,
    )


@pytest.mark.parametrize(
    ("strategy", "username", "static_map", "ids"),
    [
        ("stable", "alice", None, (100007, 100)),
        ("static", "alice", {"alice": 1234}, (1234, 100)),
        ("static", "alice", {"alice": "1234:200"}, (1234, 200)),
        ("static", "alice", {"alice": (1234, 300)}, (1234, 300)),
        ("passwd", "ldapuser", None, (20001, 500)),
        ("passwd", "edge", None, (1000, 100)),
    ],
)
def test_resolve(strategy, username, static_map, ids):
    assert resolve(strategy, username, static_map) == ids


@pytest.mark.parametrize(
    ("strategy", "username", "static_map", "message"),
    [
        ("static", "bob", {"alice": 1}, "no entry in TFSpawner.uid_map"),
        ("static", "alice", {"alice": "x"}, "not a uid"),
        ("static", "alice", {"alice": True}, "not a uid"),
        ("passwd", "nobody-here", None, "not in the host's passwd"),
        ("passwd", "daemon", None, "system account \\(uid 1, below TFSpawner.passwd_min_uid"),
        ("passwd", "www-data", None, "system account"),
    ],
)
def test_resolve_refuses(strategy, username, static_map, message):
    with pytest.raises(UnsafeIdentity, match=message):
        resolve(strategy, username, static_map)


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown uid strategy"):
        resolve("ldap")


def test_distinct_users_get_distinct_stable_uids():
    uids = {identity.stable_uid(100000, user_id) for user_id in range(1, 1000)}
    assert len(uids) == 999


@pytest.mark.parametrize(("uid", "gid", "user"), [(1000, 100, "1000:100"), (100001, 1, "100001:1")])
def test_container_user(uid, gid, user):
    assert identity.container_user(uid, gid) == user


@pytest.mark.parametrize(
    ("uid", "gid", "message"),
    [
        (0, 100, "uid 0 is root"),
        (1000, 0, "gid 0 is root"),
        (-1, 100, "outside"),
        (2**31, 100, "outside"),
        ("1000", 100, "must be an integer"),
        (True, 100, "must be an integer"),
    ],
)
def test_container_user_refuses(uid, gid, message):
    with pytest.raises(UnsafeIdentity, match=message):
        identity.container_user(uid, gid)


@pytest.mark.parametrize(
    ("username", "name"),
    [
        ("alice", "alice"),
        ("a.b-c_d", "a.b-c_d"),
        ("Alice", "u--41lice"),
        ("a:b", "u-a-3ab"),
        ("x" * 40, "u-" + "x" * 30),
    ],
)
def test_passwd_name(username, name):
    fallback = "u-" + {"Alice": "-41lice", "a:b": "a-3ab"}.get(username, username)
    assert identity.passwd_name(username, fallback) == name


def test_with_user_adds_entries_and_drops_clashes():
    passwd = "root:x:0:0:root:/root:/bin/bash\njovyan:x:1000:100::/home/jovyan:/bin/bash\nalice:x:5:5::/:/bin/sh\n"
    group = "root:x:0:\nusers:x:100:\n"
    new_passwd, new_group = identity.with_user(
        passwd, group, name="alice", uid=1000, gid=100, home="/tf"
    )
    assert new_passwd == "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:100::/tf:/bin/bash\n"
    assert new_group == group
    _, group2 = identity.with_user(passwd, group, name="bob", uid=2000, gid=4242, home="/tf")
    assert group2.endswith("bob:x:4242:\n")
