import json
import threading

import pytest

from tfspawner.uidregistry import UidRegistry, UidTaken, claim


@pytest.mark.parametrize(
    ("users", "retired", "name", "proposed", "seen", "uid"),
    [
        # A new user whose proposed uid is free gets it.
        ({}, [], "ann", 100001, None, 100001),
        # A known user keeps their uid, whatever is proposed now.
        ({"ann": 100001}, [], "ann", 100007, None, 100001),
        # A reused hub id: the deleted user's uid goes to no one else.
        ({"old": 100005}, [], "new", 100005, None, 100006),
        ({"old": 100005, "x": 100009}, [], "new", 100005, None, 100010),
        # A retired uid is never given again.
        ({}, [100003], "new", 100003, None, 100004),
        # The registry file was lost: volume labels stand in for it.
        ({}, [], "ann", 100002, {"ann": 100001}, 100001),
        ({}, [], "bob", 100001, {"ann": 100001}, 100002),
        # Where both know a user, the registry wins.
        ({"ann": 100001}, [], "ann", 5, {"ann": 100004}, 100001),
    ],
)
def test_stable_uids_are_never_given_twice(users, retired, name, proposed, seen, uid):
    assert claim(users, retired, name, proposed, movable=True, seen=seen) == uid


@pytest.mark.parametrize(
    ("users", "retired", "name", "proposed", "message"),
    [
        ({"root2": 1500}, [], "eve", 1500, "already given to user 'root2'"),
        ({}, [1500], "eve", 1500, "already given to a user who no longer has it"),
    ],
)
def test_assigned_uids_of_another_user_are_refused(users, retired, name, proposed, message):
    with pytest.raises(UidTaken, match=message):
        claim(users, retired, name, proposed, movable=False)


def test_an_assigned_uid_may_change_and_the_old_one_retires(tmp_path):
    registry = UidRegistry(tmp_path / "uids.json")
    assert registry.claim("ann", 1500, movable=False) == 1500
    assert registry.claim("ann", 1600, movable=False) == 1600
    assert registry.read() == ({"ann": 1600}, [1500])
    with pytest.raises(UidTaken):
        registry.claim("bob", 1500, movable=False)


def test_registry_file_survives_and_is_shared(tmp_path):
    path = tmp_path / "state" / "uids.json"
    results = {}

    def claim_one(i):
        results[i] = UidRegistry(path).claim(f"user{i}", 100000, movable=True)

    threads = [threading.Thread(target=claim_one, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == list(range(100000, 100020))
    assert json.loads(path.read_text())["users"] == {f"user{i}": results[i] for i in range(20)}
