"""Counts and ordered ids revised by changes (mirror.revision), against
what reading them again would give."""

from __future__ import annotations

import random
from array import array

from mirror import revision
from mirror.dependencies import Changed, Membership
from mirror.revision import Counted, Ids, Ordered, order_terms, revise_count, revise_order

#: Rows of a table: id -> columns.
ROWS = {
    1: {"id": 1, "project_id": 1, "state_id": 1, "date": "2024-01-03", "name": "b"},
    2: {"id": 2, "project_id": 1, "state_id": 2, "date": "2024-01-01", "name": None},
    3: {"id": 3, "project_id": 1, "state_id": 1, "date": "2024-01-02", "name": "a"},
    4: {"id": 4, "project_id": 2, "state_id": 1, "date": "2024-01-02", "name": "B"},
}
NEW_IN_PROJECT_1 = Membership("patches", (("in", "project_id", frozenset([1])),), exact=True)
BY_DATE_DESC = order_terms("t.date DESC, t.id DESC")


def _sorted_ids(rows: dict[int, dict], member: Membership, order) -> list[int]:
    """What reading the list again gives."""
    held = [r for r in rows.values() if member.holds(r)]
    ids = [r["id"] for r in held]
    for column, descending in reversed(order):
        ids.sort(key=lambda i, c=column: (rows[i][c] is not None, rows[i][c]), reverse=descending)
    return ids


def _change(seq: int, rows: dict, obj_id: int, after: dict | None) -> Changed:
    before = rows.get(obj_id)
    op = "created" if before is None else "deleted" if after is None else "changed"
    was = None
    cols = after if after is not None else before
    if op == "changed":
        was = {k: v for k, v in before.items() if after.get(k) != v}
    changed = Changed.of(seq, "patches", obj_id, op, cols["project_id"], None, [], cols, was)
    if after is None:
        rows.pop(obj_id)
    else:
        rows[obj_id] = after
    return changed


def test_order_terms_are_plain_columns_only():
    assert order_terms("t.date DESC, t.id") == (("date", True), ("id", False))
    assert order_terms("o_state.ordering, t.id") is None


def test_membership_follows_sql_comparisons():
    nocase = Membership("people", (("nocase", "email", "a@x.org"),), exact=True)
    assert nocase.holds({"email": "A@X.org"})
    assert not nocase.holds({"email": None})
    since = Membership("patches", ((">=", "date", "2024-01-02"),), exact=True)
    assert since.holds({"date": "2024-01-02T10:00:00"}) and not since.holds({"date": "2024"})
    not_in = Membership("events", (("not in", "category", frozenset(["x"])),), exact=True)
    assert not_in.holds({"category": "y"}) and not not_in.holds({"category": None})


def test_counts_and_ids_follow_creations_moves_and_deletions():
    rows = {k: dict(v) for k, v in ROWS.items()}
    count = Counted(3, seq=0)
    ids = Ids(array("i", _sorted_ids(rows, NEW_IN_PROJECT_1, BY_DATE_DESC)))
    ordered = Ordered(ids, 0, BY_DATE_DESC)
    changes = [
        _change(1, rows, 5, {**ROWS[3], "id": 5}),  # a tie on date, broken by id
        _change(2, rows, 4, {**ROWS[4], "project_id": 1}),  # moved in
        _change(3, rows, 1, None),  # deleted
        _change(4, rows, 2, {**ROWS[2], "date": "2024-02-01"}),  # moved to the front
        _change(5, rows, 3, {**ROWS[3], "state_id": 2}),  # nothing a list here sees
    ]

    def probe(obj_id):
        row = rows.get(obj_id)
        return None if row is None else (row["date"], row["id"])

    revised = revise_count(count, NEW_IN_PROJECT_1, changes)
    assert revised is not None and revised.count == 4
    patched = revise_order(ordered, NEW_IN_PROJECT_1, changes, probe)
    assert patched is not None
    assert patched.ids.tolist() == _sorted_ids(rows, NEW_IN_PROJECT_1, BY_DATE_DESC)


def test_changes_already_counted_are_not_counted_again():
    rows = {k: dict(v) for k, v in ROWS.items()}
    change = _change(7, rows, 6, {**ROWS[1], "id": 6})
    assert revise_count(Counted(4, seq=7), NEW_IN_PROJECT_1, [change]) == Counted(4, 7)


def test_what_the_filters_do_not_decide_is_read_again():
    searched = Membership("patches", NEW_IN_PROJECT_1.constraints, exact=False)
    rows = {k: dict(v) for k, v in ROWS.items()}
    change = _change(1, rows, 6, {**ROWS[1], "id": 6})
    assert revise_count(Counted(3, 0), searched, [change]) is None
    unknown = Changed.of(2, "patches", 1, "changed", 1, None, ["order"], None, None)
    assert revise_count(Counted(3, 0), NEW_IN_PROJECT_1, [unknown]) is None
    joined = Ordered(Ids(array("i", [1, 3, 2])), 0, None)
    assert revise_order(joined, NEW_IN_PROJECT_1, [change], lambda _: None) is None


def test_ids_in_chunks_behave_as_one_list_and_copies_leave_the_original(monkeypatch):
    monkeypatch.setattr(revision, "CHUNK", 3)
    rng = random.Random(7)
    model = [rng.randrange(1, 1000) for _ in range(40)]
    ids = Ids(array("i", model))
    for _ in range(300):
        before, copy = list(model), ids.copy()
        if model and rng.random() < 0.45:
            at = rng.randrange(len(model))
            del model[at], copy[at]
        else:
            at = rng.randrange(len(model) + 1)
            value = rng.choice((rng.randrange(1, 1000), 2**31 + rng.randrange(9)))
            model.insert(at, value)
            copy.insert(at, value)
        assert ids.tolist() == before  # (what readers hold never changes)
        ids = copy
        assert ids.tolist() == model and len(ids) == len(model)
        start = rng.randrange(len(model) + 1)
        assert ids.page(start, start + 5) == model[start : start + 5]
        if model:
            wanted = rng.choice(model)
            assert ids[ids.find(wanted)] == wanted
    assert ids.find(5000) is None


def test_ids_revised_many_times_match_the_list_read_again(monkeypatch):
    monkeypatch.setattr(revision, "CHUNK", 2)
    rng = random.Random(3)
    dates = [f"2024-01-{day:02d}" for day in range(1, 9)]  # (many ties, broken by id)
    rows = {
        i: {"id": i, "project_id": rng.choice((1, 2)), "state_id": 1, "date": rng.choice(dates)}
        for i in range(1, 60)
    }
    first = _sorted_ids(rows, NEW_IN_PROJECT_1, BY_DATE_DESC)
    ordered = Ordered(Ids(array("i", first)), 0, BY_DATE_DESC)

    def probe(obj_id):
        row = rows.get(obj_id)
        return None if row is None else (row["date"], row["id"])

    seq = 0
    for _ in range(40):
        changes = []
        for _ in range(rng.randint(1, 4)):
            seq += 1
            obj_id = rng.choice([*rows, max(rows) + 1])
            if obj_id in rows and rng.random() < 0.2:
                changes.append(_change(seq, rows, obj_id, None))
            else:
                base = rows.get(obj_id, {"id": obj_id, "state_id": 1})
                after = {**base, "project_id": rng.choice((1, 1, 2)), "date": rng.choice(dates)}
                changes.append(_change(seq, rows, obj_id, after))
        revised = revise_order(ordered, NEW_IN_PROJECT_1, changes, probe)
        assert revised is not None
        assert revised.ids.tolist() == _sorted_ids(rows, NEW_IN_PROJECT_1, BY_DATE_DESC)
        ordered = Ordered(revised.ids, seq, BY_DATE_DESC)
