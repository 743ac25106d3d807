"""Query parameters -> SQL, with Patchwork's semantics.

This reproduces what Django REST Framework, django-filter and Patchwork's
filter classes do with a query string: which filters exist in which
version, which values they accept (an invalid one empties the list rather
than failing), how repeated values combine, how ``q`` splits into terms
and how ``order`` picks and breaks ties.  Text comparisons use SQLite's
``LIKE``, exactly as Django does on SQLite (ASCII-only case folding).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from mirror.dependencies import OPERATORS, Constraint, Membership, fold
from mirror.model import (
    BoolFilter,
    ChoiceFilter,
    DateFilter,
    Filter,
    Ordering,
    RefFilter,
    Resource,
    TextFilter,
)
from mirror.resources import COMMENT_EVENT_CATEGORIES, ORDERING_JOINS, RESOURCES
from mirror.versions import has_version

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]

#: SQLite integers are 64-bit; larger ids cannot exist.
_MAX_ID = 2**63 - 1
#: Cost of narrowing by a range, against 1 per value of an equality/IN.
RANGE = 1_000_000
#: Up to this many rows, upstream's SQLite (no statistics: its costs do not
#: depend on the data) sorts a one-sided range read from an index rather
#: than walk the ordered column's own index.  Measured on Patchwork 3.x.
RANGE_SORT_MAX_LIMIT = 5


class EmptyResult(Exception):
    """A filter value names nothing: the answer is an empty list."""


@dataclass
class Query:
    """The WHERE and ORDER BY parts of a list or detail query."""

    where: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    order_by: str = "t.id"
    #: Indexes upstream can narrow this query through, as (columns, joins,
    #: cost): they decide how ties are ordered (see mirror.model.Ordering).
    indexes: list[tuple[tuple[str, ...], tuple[str, ...], int]] = field(default_factory=list)
    #: Parameters of the filters applied (``q`` included).
    filtered: set[str] = field(default_factory=set)
    #: The ``order`` terms in force (a list's), set into ``order_by`` by
    #: :func:`order` once the page size is known.
    terms: list[str] = field(default_factory=list)
    #: Lists the query stays within, as the change log names them
    #: (``("parent", 7)``, ``("project", 1)``...); empty: the whole table.
    scope: list[tuple[str, Any]] = field(default_factory=list)
    #: What the terms of ``where`` ask of a row, where it can be said
    #: (mirror.dependencies): a change elsewhere then leaves the list be.
    constraints: list[Constraint] = field(default_factory=list)
    #: Terms of ``where`` whose constraints are not said.
    unsaid: int = 0
    #: The project filter's term of ``where``, when it set ``scope``.
    project_term: str | None = None
    #: A search answered by its index (see :func:`_search`): the terms of
    #: ``where`` the index's query stands for, that query and its values.
    searched: tuple[list[str], str, list[Any]] | None = None

    def require(
        self, sql: str, args: Sequence[Any], *said: Constraint, unsaid: bool = False
    ) -> None:
        """Add a term of WHERE, and what it asks of a row (all of ``said``;
        ``unsaid``: something else too)."""
        self.where.append(sql)
        self.args.extend(args)
        self.constraints.extend(said)
        self.unsaid += unsaid

    def membership(self, table: str) -> Membership:
        """Which rows of ``table`` the query holds."""
        exact = not self.unsaid and all(c[0] in OPERATORS for c in self.constraints)
        return Membership(table, tuple(self.constraints), exact)

    def narrowed_by(self, flt: Filter, values: int = 1) -> None:
        columns = flt.index_columns()
        if columns is not None:
            cost = RANGE if flt.is_range else values
            self.indexes.append((columns, flt.index_joins, cost))

    def where_sql(self) -> str:
        return " WHERE " + " AND ".join(self.where) if self.where else ""

    def search_alone(self) -> tuple[str, list[Any]] | None:
        """The search index's query and its values, when it alone decides
        the rows (no other filter but the project, no join): its ids are
        the list's, with no row of the table read to check them."""
        if self.searched is None or self.joins or self.where != self.searched[0]:
            return None
        return self.searched[1], self.searched[2]


def like_escape(value: str) -> str:
    """Escape LIKE wildcards, as Django does before an ``i*`` lookup."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def last_value(params: MultiMapping[str], name: str) -> str | None:
    """The last value of a parameter: what Django's ``QueryDict.get`` gives."""
    values = params.getall(name, [])
    return values[-1] if values else None


def _as_int(value: str) -> int | None:
    """Python's int(), which is what Django applies to ids."""
    try:
        number = int(value)
    except ValueError:
        return None
    return number if -_MAX_ID <= number <= _MAX_ID else None


# -- dates -------------------------------------------------------------------

_DATETIME = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})"
    r"(?::(\d{1,2})(?:[.,](\d{1,6})\d{0,6})?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_datetime(text: str) -> dt.datetime | None:
    """Parse a ``since``/``before`` value the way Django's forms accept it.

    ISO 8601 as Python reads it (a bare date, ``T`` or a space, optional
    seconds and microseconds, an offset), else the looser form Django also
    takes (single-digit fields, a comma before the fraction, up to 12
    fraction digits).  ``None`` if neither; ``ValueError`` for impossible
    dates, which Django also rejects.
    """
    text = text.strip()
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    match = _DATETIME.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, micro, zone = match.groups()
    tzinfo = None
    if zone == "Z":
        tzinfo = dt.UTC
    elif zone:
        minutes = 60 * int(zone[1:3]) + (int(zone[-2:]) if len(zone) > 3 else 0)
        tzinfo = dt.timezone(dt.timedelta(minutes=-minutes if zone[0] == "-" else minutes))
    return dt.datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second or 0),
        int(micro.ljust(6, "0")) if micro else 0,
        tzinfo=tzinfo,
    )


def date_bound(text: str) -> str:
    """The stored-date string a ``since``/``before`` value compares with.

    Raises :class:`EmptyResult` for a value Django rejects.  An aware
    value is converted to UTC and made naive (django-filter's intent;
    Patchwork on SQLite answers 500 instead, see docs/compatibility.md).
    """
    try:
        value = parse_datetime(text)
    except (ValueError, OverflowError):
        raise EmptyResult from None
    if value is None:
        raise EmptyResult
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            # Past the calendar's ends: later or earlier than every date.
            return "9999-99" if value.year == dt.MAXYEAR else "0000"
    return value.isoformat()


# -- search ------------------------------------------------------------------

_SMART_SPLIT = re.compile(
    r"""((?:[^\s'"]*(?:(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')[^\s'"]*)+)|\S+)"""
)


def search_terms(value: str) -> list[str]:
    """Split ``q`` into terms as DRF's SearchFilter does.

    Whitespace separates terms, quoted phrases stay whole, commas also
    separate unquoted terms.
    """
    terms = []
    for match in _SMART_SPLIT.finditer(value):
        term = match.group(0).strip(",")
        if term[:1] in ('"', "'") and term[0] == term[-1]:
            quote = term[0]
            terms.append(term[1:-1].replace("\\" + quote, quote).replace("\\\\", "\\"))
        else:
            terms.extend(part.strip() for part in term.split(",") if part)
    return terms


# -- filters -----------------------------------------------------------------


async def _ref_values(flt: RefFilter, values: list[str], fetch: Fetch) -> list[Any]:
    """Resolve every value to an id of the target; any unknown value empties."""
    lookup_resource = flt.validate_against or flt.target
    table = "states" if lookup_resource == "states" else RESOURCES[lookup_resource].table
    resolved: set[Any] = set()
    for value in set(values):
        number = _as_int(value)
        if number is not None:
            rows = await fetch(f"SELECT id FROM {table} WHERE id = ?", (number,))
        elif flt.alt_column and not flt.validate_against:
            name = " ".join(value.split("-")) if flt.dash_to_space else value
            rows = await fetch(
                f"SELECT id FROM {table} WHERE {flt.alt_column} LIKE ? ESCAPE '\\'",
                (like_escape(name),),
            )
        else:
            rows = []
        if not rows:
            raise EmptyResult
        if flt.validate_against:
            resolved.add(number)
        else:
            resolved.update(r[0] for r in rows)
    return sorted(resolved)


async def _apply_filter(flt: Filter, params: MultiMapping[str], query: Query, fetch: Fetch) -> None:
    if isinstance(flt, RefFilter):
        values = params.getall(flt.param, [])
        if not values:
            return
        if not flt.multiple:
            values = values[-1:]
            if values == [""]:
                return
        keys = await _ref_values(flt, values, fetch)
        marks = ",".join("?" * len(keys))
        query.require(f"t.{flt.column} IN ({marks})", keys, ("in", flt.column, frozenset(keys)))
        query.narrowed_by(flt, len(keys))
        if flt.column == "project_id" and not query.scope:
            query.scope = [("project", key) for key in keys]
            query.project_term = query.where[-1]
        return

    value = last_value(params, flt.param)
    if value is None:
        return
    if value != "" or isinstance(flt, BoolFilter):
        query.filtered.add(flt.param)
    if isinstance(flt, BoolFilter):
        flag = {"true": 1, "1": 1, "false": 0, "0": 0}.get(value.lower())
        if flag is not None:
            query.require(f"t.{flt.column} = ?", [flag], ("in", flt.column, frozenset([flag])))
    elif value == "":
        return
    elif isinstance(flt, TextFilter):
        if flt.iexact:
            # Django's iexact is LIKE on SQLite (ASCII case folding), which
            # is what NOCASE equality does, on an index.
            query.require(
                f"t.{flt.column} = ? COLLATE NOCASE", [value], ("nocase", flt.column, fold(value))
            )
        else:
            wanted = f"<{value}>" if flt.angle_brackets else value
            query.require(f"t.{flt.column} = ?", [wanted], ("in", flt.column, frozenset([wanted])))
            query.narrowed_by(flt)
    elif isinstance(flt, ChoiceFilter):
        if value not in flt.choices:
            raise EmptyResult
        choice = flt.choices[value]
        query.require(f"t.{flt.column} = ?", [choice], ("in", flt.column, frozenset([choice])))
        query.narrowed_by(flt)
    elif isinstance(flt, DateFilter):
        bound = date_bound(value)
        query.require(f"t.{flt.column} {flt.op} ?", [bound], (flt.op, flt.column, bound))
        query.narrowed_by(flt)


def _all_of(conditions: list[str]) -> str:
    """AND the conditions as a balanced tree, within SQLite's depth limit."""
    if not conditions:
        return "1"
    if len(conditions) == 1:
        return conditions[0]
    middle = len(conditions) // 2
    return f"({_all_of(conditions[:middle])} AND {_all_of(conditions[middle:])})"


#: Terms this long can be looked up in a trigram index.
_TRIGRAM = 3


def _search(res: Resource, q: str, query: Query) -> None:
    """``q``: every term in some search column (``icontains``).

    Where the table has a trigram index, the terms of three characters or
    more are looked up there alone, in one query, with the project filter
    if any: the index holds the column in lower case (ASCII letters only,
    as ``LIKE`` folds) and matches it as it is, so the terms in lower case
    find exactly the rows ``LIKE`` would.
    """
    terms = search_terms(q)
    indexed = [t for t in terms if res.search_index and len(t) >= _TRIGRAM]
    conditions = []
    if indexed:
        fts = f"{res.table}_search"
        (column,) = res.search
        phrases = " AND ".join('"' + fold(t).replace('"', '""') + '"' for t in indexed)
        match = f"{column} : ({phrases})"
        projects = [key for kind, key in query.scope if kind == "project"]
        scope_term = query.project_term if res.search_scope and projects else None
        if scope_term is not None:
            marks = " OR ".join(f'"<{key}>"' for key in projects)
            match += f" AND {res.search_scope} : ({marks})"
        lookup = f"SELECT rowid AS id FROM {fts} WHERE {fts} MATCH ?"
        conditions.append(f"t.id IN ({lookup})")
        query.args.append(match)
    ors = "(" + " OR ".join(f"t.{col} LIKE ? ESCAPE '\\'" for col in res.search) + ")"
    for term in terms:
        if term not in indexed:
            conditions.append(ors)
            query.args.extend(f"%{like_escape(term)}%" for _ in res.search)
    query.filtered.add("q")
    said = [("contains", tuple(res.search), fold(term)) for term in terms]
    query.require(_all_of(conditions), [], *said)
    if indexed and len(conditions) == 1:
        stands_for = [conditions[0]] if scope_term is None else [scope_term, conditions[0]]
        query.searched = (stands_for, lookup, [match])


def ordering_terms(res: Resource, params: MultiMapping[str]) -> list[str]:
    """The valid terms of ``order`` (the last one given), else the default.

    A field named twice counts once, where first named, as Django orders
    by a column once.
    """
    raw = last_value(params, "order")
    if raw:
        valid: dict[str, str] = {}
        for term in (t.strip() for t in raw.split(",")):
            name = term.removeprefix("-")
            if name in res.orderings:
                valid.setdefault(name, term)
        if valid:
            return list(valid.values())
    return [res.default_order]


def order(res: Resource, query: Query, limit: int) -> None:
    """Set the ORDER BY of a list query that fetches ``limit`` rows.

    The limit matters: upstream's SQLite weighs it when choosing the index
    a query runs on, and the index decides how ties come out.
    """
    terms = query.terms
    parts = []
    joins: list[str] = []
    for term in terms:
        ordering = res.orderings[term.removeprefix("-")]
        parts.append(ordering.expr + (" DESC" if term.startswith("-") else ""))
        for join in ordering.joins:
            if join not in joins:
                joins.append(join)
    ties, tie_joins, direction = _ties(res, terms, query, limit)
    # A term already sorted on adds nothing (and would stop SQLite from
    # reading the order straight off an index).
    seen = {part.removesuffix(" DESC") for part in parts}
    parts.extend(expr + direction for expr in ties if expr not in seen)
    if "t.id" not in seen:
        parts.append("t.id" + direction)
    joins.extend(j for j in tie_joins if j not in joins)
    query.order_by = ", ".join(parts)
    query.joins = [ORDERING_JOINS[j] for j in joins]


def _range_beats_walk(query: Query, first: Ordering, limit: int) -> bool:
    """Whether SQLite sorts what a date range on an index yields rather
    than walk the first ordering term's index: always for a range bounded
    on both sides, and for a one-sided one when few rows are wanted."""
    ranged = [cols for cols, _, cost in query.indexes if cost >= RANGE and cols[0] != first.expr]
    if not ranged:
        return False
    return len(ranged) > len(set(ranged)) or limit <= RANGE_SORT_MAX_LIMIT


def _ties(
    res: Resource, terms: list[str], query: Query, limit: int
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """How upstream orders rows the ordering terms leave tied.

    Returns the tie-breaking expressions, the joins they need and their
    direction; see mirror.model.Ordering for the rules.
    """
    first = res.orderings[terms[0].removeprefix("-")]
    equalities = {cols[0]: cost for cols, _, cost in query.indexes if cost < RANGE}
    walkable = {*first.index_prefix, first.expr}
    if (
        first.index_ties is not None
        and set(equalities) <= walkable
        and equalities.get(first.expr, 1) == 1
        and not _range_beats_walk(query, first, limit)
    ):
        # Upstream walks the index of the first term, backwards for a
        # descending sort, unless one value pins the term (walked forward).
        pinned = equalities.get(first.expr) == 1
        descending = terms[0].startswith("-") and not pinned
        return first.index_ties, (), " DESC" if descending else ""
    if query.indexes:
        # Upstream sorts what its cheapest narrowing index yields.
        columns, joins, _ = min(query.indexes, key=lambda index: index[2])
        return columns, joins, ""
    if any(_has_own_index(res.orderings[t.removeprefix("-")]) for t in terms) and not (
        _scan_index_filtered(res, query)
    ):
        # SQLite prefers walking a narrow index on an ordered column, even
        # a later term's, to the wide scan index, unless a filter can be
        # checked on the wide one's columns: ties in id order.
        return (), (), ""
    if (
        res.scan_index
        and not query.filtered & res.scan_index_excludes
        and any(t.removeprefix("-") in res.scan_index_orders for t in terms)
    ):
        return res.scan_index, res.scan_index_joins, ""
    return (), (), ""


def _has_own_index(ordering: Ordering) -> bool:
    return ordering.index_ties == () and not ordering.index_prefix


def _scan_index_filtered(res: Resource, query: Query) -> bool:
    """Whether a filter (or ``q``) can be checked on the scan index's columns."""
    columns = {flt.column for flt in res.filters if flt.param in query.filtered}
    if "q" in query.filtered:
        columns.update(res.search)
    return any(f"t.{column}" in res.scan_index for column in columns)


async def build(
    res: Resource,
    effective: str,
    params: MultiMapping[str],
    fetch: Fetch,
    *,
    parent_id: int | None = None,
    for_list: bool = True,
) -> Query:
    """The query for a list (or, ``for_list=False``, a detail) of ``res``.

    Raises :class:`EmptyResult` when a filter value names nothing.
    """
    query = Query()
    if res.public_column:
        query.require(f"t.{res.public_column} = 1", [], ("in", res.public_column, frozenset([1])))
    if res.parent is not None and parent_id is not None:
        column = res.parent.column
        query.require(f"t.{column} = ?", [parent_id], ("in", column, frozenset([parent_id])))
        query.indexes.append(((f"t.{res.parent.column}",), (), 1))
        query.scope = [("parent", parent_id)]
    if res.name == "events" and not has_version(effective, "1.3"):
        marks = ",".join("?" * len(COMMENT_EVENT_CATEGORIES))
        query.require(
            f"t.category NOT IN ({marks})",
            COMMENT_EVENT_CATEGORIES,
            ("not in", "category", frozenset(COMMENT_EVENT_CATEGORIES)),
        )

    if for_list or res.filters_on_detail:
        for flt in res.filters:
            if has_version(effective, flt.since):
                await _apply_filter(flt, params, query, fetch)

    if for_list:
        q = last_value(params, "q")
        if q and res.search:
            _search(res, q, query)
        query.terms = ordering_terms(res, params)
    return query
