import pytest

from tfspawner import identity


@pytest.mark.parametrize(
    ("base", "user_id", "uid"),
    [(100000, 1, 100001), (100000, 42, 100042), (2000, 0, 2000)],
)
def test_stable_uid(base, user_id, uid):
    assert identity.stable_uid(base, user_id) == uid


def test_distinct_users_get_distinct_uids():
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
    with pytest.raises(identity.UnsafeIdentity, match=message):
        identity.container_user(uid, gid)
