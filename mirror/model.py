"""The vocabulary in which every API resource is described as data.

A :class:`Resource` says, once, everything the sync worker and the gateway
need to know about one Patchwork API resource: the JSON fields of its list,
detail and embedded representations (with the API version each field
appeared in), the SQL columns it is stored and queried by, its filters,
search fields, orderings, nesting and permissions.  Generic code in
``mirror.store`` (writing) and ``mirror.query``/``gateway.api.render``
(reading) serves every resource from these descriptions.

Stored documents
----------------
Each mirrored object is stored as a JSON document holding its own fields
as upstream gave them, normalised so that any API version can be rendered
for any origin:

* API URLs (``url``, ``comments``, ``checks``) are not stored; they are
  derived from ids and the requested version;
* site URLs (``web_url``, ``mbox``) are stored as paths relative to the
  upstream base, and prefixed with the gateway's origin when rendered;
* embedded objects are stored as the id (or list of ids) of the object,
  which lives in its own table and is joined in when rendering, so an
  embedded object is always as fresh as the object itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A stored document (see above), and a reference to one: (table, id).
Doc = dict[str, Any]
Ref = tuple[str, int]

# --------------------------------------------------------------------------
# Representation fields


@dataclass(frozen=True)
class Field:
    """One key of a JSON representation."""

    name: str
    #: API version that introduced the field; older versions omit it.
    since: str = "1.0"


@dataclass(frozen=True)
class Value(Field):
    """A value copied from the stored document (``key`` defaults to name)."""

    key: str | None = None


@dataclass(frozen=True)
class SelfUrl(Field):
    """The object's own versioned API URL, e.g. ``patches/{id}/``."""

    template: str = ""


@dataclass(frozen=True)
class ListLink(Field):
    """An unversioned API URL of a sub-list, e.g. ``patches/{id}/comments/``.

    Patchwork builds these with ``reverse()`` and no version, so they point
    at the unversioned API whatever version was requested.
    """

    template: str = ""


@dataclass(frozen=True)
class SiteUrl(Field):
    """A non-API URL of the upstream site (``web_url``, ``mbox``)."""

    key: str | None = None


@dataclass(frozen=True)
class Embed(Field):
    """Another resource embedded in its compact ("embedded") shape."""

    target: str = ""
    key: str | None = None


@dataclass(frozen=True)
class EmbedList(Field):
    """A list of embedded objects, in the stored order.

    With ``copy`` the objects are stored inline, as upstream gave them,
    instead of by reference: a project's maintainers are user *profiles*,
    whose ids need not be their users' ids.
    """

    target: str = ""
    key: str | None = None
    copy: bool = False


@dataclass(frozen=True)
class UrlList(Field):
    """A list of API URLs of other objects (series ``dependencies``)."""

    target: str = ""
    key: str | None = None
    #: Only shown when the object's project has this flag set.
    project_flag: str | None = None


@dataclass(frozen=True)
class Payload(Field):
    """The event ``payload``: which fields it holds depends on the category.

    ``categories`` maps a category to the fields its payload shows; a
    field's name is its key in the payload, its ``key`` the stored one.
    """

    categories: dict[str, tuple[Field, ...]] = field(default_factory=dict)


# --------------------------------------------------------------------------
# Storage columns


@dataclass(frozen=True)
class IdOf:
    """Column source: the id of the ``table`` row whose ``column`` is doc[key].

    Patchwork shows a patch's state by slug but filters and sorts by the
    state's id; the mirror stores the id beside the slug.
    """

    table: str
    column: str
    key: str


#: The search index's column of projects (:attr:`Resource.search_scope`).
SEARCH_PROJECT = "project"


@dataclass(frozen=True)
class Column:
    """A SQL column extracted from the stored document, for WHERE/ORDER BY."""

    name: str
    sqltype: str  # INTEGER / TEXT
    #: Document key to copy, a function of the document, or a lookup.
    source: str | Callable[[dict[str, Any]], Any] | IdOf
    index: bool = False


# --------------------------------------------------------------------------
# Filters


@dataclass(frozen=True)
class Filter:
    """A query parameter that narrows a list."""

    param: str
    column: str
    since: str = "1.0"
    #: Upstream can answer this filter from an index (an equality or IN on
    #: an indexed column), which decides how SQLite orders ties; see
    #: Ordering.  ``index`` names that index's columns as SQL expressions
    #: (default: this filter's column alone), ``index_joins`` what they need.
    indexed: bool = False
    index: tuple[str, ...] | None = None
    index_joins: tuple[str, ...] = ()
    #: A range (``since``) rather than an equality: upstream prefers an
    #: equality's index when it has both.
    is_range: bool = False

    def index_columns(self) -> tuple[str, ...] | None:
        if not self.indexed:
            return None
        return self.index if self.index is not None else (f"t.{self.column}",)


@dataclass(frozen=True)
class RefFilter(Filter):
    """Objects referenced by id, or by a case-insensitive name.

    Every value must name an existing object, else the list is empty; the
    values are OR-ed.  ``alt_column`` is the name column of ``target``
    (``None``: ids only); ``multiple=False`` keeps only the last value, as
    Django's single-choice filters do.
    """

    target: str = ""
    indexed: bool = True  # every reference is an indexed foreign key
    alt_column: str | None = None
    #: Value normalisation before the name lookup ('-' -> ' ' for states).
    dash_to_space: bool = False
    multiple: bool = True
    #: Where a value must be an existing object of another resource than
    #: ``target`` (Patchwork's covers ``series`` filter validates against
    #: projects); see docs/compatibility.md.
    validate_against: str | None = None


@dataclass(frozen=True)
class BoolFilter(Filter):
    """``true``/``false``/``1``/``0`` in any case; anything else is ignored."""


@dataclass(frozen=True)
class TextFilter(Filter):
    """A single text value; ``iexact`` compares case-insensitively."""

    iexact: bool = False
    #: Wrap the value in angle brackets (message ids).
    angle_brackets: bool = False


@dataclass(frozen=True)
class ChoiceFilter(Filter):
    """A single value from a fixed set; anything else gives an empty list."""

    choices: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DateFilter(Filter):
    """``since`` (``>=``) or ``before`` (``<``) on an ISO date column."""

    op: str = ">="


# --------------------------------------------------------------------------
# Orderings


@dataclass(frozen=True)
class Ordering:
    """What ``order=<name>`` sorts by.

    ``expr`` is a SQL expression over the resource's table alias ``t`` and
    the aliases of ``joins`` (see ``resources.ORDERING_JOINS``).

    Ties come out as SQLite orders them upstream, which depends on the
    index its query is answered from:

    * if an index leads with the first ordering term (``index_ties`` is not
      ``None``: that index's further columns) and the query is narrowed by
      no other index (equalities on ``index_prefix`` columns or on the
      ordered column itself are fine), SQLite walks that index, backwards
      for a descending sort: ties follow the index's further columns and
      then the row id, in the direction of the first term;
    * else, if the query is narrowed through an index (an indexed filter),
      SQLite sorts the rows that index yields, in its order: ties follow
      that index's columns and then ascending ids;
    * else SQLite sorts a scan of the table (ties in ascending ids), or of
      the resource's ``scan_index`` when the ordering uses one of its
      columns (ties in that index's order); see Resource.
    """

    expr: str
    joins: tuple[str, ...] = ()
    index_ties: tuple[str, ...] | None = None
    index_prefix: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# Resources


@dataclass(frozen=True)
class Parent:
    """A resource listed under another (``patches/{id}/checks/``)."""

    resource: str  # parent resource name
    column: str  # column of this table holding the parent id
    url_key: str  # key of the parent id in the stored document


@dataclass(frozen=True)
class Announced:
    """How Patchwork's events announce the objects of a list under a parent
    (the sync reads only the lists events say are not empty)."""

    #: The event category creating the parent, and its column in events.
    parent_created: str
    parent_column: str
    #: The event category announcing an item, and the item's key in it.
    created: str
    key: str
    #: Whether the announcing events are as old as the creating ones (so a
    #: parent with a creation event has every item announced).  Checks'
    #: events came with Patchwork's first events; comments' later.
    as_old_as_parent: bool


@dataclass(frozen=True)
class Resource:
    name: str
    table: str
    #: Model name in Patchwork's "No <Model> matches the given query."
    model: str
    #: URL segment (``patches``); nested resources use the parent's path.
    path: str
    fields: tuple[Field, ...]
    columns: tuple[Column, ...]
    detail_fields: tuple[Field, ...] = ()
    embedded: tuple[Field, ...] = ()
    #: Stored document keys that only the detail representation carries;
    #: they are kept in a separate column so lists never read them.
    detail_keys: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()
    #: Whether filters also apply to the detail view (as for checks).
    filters_on_detail: bool = False
    search: tuple[str, ...] = ()
    #: A trigram index answers searches of the (one) search column: for the
    #: large tables, where ``LIKE '%term%'`` alone reads every row.  It
    #: also holds each object's project (see :attr:`search_scope`).
    search_index: bool = False
    orderings: dict[str, Ordering] = field(default_factory=dict)
    default_order: str = "id"
    parent: Parent | None = None
    #: The API version that first serves the list, and the detail (None:
    #: none does).  Routes, their version gates and the OpenAPI document
    #: follow (gateway.api.routing).
    list_since: str = "1.0"
    detail_since: str | None = "1.0"
    #: Anonymous callers are refused (people, users).
    requires_auth: bool = False
    #: Column that must be true for anonymous callers (bundles).
    public_column: str | None = None
    #: Detail lookup: ``int`` ids, or ``project`` (id, then link name).
    lookup: str = "int"
    allow_list: str = "GET, HEAD, OPTIONS"
    allow_detail: str = "GET, HEAD, OPTIONS"
    #: What upstream deletes along with an object of this resource (its
    #: foreign keys cascade): (resource, column holding this object's id).
    cascade: tuple[tuple[str, str], ...] = ()
    # -- how the sync follows it ------------------------------------------
    #: Its place in the initial crawl's lists: events first, referenced
    #: objects before those referring to them (None: read under its parent).
    crawl_rank: int | None = None
    #: How events announce its objects (lists under a parent).
    announced: Announced | None = None
    #: A change to one reads its parent again (a check changes its patch's
    #: combined ``check``).
    rereads_parent: bool = False
    #: Composite indexes of the mirror (column names, optionally "DESC"),
    #: so that common orderings, with upstream's tie-breaking, read an
    #: index instead of sorting.
    indexes: tuple[tuple[str, ...], ...] = ()
    #: An index upstream scans, and sorts, when an ordering term sorts by
    #: one of its columns (``scan_index_orders``): SQLite reads the sort
    #: keys from the index, not the table, and fetches rows after sorting.
    #: A filter on a column outside it (``scan_index_excludes``) makes it
    #: read the table instead.  Ties follow the index it reads.
    scan_index: tuple[str, ...] = ()
    scan_index_joins: tuple[str, ...] = ()
    scan_index_orders: frozenset[str] = frozenset()
    scan_index_excludes: frozenset[str] = frozenset()

    @property
    def field_names(self) -> frozenset[str]:
        """Every field of its list and detail representations."""
        return frozenset(f.name for f in (*self.fields, *self.detail_fields))

    @property
    def partial_when_embedded(self) -> bool:
        """Whether its embedded shape lacks fields of its full shape: an
        object first seen embedded must be fetched whole."""
        embedded = {f.name for f in self.embedded}
        return bool(embedded) and bool(self.field_names - embedded)

    @property
    def scope_columns(self) -> tuple[str | None, str | None]:
        """The columns naming the lists an object of it is in: its project,
        its parent (comments, checks)."""
        project = "project_id" if any(c.name == "project_id" for c in self.columns) else None
        return project, self.parent.column if self.parent is not None else None

    @property
    def search_scope(self) -> str | None:
        """The column of the search index holding an object's project, as
        ``<id>``, so that a search within a project is one query of the
        index; None where the index has none."""
        return SEARCH_PROJECT if self.search_index and self.scope_columns[0] else None

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)
