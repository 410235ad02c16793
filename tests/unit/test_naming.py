import itertools
import re

import pytest

from tfspawner import naming

HOSTILE = [
    "alice",
    "Alice",
    "ALICE",
    "a.b",
    "a-2eb",
    "a-2e62",
    "a_b",
    "a b",
    "a--b",
    "a-",
    "-a",
    "a/b",
    "../a",
    "zoë",
    "zoe\u0308",
    "\u5f20\u4f1f",
    "\U0001f600",
    "a" * 300,
    "a" * 301,
    "a" * 299 + "b",
    "\u00e9" * 200,
    "",
    "x--y",
    "x-2d-2dy",
]


def test_escape_is_injective_on_hostile_names():
    escaped = [naming.escape(name) for name in HOSTILE]
    assert len(set(escaped)) == len(HOSTILE)


def test_volume_names_are_distinct_and_valid():
    names = [naming.volume_name("tfspawner", "hub", user) for user in HOSTILE]
    names += [
        naming.volume_name("tfspawner", "hub", user, server)
        for user, server in itertools.product(HOSTILE[:8], ["", "gpu", "a.b"])
    ]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name), name
        assert len(name) <= 255


@pytest.mark.parametrize(
    ("parts_a", "parts_b"),
    [
        (("a--b", "c"), ("a", "b--c")),
        (("a", "b"), ("a-", "-b")),
        (("hub", "user", ""), ("hub", "user")),
        (("hub-x", "u"), ("hub", "x-u")),
    ],
)
def test_part_boundaries_cannot_be_forged(parts_a, parts_b):
    assert naming.join(*parts_a) != naming.join(*parts_b)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("alice", "alice"),
        ("Alice", "-41lice"),
        ("a.b", "a-2eb"),
        ("a-2eb", "a-2d2eb"),
        ("zoë", "zo-c3-ab"),
    ],
)
def test_escape(text, escaped):
    assert naming.escape(text) == escaped


def test_long_names_are_cut_with_a_hash_and_stay_distinct():
    a = naming.join("a" * 300)
    b = naming.join("a" * 299 + "b")
    assert a != b
    assert len(a) == len(b) == naming.MAX_PLAIN + 17
    assert len(naming.join("a" * naming.MAX_PLAIN)) == naming.MAX_PLAIN
