"""Packing a fleet's small tenants into shared workers: which jobs pack, and how many per pack.

Pure arithmetic, no database: the dispatcher counts and claims, these functions decide.

A small tenant's fit takes a few milliseconds, so a worker of its own would spend more on
starting (a fork, then the page faults of a fresh process's first job) than on training. Such
tenants run one after another in a shared worker, a *pack*. Where the executor can refill a pack
(the local one), an idle pack takes its fleet's next tenants instead of exiting, and the fleet's
plan and fallback models start packs too, so a fleet starts one worker per slot. Packs are
balanced two ways:

- by rows: a pack takes tenants while their rows add up to :data:`PACK_ROWS_BUDGET`, so packs
  take similar time and the slots end together;
- by count: the waiting tenants are shared out over the slots (fewer per pack as the queue
  drains), never more than :data:`PACK_MAX_JOBS` and, while that many wait, no fewer than
  :data:`PACK_MIN_JOBS`.

The figures behind the constants are in docs/performance.md, "Job dispatch and fleets".
"""

from __future__ import annotations

from collections.abc import Iterable

# Tenants at most this big share workers: even a 200k-row tenant's fit is short enough that a
# warm worker's saved start-up shows in the fleet's time.
PACK_MAX_ROWS = 200_000
# Rows per pack, so packs take similar time and slots stay busy.
PACK_ROWS_BUDGET = 40_000
PACK_MAX_JOBS = 64
# Below this many jobs a pack saves less in balance than another worker's start costs.
PACK_MIN_JOBS = 8
# How long the dispatcher gathers worker events into one transaction while packs run: packed
# tenants end every few tens of milliseconds, and one transaction for several costs less than
# one each.
PACK_BATCH_WINDOW_S = 0.25


def packable(kind: str, parent_id: str | None, rows: int | None) -> bool:
    """Whether a job may share a worker: a fleet's tenant of at most :data:`PACK_MAX_ROWS`.

    The executor must also run packs (``Executor.packs``); that is the caller's to check.
    """
    return kind == "tenant" and parent_id is not None and (rows or 0) <= PACK_MAX_ROWS


def opens_pack(kind: str, parent_id: str | None, rows: int | None, *, packs: bool,
               refills: bool) -> bool:
    """Whether a claimed job starts a pack: a small tenant where the executor runs packs
    (``packs``), and where it refills them (``refills``) a fleet's plan and fallback models
    too, whose worker then takes the fleet's tenants instead of exiting: a fleet runs on one
    warm worker per slot, none forked or faulting its pages in between."""
    if refills and kind in ("fleet", "global", "segment"):
        return True
    return packs and packable(kind, parent_id, rows)


def rows_left(first_rows: int | None, budget: int = PACK_ROWS_BUDGET) -> int:
    """The rows a pack may still take after its first job of ``first_rows`` rows.

    Zero or less: the first job is big enough to start its pack alone.
    """
    return budget - (first_rows or 0)


def pack_size(waiting: int, slots: int, at_least: int) -> int:
    """How many jobs a pack should hold when ``waiting`` packable jobs (itself included) share
    ``slots`` worker slots: an equal share, so the last packs end together; at least
    ``at_least``, at most :data:`PACK_MAX_JOBS`.

    Raises:
        ValueError: ``slots`` is below 1, or ``waiting`` or ``at_least`` is negative.
    """
    if slots < 1:
        raise ValueError(f"slots of pack_size must be at least 1; got {slots} instead")
    if waiting < 0 or at_least < 0:
        raise ValueError(f"waiting and at_least of pack_size cannot be negative; got "
                         f"waiting={waiting}, at_least={at_least} instead")
    return min(PACK_MAX_JOBS, max(-(-waiting // slots), at_least))


def siblings_to_claim(waiting: int, have: int, slots: int, at_least: int) -> int:
    """How many more queued small tenants of its fleet a pack holding ``have`` jobs claims,
    with ``waiting`` more of them queued (never negative)."""
    return max(0, pack_size(waiting + have, slots, at_least) - have)


def within_budget(candidates: Iterable[tuple[str, int | None]], rows_budget: int) -> list[str]:
    """The ids of the leading ``(job id, rows)`` candidates whose rows add up to at most
    ``rows_budget``. The first candidate is always taken, whatever its rows: a pack asked to
    take something never leaves empty-handed while a tenant waits."""
    chosen: list[str] = []
    total = 0
    for job_id, rows in candidates:
        if total + (rows or 0) > rows_budget and chosen:
            break
        chosen.append(job_id)
        total += rows or 0
    return chosen
