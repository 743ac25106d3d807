"""Every Patchwork API resource, described once, as data.

The descriptions follow Patchwork 3.x's serializers, filter sets and views
(``patchwork/api/*.py``): field order, the version each field appeared in,
the filters with their accepted forms, search fields, orderings and the
views' permissions.  Where Patchwork fails with a 500, the description
records what Patchwork evidently intends; ``docs/compatibility.md`` lists
those places.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mirror.model import (
    Announced,
    BoolFilter,
    ChoiceFilter,
    Column,
    DateFilter,
    Embed,
    EmbedList,
    IdOf,
    ListLink,
    Ordering,
    Parent,
    Payload,
    RefFilter,
    Resource,
    SelfUrl,
    SiteUrl,
    TextFilter,
    UrlList,
    Value,
)

# Check states, as Patchwork stores (integer) and shows (name) them.
CHECK_STATES = {"pending": 0, "success": 1, "warning": 2, "fail": 3}

# Event categories, in Patchwork's order.
EVENT_CATEGORIES = (
    "cover-created",
    "patch-created",
    "patch-completed",
    "patch-state-changed",
    "patch-delegated",
    "patch-relation-changed",
    "check-created",
    "series-created",
    "series-completed",
    "cover-comment-created",
    "patch-comment-created",
)
#: Events about comments only exist from API 1.3 (comment details did not).
COMMENT_EVENT_CATEGORIES = ("cover-comment-created", "patch-comment-created")

# Patchwork's default states (fixtures/default_states.xml): id, slug, name,
# ordering.  An upstream with other states gets them learnt by the sync.
DEFAULT_STATES = (
    (1, "new", "New", 0),
    (2, "under-review", "Under Review", 1),
    (3, "accepted", "Accepted", 2),
    (4, "rejected", "Rejected", 3),
    (5, "rfc", "RFC", 4),
    (6, "not-applicable", "Not Applicable", 5),
    (7, "changes-requested", "Changes Requested", 6),
    (8, "awaiting-upstream", "Awaiting Upstream", 7),
    (9, "superseded", "Superseded", 8),
    (10, "deferred", "Deferred", 9),
)


def _id(key: str) -> Callable[[dict[str, Any]], Any]:
    """Column source: the id an embedded reference was stored as."""

    def get(doc: dict[str, Any]) -> Any:
        return doc.get(key)

    return get


def _first_id(key: str) -> Callable[[dict[str, Any]], Any]:
    """Column source: the first id of a stored list (a patch's series)."""

    def get(doc: dict[str, Any]) -> Any:
        ids = doc.get(key) or []
        return ids[0] if ids else None

    return get


def _bool(key: str) -> Callable[[dict[str, Any]], Any]:
    def get(doc: dict[str, Any]) -> Any:
        value = doc.get(key)
        return None if value is None else int(bool(value))

    return get


def _check_state(doc: dict[str, Any]) -> Any:
    return CHECK_STATES.get(str(doc.get("state")))


# --------------------------------------------------------------------------
# Filters shared by several resources

PROJECT_FILTER = RefFilter("project", "project_id", target="projects", alt_column="linkname")
SUBMITTER_FILTER = RefFilter("submitter", "submitter_id", target="people", alt_column="email")
SINCE = DateFilter("since", "date", op=">=")
BEFORE = DateFilter("before", "date", op="<")


#: Upstream's covering indexes of patches and covers (patch_covering_idx,
#: cover_covering_idx), as SQL expressions.
_PATCH_COVERING_INDEX = (
    "t.archived",
    "t.state_id",
    "t.delegate_id",
    "t.date",
    "t.project_id",
    "t.submitter_id",
    "t.name",
)
_COVER_COVERING_INDEX = ("t.date", "t.project_id", "t.submitter_id", "t.name")


def _columns_of(exprs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(e.removeprefix("t.") for e in exprs)


_COVER_DATE_INDEX: dict[str, Any] = {
    "indexed": True,
    "is_range": True,
    "index": _COVER_COVERING_INDEX,
}


def _by_user(param: str, column: str) -> RefFilter:
    return RefFilter(param, column, target="users", alt_column="username")


# --------------------------------------------------------------------------
# Resources

PROJECTS = Resource(
    name="projects",
    table="projects",
    crawl_rank=1,
    model="Project",
    path="projects",
    fields=(
        Value("id"),
        SelfUrl("url", template="projects/{id}/"),
        Value("name"),
        Value("link_name"),
        Value("list_id"),
        Value("list_email"),
        Value("web_url"),
        Value("scm_url"),
        Value("webscm_url"),
        EmbedList("maintainers", target="users", copy=True),
        Value("subject_match", since="1.1"),
        Value("list_archive_url", since="1.2"),
        Value("list_archive_url_format", since="1.2"),
        Value("commit_url_format", since="1.2"),
        Value("show_dependencies", since="1.4"),
    ),
    embedded=(
        Value("id"),
        SelfUrl("url", template="projects/{id}/"),
        Value("name"),
        Value("link_name"),
        Value("list_id"),
        Value("list_email"),
        Value("web_url"),
        Value("scm_url"),
        Value("webscm_url"),
        Value("list_archive_url", since="1.2"),
        Value("list_archive_url_format", since="1.2"),
        Value("commit_url_format", since="1.2"),
    ),
    columns=(
        Column("name", "TEXT", "name", index=True),
        Column("linkname", "TEXT", "link_name", index=True),
        Column("listid", "TEXT", "list_id"),
        Column("listemail", "TEXT", "list_email"),
        Column("web_url", "TEXT", "web_url"),
        Column("scm_url", "TEXT", "scm_url"),
        Column("webscm_url", "TEXT", "webscm_url"),
        Column("list_archive_url", "TEXT", "list_archive_url"),
        Column("list_archive_url_format", "TEXT", "list_archive_url_format"),
        Column("commit_url_format", "TEXT", "commit_url_format"),
    ),
    # Patchwork names serializer fields here (link_name, list_id, ...), which
    # makes any search a 500 upstream; we search the columns they stand for.
    search=(
        "linkname",
        "listid",
        "listemail",
        "web_url",
        "scm_url",
        "webscm_url",
        "list_archive_url",
        "list_archive_url_format",
        "commit_url_format",
    ),
    orderings={
        "id": Ordering("t.id"),
        "name": Ordering("t.name"),
        # Upstream 500s (renamed serializer fields); intended: the columns.
        "link_name": Ordering("t.linkname", index_ties=()),
        "list_id": Ordering("t.listid"),
    },
    lookup="project",
    allow_detail="GET, PUT, PATCH, HEAD, OPTIONS",
)

PEOPLE = Resource(
    name="people",
    table="people",
    crawl_rank=3,
    model="Person",
    path="people",
    fields=(
        Value("id"),
        SelfUrl("url", template="people/{id}/"),
        Value("name"),
        Value("email"),
        Embed("user", target="users"),
    ),
    embedded=(
        Value("id"),
        SelfUrl("url", template="people/{id}/"),
        Value("name"),
        Value("email"),
    ),
    columns=(
        Column("name", "TEXT", "name", index=True),
        Column("email", "TEXT", "email", index=True),
        Column("user_id", "INTEGER", _id("user")),
    ),
    search=("name", "email"),
    orderings={
        "id": Ordering("t.id"),
        "name": Ordering("t.name"),
        "email": Ordering("t.email", index_ties=()),
    },
    requires_auth=True,
)

USERS = Resource(
    name="users",
    table="users",
    crawl_rank=2,
    model="User",
    path="users",
    fields=(
        Value("id"),
        SelfUrl("url", template="users/{id}/"),
        Value("username"),
        Value("first_name"),
        Value("last_name"),
        Value("email"),
    ),
    # Embedded users are shown whole (``embedded`` left empty).
    columns=(
        Column("username", "TEXT", "username", index=True),
        Column("first_name", "TEXT", "first_name"),
        Column("last_name", "TEXT", "last_name"),
        Column("email", "TEXT", "email", index=True),
    ),
    search=("username", "first_name", "last_name", "email"),
    orderings={
        "id": Ordering("t.id"),
        "username": Ordering("t.username", index_ties=()),
        "email": Ordering("t.email"),
    },
    requires_auth=True,
    allow_detail="GET, PUT, PATCH, HEAD, OPTIONS",
)

PATCHES = Resource(
    name="patches",
    table="patches",
    crawl_rank=6,
    model="Patch",
    path="patches",
    fields=(
        Value("id"),
        SelfUrl("url", template="patches/{id}/"),
        SiteUrl("web_url", since="1.1"),
        Embed("project", target="projects"),
        Value("msgid"),
        Value("list_archive_url", since="1.2"),
        Value("date"),
        Value("name"),
        Value("commit_ref"),
        Value("pull_url"),
        Value("state"),
        Value("archived"),
        Value("hash"),
        Embed("submitter", target="people"),
        Embed("delegate", target="users"),
        SiteUrl("mbox"),
        EmbedList("series", target="series"),
        ListLink("comments", since="1.1", template="patches/{id}/comments/"),
        Value("check"),
        ListLink("checks", template="patches/{id}/checks/"),
        Value("tags"),
        EmbedList("related", since="1.2", target="patches"),
    ),
    detail_fields=(
        Value("headers"),
        Value("content"),
        Value("diff"),
        Value("prefixes"),
    ),
    detail_keys=("headers", "content", "diff", "prefixes"),
    embedded=(
        Value("id"),
        SelfUrl("url", template="patches/{id}/"),
        SiteUrl("web_url", since="1.1"),
        Value("msgid"),
        Value("list_archive_url", since="1.2"),
        Value("date"),
        Value("name"),
        SiteUrl("mbox"),
    ),
    columns=(
        Column("project_id", "INTEGER", _id("project"), index=True),
        Column("submitter_id", "INTEGER", _id("submitter"), index=True),
        Column("delegate_id", "INTEGER", _id("delegate"), index=True),
        Column("series_id", "INTEGER", _first_id("series"), index=True),
        Column("state_id", "INTEGER", IdOf("states", "slug", "state"), index=True),
        Column("archived", "INTEGER", _bool("archived")),
        Column("hash", "TEXT", "hash", index=True),
        Column("msgid", "TEXT", "msgid", index=True),
        Column("date", "TEXT", "date", index=True),
        Column("name", "TEXT", "name", index=True),
    ),
    filters=(
        PROJECT_FILTER,
        RefFilter("series", "series_id", target="series"),
        SUBMITTER_FILTER,
        _by_user("delegate", "delegate_id"),
        RefFilter("state", "state_id", target="states", alt_column="name", dash_to_space=True),
        BoolFilter("archived", "archived"),
        TextFilter("hash", "hash", since="1.2", iexact=True),
        TextFilter(
            "msgid",
            "msgid",
            since="1.2",
            indexed=True,
            index=("t.msgid", "t.project_id"),
            angle_brackets=True,
        ),
        SINCE,
        BEFORE,
    ),
    search=("name",),
    search_index=True,
    orderings={
        "id": Ordering("t.id"),
        "name": Ordering("t.name"),
        # A foreign key sorts by the related model's default ordering.
        "project": Ordering("o_project.linkname", joins=("project",)),
        "date": Ordering("t.date"),
        "state": Ordering("o_state.ordering", joins=("state",)),
        # Served upstream by the covering index (archived, state, delegate,
        # date, project, submitter, name), whose order decides ties.
        "archived": Ordering("t.archived", index_ties=_PATCH_COVERING_INDEX[1:]),
        "submitter": Ordering("t.submitter_id", index_ties=()),
        # Patchwork orders by the reverse relation to checks: one row per
        # check, in check id order, patches without checks first (a list
        # count ignores the join, as Django's does).
        "check": Ordering("o_check.id", joins=("check",)),
    },
    lookup="int",
    allow_detail="GET, PUT, PATCH, HEAD, OPTIONS",
    scan_index=_PATCH_COVERING_INDEX,
    scan_index_orders=frozenset(("name", "date", "archived", "submitter")),
    indexes=(
        _columns_of(_PATCH_COVERING_INDEX),
        ("name", *_columns_of(_PATCH_COVERING_INDEX)[:-1]),
        ("date", "archived", "state_id", "delegate_id", "project_id", "submitter_id", "name"),
        # order=-date (b4 and friends), whole and per project.
        (
            "date DESC",
            "archived",
            "state_id",
            "delegate_id",
            "project_id",
            "submitter_id",
            "name",
            "id",
        ),
        ("project_id", "date DESC", "id"),
        # For speed alone (they decide no ties): a project's patches by
        # state, archived, delegate, submitter or name, counted or walked
        # in order on one index; hash=, compared case-insensitively.
        ("project_id", "state_id", "archived"),
        ("project_id", "archived"),
        ("project_id", "delegate_id"),
        ("project_id", "submitter_id"),
        ("project_id", "name"),
        ("hash COLLATE NOCASE",),
    ),
    scan_index_excludes=frozenset(("hash",)),
    cascade=(("patch_comments", "patch_id"), ("checks", "patch_id"), ("events", "patch_id")),
)

COVERS = Resource(
    name="covers",
    table="covers",
    crawl_rank=5,
    model="Cover",
    path="covers",
    fields=(
        Value("id"),
        SelfUrl("url", template="covers/{id}/"),
        SiteUrl("web_url", since="1.1"),
        Embed("project", target="projects"),
        Value("msgid"),
        Value("list_archive_url", since="1.2"),
        Value("date"),
        Value("name"),
        Embed("submitter", target="people"),
        SiteUrl("mbox", since="1.1"),
        EmbedList("series", target="series"),
        ListLink("comments", since="1.1", template="covers/{id}/comments/"),
    ),
    detail_fields=(Value("headers"), Value("content")),
    detail_keys=("headers", "content"),
    embedded=(
        Value("id"),
        SelfUrl("url", template="covers/{id}/"),
        SiteUrl("web_url", since="1.1"),
        Value("msgid"),
        Value("list_archive_url", since="1.2"),
        Value("date"),
        Value("name"),
        SiteUrl("mbox", since="1.1"),
    ),
    columns=(
        Column("project_id", "INTEGER", _id("project"), index=True),
        Column("submitter_id", "INTEGER", _id("submitter"), index=True),
        Column("series_id", "INTEGER", _first_id("series"), index=True),
        Column("msgid", "TEXT", "msgid", index=True),
        Column("date", "TEXT", "date", index=True),
        Column("name", "TEXT", "name", index=True),
    ),
    filters=(
        PROJECT_FILTER,
        # Patchwork validates series values against *projects* (a bug that
        # 500s or empties the list); we keep the validation and then filter
        # by series, as intended.  See docs/compatibility.md.
        RefFilter("series", "series_id", target="series", validate_against="projects"),
        SUBMITTER_FILTER,
        TextFilter(
            "msgid", "msgid", indexed=True, index=("t.msgid", "t.project_id"), angle_brackets=True
        ),
        # Upstream answers date ranges on covers from the covering index.
        DateFilter("since", "date", op=">=", **_COVER_DATE_INDEX),
        DateFilter("before", "date", op="<", **_COVER_DATE_INDEX),
    ),
    search=("name",),
    search_index=True,
    orderings={
        "id": Ordering("t.id"),
        "name": Ordering("t.name"),
        # Served by the covering index (date, project, submitter, name).
        "date": Ordering("t.date", index_ties=_COVER_COVERING_INDEX[1:]),
        "submitter": Ordering("t.submitter_id", index_ties=()),
    },
    scan_index=_COVER_COVERING_INDEX,
    scan_index_orders=frozenset(("name", "date", "submitter")),
    indexes=(_columns_of(_COVER_COVERING_INDEX), ("name", "date", "project_id", "submitter_id")),
    cascade=(("cover_comments", "cover_id"), ("events", "cover_id")),
)

SERIES = Resource(
    name="series",
    table="series",
    crawl_rank=4,
    model="Series",
    path="series",
    fields=(
        Value("id"),
        SelfUrl("url", template="series/{id}/"),
        SiteUrl("web_url", since="1.1"),
        Embed("project", target="projects"),
        Value("name"),
        Value("date"),
        Embed("submitter", target="people"),
        Value("version"),
        Value("total"),
        Value("received_total"),
        Value("received_all"),
        SiteUrl("mbox"),
        Embed("cover_letter", target="covers"),
        EmbedList("patches", target="patches"),
        UrlList(
            "dependencies",
            since="1.4",
            target="series",
            project_flag="show_dependencies",
        ),
        UrlList(
            "dependents",
            since="1.4",
            target="series",
            project_flag="show_dependencies",
        ),
    ),
    embedded=(
        Value("id"),
        SelfUrl("url", template="series/{id}/"),
        SiteUrl("web_url", since="1.1"),
        Value("date"),
        Value("name"),
        Value("version"),
        SiteUrl("mbox"),
    ),
    columns=(
        Column("project_id", "INTEGER", _id("project"), index=True),
        Column("submitter_id", "INTEGER", _id("submitter"), index=True),
        Column("date", "TEXT", "date", index=True),
        Column("name", "TEXT", "name", index=True),
        Column("received_all", "INTEGER", _bool("received_all")),
    ),
    filters=(PROJECT_FILTER, SUBMITTER_FILTER, SINCE, BEFORE),
    search=("name",),
    search_index=True,
    orderings={
        "id": Ordering("t.id"),
        "name": Ordering("t.name"),
        "date": Ordering("t.date"),
        "submitter": Ordering("t.submitter_id", index_ties=()),
        # Upstream 500s (a property, not a column); intended: the flag.
        "received_all": Ordering("t.received_all"),
    },
    # A patch belongs to one series upstream, and goes with it.
    cascade=(("events", "series_id"), ("patches", "series_id")),
)

BUNDLES = Resource(
    name="bundles",
    table="bundles",
    crawl_rank=7,
    model="Bundle",
    path="bundles",
    fields=(
        Value("id"),
        SelfUrl("url", template="bundles/{id}/"),
        SiteUrl("web_url", since="1.1"),
        Embed("project", target="projects"),
        Value("name"),
        Embed("owner", target="users"),
        EmbedList("patches", target="patches"),
        Value("public"),
        SiteUrl("mbox"),
    ),
    columns=(
        Column("project_id", "INTEGER", _id("project"), index=True),
        Column("owner_id", "INTEGER", _id("owner"), index=True),
        Column("name", "TEXT", "name"),
        Column("public", "INTEGER", _bool("public")),
    ),
    filters=(PROJECT_FILTER, _by_user("owner", "owner_id"), BoolFilter("public", "public")),
    search=("name",),
    orderings={
        "id": Ordering("t.id"),
        "name": Ordering("t.name"),
        "owner": Ordering("t.owner_id", index_ties=()),
    },
    public_column="public",
    allow_list="GET, POST, HEAD, OPTIONS",
    allow_detail="GET, PUT, PATCH, DELETE, HEAD, OPTIONS",
)

CHECKS = Resource(
    name="checks",
    table="checks",
    model="Check",
    path="checks",
    fields=(
        Value("id"),
        SelfUrl("url", template="patches/{patch}/checks/{id}/"),
        Embed("user", target="users"),
        Value("date"),
        Value("state"),
        Value("target_url"),
        Value("context"),
        Value("description"),
    ),
    embedded=(
        Value("id"),
        SelfUrl("url", template="patches/{patch}/checks/{id}/"),
        Value("date"),
        Value("state"),
        Value("target_url"),
        Value("context"),
    ),
    columns=(
        Column("patch_id", "INTEGER", _id("patch"), index=True),
        Column("user_id", "INTEGER", _id("user"), index=True),
        Column("date", "TEXT", "date"),
        Column("state_code", "INTEGER", _check_state),
        Column("target_url", "TEXT", "target_url"),
        Column("context", "TEXT", "context"),
        Column("description", "TEXT", "description"),
    ),
    filters=(
        _by_user("user", "user_id"),
        ChoiceFilter("state", "state_code", choices={str(v): v for v in CHECK_STATES.values()}),
        TextFilter("context", "context"),
        SINCE,
        BEFORE,
    ),
    filters_on_detail=True,
    orderings={
        "id": Ordering("t.id"),
        "user": Ordering("t.user_id"),
        "date": Ordering("t.date"),
        "state": Ordering("t.state_code"),
        "target_url": Ordering("t.target_url"),
        "context": Ordering("t.context"),
        "description": Ordering("t.description"),
    },
    parent=Parent("patches", "patch_id", "patch"),
    cascade=(("events", "check_id"),),
    allow_list="GET, POST, HEAD, OPTIONS",
    announced=Announced("patch-created", "patch_id", "check-created", "created_check", True),
    rereads_parent=True,
)


def _comments(name: str, table: str, model: str, parent: str, parent_key: str) -> Resource:
    """Patch and cover comments share one shape under different parents."""
    url = f"{parent}/{{{parent_key}}}/comments/{{id}}/"
    return Resource(
        name=name,
        table=table,
        model=model,
        path="comments",
        fields=(
            Value("id"),
            SelfUrl("url", since="1.3", template=url),
            SiteUrl("web_url", since="1.1"),
            Value("msgid"),
            Value("list_archive_url", since="1.2"),
            Value("date"),
            Value("subject"),
            Embed("submitter", target="people"),
            Value("content"),
            Value("headers"),
            Value("addressed", since="1.3"),
        ),
        embedded=(
            Value("id"),
            SelfUrl("url", since="1.3", template=url),
            SiteUrl("web_url", since="1.1"),
            Value("msgid"),
            Value("list_archive_url", since="1.2"),
            Value("date"),
        ),
        columns=(
            Column(f"{parent_key}_id", "INTEGER", _id(parent_key), index=True),
            Column("submitter_id", "INTEGER", _id("submitter"), index=True),
            Column("date", "TEXT", "date"),
            Column("subject", "TEXT", "subject"),
        ),
        # Upstream 500s on both (``subject`` is not a model field);
        # intended: the Subject header.
        search=("subject",),
        orderings={
            "id": Ordering("t.id"),
            "subject": Ordering("t.subject"),
            # Served by the (parent, date) index.
            "date": Ordering("t.date", index_ties=(), index_prefix=(f"t.{parent_key}_id",)),
            "submitter": Ordering("t.submitter_id"),
        },
        parent=Parent(parent, f"{parent_key}_id", parent_key),
        cascade=(("events", f"{parent_key}_comment_id"),),
        list_since="1.1",
        detail_since="1.3",
        allow_detail="GET, PUT, PATCH, HEAD, OPTIONS",
        announced=Announced(
            f"{parent_key}-created",
            f"{parent_key}_id",
            f"{parent_key}-comment-created",
            f"{parent_key}_comment",
            False,
        ),
    )


PATCH_COMMENTS = _comments("patch_comments", "patch_comments", "PatchComment", "patches", "patch")
COVER_COMMENTS = _comments("cover_comments", "cover_comments", "CoverComment", "covers", "cover")

EVENTS = Resource(
    name="events",
    table="events",
    crawl_rank=0,
    model="Event",
    path="events",
    detail_since=None,  # (Patchwork lists events; it has no event detail)
    fields=(
        Value("id"),
        Value("category"),
        Embed("project", target="projects"),
        Value("date"),
        # Patchwork's event serializer ignores its own versioning of actor.
        Embed("actor", target="users"),
        Payload(
            "payload",
            categories={
                "cover-created": (Embed("cover", target="covers"),),
                "patch-created": (Embed("patch", target="patches"),),
                "patch-completed": (
                    Embed("patch", target="patches"),
                    Embed("series", target="series"),
                ),
                "patch-state-changed": (
                    Embed("patch", target="patches"),
                    Value("previous_state"),
                    Value("current_state"),
                ),
                "patch-delegated": (
                    Embed("patch", target="patches"),
                    Embed("previous_delegate", target="users"),
                    Embed("current_delegate", target="users"),
                ),
                "patch-relation-changed": (
                    Embed("patch", target="patches"),
                    Value("previous_relation"),
                    Value("current_relation"),
                ),
                "check-created": (
                    Embed("patch", target="patches"),
                    Embed("check", target="checks", key="created_check"),
                ),
                "series-created": (Embed("series", target="series"),),
                "series-completed": (Embed("series", target="series"),),
                "cover-comment-created": (
                    Embed("cover", target="covers"),
                    Embed("comment", target="cover_comments", key="cover_comment"),
                ),
                "patch-comment-created": (
                    Embed("patch", target="patches"),
                    Embed("comment", target="patch_comments", key="patch_comment"),
                ),
            },
        ),
    ),
    columns=(
        Column("project_id", "INTEGER", _id("project"), index=True),
        Column("category", "TEXT", "category", index=True),
        Column("date", "TEXT", "date", index=True),
        Column("actor_id", "INTEGER", _id("actor")),
        Column("patch_id", "INTEGER", _id("patch"), index=True),
        Column("series_id", "INTEGER", _id("series"), index=True),
        Column("cover_id", "INTEGER", _id("cover"), index=True),
        # What a comment's or check's deletion takes with it (schema v2).
        Column("patch_comment_id", "INTEGER", _id("patch_comment"), index=True),
        Column("cover_comment_id", "INTEGER", _id("cover_comment"), index=True),
        Column("check_id", "INTEGER", _id("created_check"), index=True),
    ),
    filters=(
        PROJECT_FILTER,
        ChoiceFilter(
            "category", "category", indexed=True, choices={c: c for c in EVENT_CATEGORIES}
        ),
        RefFilter("series", "series_id", target="series"),
        RefFilter("patch", "patch_id", target="patches"),
        RefFilter("cover", "cover_id", target="covers"),
        RefFilter("actor", "actor_id", target="users", multiple=False, since="1.2"),
        SINCE,
        BEFORE,
    ),
    orderings={"date": Ordering("t.date")},
    default_order="-date",
    # Newest first is how every CI bot polls events: read it off an index.
    indexes=(
        ("date DESC", "id"),
        ("project_id", "date DESC", "id"),
        ("category", "date DESC", "id"),
        ("project_id", "category", "date"),  # (speed alone: CI polls)
    ),
)

RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        PROJECTS,
        USERS,
        PEOPLE,
        PATCHES,
        COVERS,
        SERIES,
        BUNDLES,
        EVENTS,
        PATCH_COMMENTS,
        COVER_COMMENTS,
        CHECKS,
    )
}

#: Top-level API collections, in the order of Patchwork's API index.
INDEX = ("projects", "users", "people", "patches", "covers", "series", "events", "bundles")

#: Joins an ordering may need, by name: alias and ON clause.
ORDERING_JOINS = {
    "project": "LEFT JOIN projects AS o_project ON o_project.id = t.project_id",
    "state": "LEFT JOIN states AS o_state ON o_state.id = t.state_id",
    "check": "LEFT JOIN checks AS o_check ON o_check.patch_id = t.id",
}
