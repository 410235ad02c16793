import pytest

from tfspawner import gpupool
from tfspawner.gpupool import GPU, CapExceeded, GPUPool, Owner, PoolConflict, PoolExhausted


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_pool(n=4):
    return GPUPool([GPU(str(i)) for i in range(n)], clock=Clock())


def test_allocate_distinct_ids_until_exhausted():
    pool = make_pool(3)
    got = [pool.allocate(Owner(f"u{i}"), 1) for i in range(3)]
    assert got == [["0"], ["1"], ["2"]]
    with pytest.raises(PoolExhausted, match="All 3 GPUs are in use right now; pick a CPU profile"):
        pool.allocate(Owner("u3"), 1)
    assert pool.free() == []


def test_release_returns_ids_and_is_idempotent():
    pool = make_pool(2)
    pool.allocate(Owner("a"), 2)
    assert pool.release(Owner("a")) == ["0", "1"]
    assert pool.release(Owner("a")) == []
    assert pool.free() == ["0", "1"]


def test_released_id_is_reused():
    pool = make_pool(2)
    pool.allocate(Owner("a"), 1)
    pool.allocate(Owner("b"), 1)
    pool.release(Owner("a"))
    assert pool.allocate(Owner("c"), 1) == ["0"]


@pytest.mark.parametrize(
    ("held", "count", "message"),
    [
        (0, 5, "needs 5 GPUs but the hub has only 4"),
        (3, 2, "Only 1 of 4 GPUs are free right now, and this needs 2"),
        (4, 1, "All 4 GPUs are in use"),
    ],
)
def test_exhausted_messages(held, count, message):
    pool = make_pool(4)
    if held:
        pool.allocate(Owner("other"), held)
    with pytest.raises(PoolExhausted, match=message):
        pool.allocate(Owner("me"), count)
    assert pool.ids_of(Owner("me")) == []


def test_owner_holds_one_set():
    pool = make_pool()
    pool.allocate(Owner("a"), 1)
    with pytest.raises(PoolConflict):
        pool.allocate(Owner("a"), 1)


def test_named_servers_are_separate_owners_but_count_for_the_user_cap():
    pool = make_pool()
    assert pool.allocate(Owner("a", ""), 1, user_cap=2) == ["0"]
    assert pool.allocate(Owner("a", "big"), 1, user_cap=2) == ["1"]
    with pytest.raises(CapExceeded, match="at most 2 GPUs at a time and already hold 2"):
        pool.allocate(Owner("a", "third"), 1, user_cap=2)
    assert pool.allocate(Owner("b"), 1, user_cap=2) == ["2"]


@pytest.mark.parametrize(
    ("global_cap", "group_caps", "groups", "expected"),
    [
        (None, {}, [], None),
        (1, {}, ["x"], 1),
        (1, {"lab": 4}, ["lab"], 4),
        (1, {"lab": 4, "students": 1}, ["students", "lab"], 4),
        (2, {"students": 0}, ["students"], 0),
        (None, {"lab": 3}, ["other"], None),
    ],
)
def test_effective_cap(global_cap, group_caps, groups, expected):
    assert gpupool.effective_cap(global_cap, group_caps, groups) == expected


def test_restore_then_allocate_skips_restored():
    pool = make_pool(3)
    pool.restore(Owner("a"), ["1"], since=5.0, profile="gpu")
    assert pool.holder("1").since == 5.0
    assert pool.allocate(Owner("b"), 2) == ["0", "2"]


def test_restore_refuses_ids_of_another_owner():
    pool = make_pool()
    pool.allocate(Owner("a"), 1)
    with pytest.raises(PoolConflict, match="GPU 0 is already held by a"):
        pool.restore(Owner("b"), ["0"])
    pool.restore(Owner("a"), ["0"])  # same owner: fine


def test_views():
    pool = make_pool()
    pool.allocate(Owner("a", "x"), 2, profile="gpu2")
    pool.allocate(Owner("b"), 1, profile="gpu1")
    assert pool.free() == ["3"]
    assert pool.held_by_user("a") == 2
    assert pool.in_use_by_profile() == {"gpu2": 2, "gpu1": 1}
    assert pool.holder("2").owner == Owner("b")
    assert pool.holder("3") is None
    assert str(Owner("a", "x")) == "a/x"


@pytest.mark.parametrize(
    ("entries", "ids"),
    [
        (["0", "1"], ["0", "1"]),
        (
            ["GPU-8f3a2b1c-0000-1111-2222-333344445555"],
            ["GPU-8f3a2b1c-0000-1111-2222-333344445555"],
        ),
        (
            ["MIG-4f1e2d3c-aaaa-bbbb-cccc-ddddeeeeffff"],
            ["MIG-4f1e2d3c-aaaa-bbbb-cccc-ddddeeeeffff"],
        ),
        ([{"id": "2", "name": "NVIDIA A100", "memory": "80GB"}], ["2"]),
        ([], []),
    ],
)
def test_parse_pool(entries, ids):
    assert [gpu.id for gpu in gpupool.parse_pool(entries)] == ids


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["0", "0"], "listed twice"),
        (["all"], "not a GPU id"),
        (["0,1"], "not a GPU id"),
        (["-1"], "not a GPU id"),
        ([0], "must be an id string"),
        ([{"name": "x"}], "has no 'id'"),
        ([{"id": "0", "colour": "green"}], "unknown GPU key"),
    ],
)
def test_parse_pool_refuses(entries, message):
    with pytest.raises(ValueError, match=message):
        gpupool.parse_pool(entries)


@pytest.mark.parametrize(
    ("gpu", "text"),
    [
        (GPU("2", "NVIDIA A100", "80GB"), "GPU 2 (NVIDIA A100 80GB)"),
        (GPU("2"), "GPU 2"),
    ],
)
def test_describe(gpu, text):
    assert gpu.describe() == text


def engine(container, ids, *, ours=False, owner=None, hub=""):
    return gpupool.EngineHolding(
        container=container, ids=tuple(ids), since=1.0, ours=ours, hub=hub, owner=owner
    )


@pytest.mark.parametrize(
    ("engine_view", "free", "external"),
    [
        # Another hub's server and a hand-started container take GPUs from this pool.
        ([engine("other-hub", ["0"], hub="x", owner=Owner("bob"))], ["1"], {"0"}),
        ([engine("by-hand", ["1", "2"])], ["0"], {"1", "2"}),
        # This hub's own server holding what the pool gave it is no outsider.
        ([engine("mine", ["2"], ours=True, owner=Owner("me"), hub="h")], ["0", "1"], set()),
        # This hub's container for a server the pool does not know: held, from outside.
        ([engine("lost", ["1"], ours=True, owner=Owner("lost"), hub="h")], ["0"], {"1"}),
    ],
)
def test_engine_holders_are_never_handed_out(engine_view, free, external):
    pool = GPUPool(gpupool.parse_pool(["0", "1", "2"]))
    pool.restore(Owner("me"), ["2"])
    pool.observe_engine(engine_view)
    assert set(pool.external()) == external
    assert pool.free() == free


def test_allocation_skips_gpus_held_on_the_engine():
    pool = GPUPool(gpupool.parse_pool(["0", "1"]))
    pool.observe_engine([engine("other", ["0"], hub="x", owner=Owner("bob"))])
    assert pool.allocate(Owner("a"), 1) == ["1"]
    with pytest.raises(gpupool.PoolExhausted, match="All 2 GPUs are in use right now"):
        pool.allocate(Owner("b"), 1)
