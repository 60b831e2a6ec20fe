"""Pack arithmetic, with no database: which jobs pack, how many a pack takes, the row budget."""

from __future__ import annotations

import pytest

from modelyard.jobs.packing import (
    PACK_MAX_JOBS,
    PACK_MAX_ROWS,
    PACK_MIN_JOBS,
    PACK_ROWS_BUDGET,
    opens_pack,
    pack_size,
    packable,
    rows_left,
    siblings_to_claim,
    within_budget,
)


def test_only_a_fleets_small_tenants_pack() -> None:
    assert packable("tenant", "fleet-1", 10)
    assert packable("tenant", "fleet-1", PACK_MAX_ROWS)  # the limit is inclusive
    assert packable("tenant", "fleet-1", None)
    assert not packable("tenant", "fleet-1", PACK_MAX_ROWS + 1)
    assert not packable("tenant", None, 10)
    for kind in ("train", "fleet", "global", "segment"):
        assert not packable(kind, "fleet-1", 10), kind


def test_a_fleets_plan_and_fallbacks_open_packs_only_where_packs_are_refilled() -> None:
    for kind in ("fleet", "global", "segment"):  # their worker goes on with the tenants
        assert opens_pack(kind, None, 10**9, packs=True, refills=True), kind
        assert not opens_pack(kind, None, 10**9, packs=True, refills=False), kind
    assert opens_pack("tenant", "fleet-1", 10, packs=True, refills=False)
    assert not opens_pack("tenant", "fleet-1", PACK_MAX_ROWS + 1, packs=True, refills=True)
    assert not opens_pack("tenant", "fleet-1", 10, packs=False, refills=False)
    assert not opens_pack("train", None, 10, packs=True, refills=True)


def test_rows_left_after_the_first_job() -> None:
    assert rows_left(None) == PACK_ROWS_BUDGET
    assert rows_left(10_000) == PACK_ROWS_BUDGET - 10_000
    assert rows_left(PACK_ROWS_BUDGET) == 0  # a tenant this big starts its pack alone
    assert rows_left(PACK_ROWS_BUDGET + 1) == -1
    assert rows_left(5, budget=8) == 3


@pytest.mark.parametrize(("waiting", "slots", "at_least", "size"), [
    (100, 4, PACK_MIN_JOBS, 25),  # an even share of the waiting jobs per slot
    (101, 4, PACK_MIN_JOBS, 26),  # rounded up, so no job is left for a pack of one
    (10, 4, PACK_MIN_JOBS, PACK_MIN_JOBS),  # never below the floor while that many wait
    (10, 4, 1, 3),
    (0, 2, 1, 1),
    (0, 2, 0, 0),
    (10_000, 2, PACK_MIN_JOBS, PACK_MAX_JOBS),  # capped
    (PACK_MAX_JOBS, 1, PACK_MAX_JOBS * 2, PACK_MAX_JOBS),  # the cap beats the floor
])
def test_pack_size_shares_the_waiting_jobs_over_the_slots(waiting: int, slots: int,
                                                          at_least: int, size: int) -> None:
    assert pack_size(waiting, slots, at_least) == size


def test_pack_size_refuses_impossible_numbers() -> None:
    with pytest.raises(ValueError, match="slots of pack_size must be at least 1; got 0"):
        pack_size(10, 0, 1)
    with pytest.raises(ValueError, match="cannot be negative; got waiting=-1, at_least=1"):
        pack_size(-1, 2, 1)
    with pytest.raises(ValueError, match="got waiting=1, at_least=-2"):
        pack_size(1, 2, -2)


def test_siblings_to_claim_counts_what_the_pack_holds() -> None:
    # A claimed small tenant (have=1) with 99 more waiting over 2 slots: a pack of 50.
    assert siblings_to_claim(99, 1, 2, PACK_MIN_JOBS) == 49
    # An idle pack asking for more (have=0, floor 1) as the queue drains.
    assert siblings_to_claim(9, 0, 2, 1) == 5
    assert siblings_to_claim(1, 0, 2, 1) == 1
    assert siblings_to_claim(0, 0, 2, 1) == 1  # the claim then finds none
    assert siblings_to_claim(0, 3, 2, 1) == 0  # never negative
    assert siblings_to_claim(10_000, 1, 2, PACK_MIN_JOBS) == PACK_MAX_JOBS - 1


def test_within_budget_takes_the_leading_jobs_that_fit() -> None:
    jobs: list[tuple[str, int | None]] = [("a", 10), ("b", 20), ("c", 15), ("d", 1)]
    assert within_budget(jobs, 30) == ["a", "b"]  # stops at the first that does not fit
    assert within_budget(jobs, 45) == ["a", "b", "c"]
    assert within_budget(jobs, 46) == ["a", "b", "c", "d"]
    assert within_budget([("big", 100), ("small", 1)], 10) == ["big"]  # the first always
    assert within_budget([("x", None), ("y", None), ("z", 5)], 5) == ["x", "y", "z"]
    assert within_budget([], 10) == []
