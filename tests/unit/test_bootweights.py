"""bootweights: booting containers weighted by age, and given back their weight once up."""

import asyncio

import pytest

from tfspawner.bootweights import DEFAULT_SHARES, BootWeights, boot_shares


@pytest.mark.parametrize(
    "normal, rank, shares",
    [
        (1024, 0, 1024),
        (1024, 1, 512),
        (1024, 3, 128),
        (1024, 9, 2),
        (1024, 40, 2),  # never below the kernel's floor
        (256, 0, 256),  # an admin's cpu_shares is the normal weight
        (256, 2, 64),
        (3, 1, 2),
    ],
)
def test_boot_shares(normal, rank, shares):
    assert boot_shares(normal, rank) == shares


class Engine:
    """Records what would be set; a container listed in ``gone`` was removed meanwhile."""

    def __init__(self):
        self.shares: dict[str, int] = {}
        self.calls: list[tuple[str, int]] = []
        self.gone: set[str] = set()

    async def set_shares(self, object_id: str, shares: int) -> None:
        await asyncio.sleep(0)
        if object_id in self.gone:
            raise RuntimeError(f"No such container: {object_id}")
        self.calls.append((object_id, shares))
        self.shares[object_id] = shares


async def test_younger_boots_are_weighted_behind_older_ones():
    engine = Engine()
    weights = BootWeights(engine.set_shares)
    for user in ("a", "b", "c"):
        await weights.started(user, f"id-{user}")
    # The oldest keeps the weight it was created with: no call for it.
    assert engine.calls == [("id-b", 512), ("id-c", 256)]
    assert weights.weights() == {"a": 1024, "b": 512, "c": 256}


async def test_a_ready_server_gets_its_weight_back_and_the_rest_move_up():
    engine = Engine()
    weights = BootWeights(engine.set_shares)
    for user in ("a", "b", "c"):
        await weights.started(user, f"id-{user}")
    await weights.ended("b", running=True)
    assert engine.shares == {"id-b": 1024, "id-c": 512}
    await weights.ended("a", running=True)
    assert engine.shares == {"id-b": 1024, "id-c": 1024}
    assert weights.weights() == {"c": 1024}
    await weights.ended("c", running=True)
    assert weights.weights() == {}


async def test_a_failed_boot_is_not_weighed_and_a_gone_container_is_skipped():
    engine = Engine()
    weights = BootWeights(engine.set_shares)
    for user in ("a", "b", "c"):
        await weights.started(user, f"id-{user}")
    engine.gone.add("id-b")
    await weights.ended("b", running=False)
    assert ("id-b", 1024) not in engine.calls
    await weights.ended("a", running=True)
    assert engine.shares["id-c"] == 1024
    # A container removed while still listed keeps being skipped, not raised.
    engine.gone.add("id-c")
    await weights.started("d", "id-d")
    await weights.ended("c", running=True)
    # d began behind c, and is now the oldest: back to its normal weight.
    assert ("id-d", 512) in engine.calls
    assert engine.shares["id-d"] == 1024
    assert weights.weights() == {"d": 1024}


async def test_an_admins_weight_is_the_normal_one():
    engine = Engine()
    weights = BootWeights(engine.set_shares)
    await weights.started("a", "id-a", normal=256)
    await weights.started("b", "id-b", normal=256)
    assert engine.shares == {"id-b": 128}
    await weights.ended("a", running=True)
    assert engine.shares == {"id-b": 256}


async def test_concurrent_changes_end_with_the_weights_of_the_last_state():
    engine = Engine()
    weights = BootWeights(engine.set_shares)
    await asyncio.gather(*(weights.started(u, f"id-{u}") for u in "abcdef"))
    await asyncio.gather(weights.ended("a", running=True), weights.ended("c", running=True))
    expected = {key: boot_shares(DEFAULT_SHARES, rank) for rank, key in enumerate("bdef")}
    assert weights.weights() == expected
    for key, shares in expected.items():
        assert engine.shares.get(f"id-{key}", DEFAULT_SHARES) == shares
