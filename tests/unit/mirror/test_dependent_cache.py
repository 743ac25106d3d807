"""The caches' index of what each entry was built from (mirror.dependencies):
a change reaches every entry built from what it changed, including one
put again under a key whose earlier entry is not yet unindexed."""

from __future__ import annotations

import random

from mirror import dependencies
from mirror.dependencies import Changed, DependentCache


def _change(seq: int, obj_id: int) -> Changed:
    return Changed(seq, "patches", obj_id, "changed", None, None, frozenset({_ref(obj_id)}))


def _ref(obj_id: int) -> tuple[str, str, int]:
    return ("ref", "patches", obj_id)


def test_changes_reach_every_entry_built_from_them_while_old_entries_are_unindexed(monkeypatch):
    monkeypatch.setattr(dependencies, "UNINDEX_PER_PUT", 1)
    monkeypatch.setattr(dependencies, "MAX_GONE", 50)
    rng = random.Random(5)
    cache: DependentCache[str, int] = DependentCache(10**9, notes=False)
    live: dict[str, frozenset] = {}
    ever: dict[str, set] = {}  # (every dependency a key was put with)
    for step in range(4000):
        if rng.random() < 0.55:
            key = f"k{rng.randrange(40)}"
            deps = frozenset(_ref(rng.randrange(25)) for _ in range(rng.randint(1, 4)))
            cache.put(key, step, 10, deps)
            live[key] = deps
            ever.setdefault(key, set()).update(deps)
        else:
            obj = rng.randrange(25)
            before = {key for key in live if cache.get(key) is not None}
            cache.apply([_change(step, obj)])
            reached = {key for key, deps in live.items() if _ref(obj) in deps}
            for key in reached:
                assert cache.get(key) is None, "a change hidden by the cache"
                del live[key]
            for key in before - reached:
                if _ref(obj) not in ever[key]:
                    assert cache.get(key) is not None, "dropped what the change cannot reach"
                elif cache.get(key) is None:
                    del live[key]  # (put again since: an earlier entry's index may reach it)
    assert cache.bytes == sum(10 + dependencies.DEP_COST * len(d) for d in live.values())


def test_what_waits_to_be_unindexed_is_bounded_in_bytes():
    budget = 200 * (10 + 40 * dependencies.DEP_COST)
    cache: DependentCache[str, int] = DependentCache(budget, notes=False)
    for n in range(200):  # (each built from the same object and 39 of its own)
        cache.put(f"k{n}", n, 10, {_ref(0), *(_ref(1000 * n + i) for i in range(1, 40))})
    cache.apply([_change(1, 0)])  # (every one of them dropped at once, none put since)
    assert len(cache) == 0
    assert 0 < cache.backlog_bytes <= budget // 8
    cache.put("again", 1, 10, {_ref(0)})
    cache.apply([_change(2, 0)])
    assert cache.get("again") is None
