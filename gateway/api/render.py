"""Rendering stored documents as Patchwork's JSON, for any version and origin.

For each (resource, shape, version) the field descriptions are compiled
once into a list of small functions; rendering an object is then a single
pass over that list.  Embedded objects come from the ``embeds`` mapping
the reader fills with one batched lookup per page (see ``mirror.reader``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

from mirror.model import (
    Doc,
    Embed,
    EmbedList,
    Field,
    ListLink,
    Payload,
    Ref,
    Resource,
    SelfUrl,
    SiteUrl,
    UrlList,
    Value,
)
from mirror.resources import RESOURCES
from mirror.versions import VERSIONS, has_version


class Embeds:
    """The stored documents embedded in one answer, and their renderings.

    A page of patches embeds the same project thirty times; each embedded
    object is rendered once per answer.
    """

    __slots__ = ("docs", "dropped", "rendered")

    def __init__(self, docs: dict[Ref, Doc]) -> None:
        self.docs = docs
        self.rendered: dict[Ref, Doc] = {}
        #: Fields Patchwork dropped from its (shared) serializer earlier in
        #: this answer; see UrlList.
        self.dropped: set[str] = set()


_OMIT = object()


class Context:
    """Per-request facts that URLs depend on."""

    __slots__ = ("api", "effective", "origin", "root", "suffix", "version")

    def __init__(self, origin: str, version: str | None, effective: str, suffix: str = "") -> None:
        self.origin = origin  # "http://gateway:8080"
        self.version = version  # the version segment as requested ("1x4"), or None
        self.effective = effective  # the version whose fields are shown
        #: Unversioned and versioned API roots, e.g. ``http://gw/api/1.2/``.
        self.root = f"{origin}/api/"
        self.api = f"{self.root}{version}/" if version else self.root
        #: Appended to the URLs DRF builds with its ``reverse()`` and the
        #: request (``url``, series dependencies, the index): the request's
        #: ``format`` parameter, which DRF carries over ("?format=json").
        self.suffix = suffix


@lru_cache(maxsize=64)  # (every list or detail asks; a few versions are named)
def effective_version(requested: str | None) -> str:
    """The newest known version whose fields a request for ``requested`` sees."""
    best = VERSIONS[0]
    for version in VERSIONS:
        if has_version(requested, version):
            best = version
    return best


Renderer = Callable[[Doc, Embeds, Context], Any]


def _field(field: Field, effective: str) -> Renderer:
    key = getattr(field, "key", None) or field.name
    if isinstance(field, Value):
        return lambda doc, emb, ctx: doc.get(key)
    if isinstance(field, SelfUrl):
        template = field.template
        return lambda doc, emb, ctx: ctx.api + template.format_map(doc) + ctx.suffix
    if isinstance(field, ListLink):
        template = field.template
        return lambda doc, emb, ctx: ctx.root + template.format_map(doc)
    if isinstance(field, SiteUrl):

        def site(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            path = doc.get(key)
            return None if path is None else ctx.origin + path

        return site
    if isinstance(field, Embed):
        table = RESOURCES[field.target].table
        inner = embedded_renderer(field.target, effective)

        def one(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            ref = doc.get(key)
            if ref is None:
                return None
            return _embedded(inner, table, ref, emb, ctx)

        return one
    if isinstance(field, EmbedList) and field.copy:
        inner = embedded_renderer(field.target, effective)
        no_embeds = Embeds({})
        return lambda doc, emb, ctx: [inner(item, no_embeds, ctx) for item in doc.get(key) or ()]
    if isinstance(field, EmbedList):
        table = RESOURCES[field.target].table
        inner = embedded_renderer(field.target, effective)

        def many(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            out = []
            for ref in doc.get(key) or ():
                rendered = _embedded(inner, table, ref, emb, ctx)
                if rendered is not None:
                    out.append(rendered)
            return out

        return many
    if isinstance(field, UrlList):
        template = RESOURCES[field.target].path + "/{}/"
        flag = field.project_flag

        name = field.name

        def urls(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            if flag:
                # Patchwork deletes the field from the serializer, which a
                # list shares between its items: once an item's project
                # lacks the flag, every later item lacks the field too.
                if name in emb.dropped:
                    return _OMIT
                project = emb.docs.get(("projects", doc.get("project", -1)))
                if not project or not project.get(flag):
                    emb.dropped.add(name)
                    return _OMIT
            return [ctx.api + template.format(ref) + ctx.suffix for ref in doc.get(key) or ()]

        return urls
    if isinstance(field, Payload):
        categories = {
            category: _compile(fields, effective) for category, fields in field.categories.items()
        }

        def payload(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            out = {}
            for name, render in categories.get(str(doc.get("category")), ()):
                out[name] = render(doc, emb, ctx)
            return out

        return payload
    raise TypeError(f"cannot render {field!r}")


def _embedded(inner: Renderer, table: str, ref: int, emb: Embeds, ctx: Context) -> Doc | None:
    rendered = emb.rendered.get((table, ref))
    if rendered is None:
        target = emb.docs.get((table, ref))
        if target is None:
            return None  # not mirrored (yet): Patchwork would not name it either
        rendered = emb.rendered[(table, ref)] = inner(target, emb, ctx)
    return rendered


def _compile(fields: tuple[Field, ...], effective: str) -> list[tuple[str, Renderer]]:
    return [(f.name, _field(f, effective)) for f in fields if has_version(effective, f.since)]


def _object_renderer(fields: tuple[Field, ...], effective: str) -> Renderer:
    """Generate one function building the whole object in a dict display.

    Rendering is the gateway's hot loop; a generated function avoids a
    call per plain field, which makes it several times faster than looping
    over per-field functions.
    """
    shown = [f for f in fields if has_version(effective, f.since)]
    namespace: dict[str, Any] = {"OMIT": _OMIT}
    items = []
    may_omit = False
    for i, field in enumerate(shown):
        key = getattr(field, "key", None) or field.name
        if isinstance(field, Value):
            expr = f"g({key!r})"
        elif isinstance(field, SelfUrl):
            namespace[f"T{i}"] = field.template
            expr = f"ctx.api + T{i}.format_map(doc) + ctx.suffix"
        elif isinstance(field, ListLink):
            namespace[f"T{i}"] = field.template
            expr = f"ctx.root + T{i}.format_map(doc)"
        elif isinstance(field, SiteUrl):
            expr = f"(None if (v{i} := g({key!r})) is None else ctx.origin + v{i})"
        else:
            namespace[f"F{i}"] = _field(field, effective)
            expr = f"F{i}(doc, emb, ctx)"
            may_omit = may_omit or isinstance(field, UrlList)
        items.append(f"{field.name!r}: {expr}")
    body = "{" + ", ".join(items) + "}"
    if may_omit:
        source = (
            "def render(doc, emb, ctx):\n    g = doc.get\n"
            f"    out = {body}\n"
            "    return {k: v for k, v in out.items() if v is not OMIT}\n"
        )
    else:
        source = f"def render(doc, emb, ctx):\n    g = doc.get\n    return {body}\n"
    exec(compile(source, f"<render {effective}>", "exec"), namespace)
    return namespace["render"]


@cache
def embedded_renderer(resource: str, effective: str) -> Renderer:
    res = RESOURCES[resource]
    return _object_renderer(res.embedded or res.fields, effective)


@cache
def renderer(resource: str, effective: str, detail: bool) -> Renderer:
    """The renderer of a list item (``detail=False``) or a detail."""
    res: Resource = RESOURCES[resource]
    fields = res.fields + res.detail_fields if detail else res.fields
    return _object_renderer(fields, effective)


def embedded_refs(resource: str, doc: Doc) -> list[Ref]:
    """Every (table, id) that rendering ``doc`` will look up."""
    refs: list[Ref] = []
    for kind, table, key, sub in _ref_plan(resource):
        if kind == "one":
            ref = doc.get(key)
            if ref is not None:
                refs.append((table, ref))
        elif kind == "many":
            refs.extend((table, ref) for ref in doc.get(key) or ())
        else:  # payload: the plan of the event's category
            for _, sub_table, sub_key, _ in sub.get(doc.get("category"), ()):
                ref = doc.get(sub_key)
                if ref is not None:
                    refs.append((sub_table, ref))
    return refs


def _plan(fields: tuple[Field, ...]) -> list[tuple[str, str, str, Any]]:
    plan: list[tuple[str, str, str, Any]] = []
    for field in fields:
        key = getattr(field, "key", None) or field.name
        if isinstance(field, Embed):
            plan.append(("one", RESOURCES[field.target].table, key, None))
        elif isinstance(field, EmbedList) and not field.copy:
            plan.append(("many", RESOURCES[field.target].table, key, None))
        elif isinstance(field, UrlList) and field.project_flag:
            plan.append(("one", "projects", "project", None))
        elif isinstance(field, Payload):
            sub = {cat: _plan(fs) for cat, fs in field.categories.items()}
            plan.append(("payload", "", "", sub))
    return plan


@cache
def _ref_plan(resource: str) -> list[tuple[str, str, str, Any]]:
    return _plan(RESOURCES[resource].fields)


#: Resources whose list items depend on the items before them.
STATEFUL = frozenset(
    name
    for name, res in RESOURCES.items()
    if any(isinstance(f, UrlList) and f.project_flag for f in res.fields)
)
