"""Rendering stored documents as Patchwork's JSON, for any version and origin.

For each (resource, shape, version) the field descriptions are compiled
once into a list of small functions; rendering an object is then a single
pass over that list.  Embedded objects come from the ``embeds`` mapping
the reader fills with one batched lookup per page (see ``gateway.reader``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from mirror.model import (
    Embed,
    EmbedList,
    Field,
    ListLink,
    Payload,
    Resource,
    SelfUrl,
    SiteUrl,
    UrlList,
    Value,
)
from mirror.resources import RESOURCES
from mirror.versions import VERSIONS, has_version

Doc = dict[str, Any]
#: (table, id) -> stored document, for every object embedded in a page.
Embeds = dict[tuple[str, int], Doc]

_OMIT = object()


@dataclass(frozen=True)
class Context:
    """Per-request facts that URLs depend on."""

    origin: str  # "http://gateway:8080"
    version: str | None  # the version segment as requested ("1.4", "1x4", None)
    effective: str  # the version whose fields are shown ("1.4" when unversioned)

    @property
    def api(self) -> str:
        """Versioned API root, e.g. ``http://gw/api/1.2/``."""
        return f"{self.origin}/api/{self.version}/" if self.version else f"{self.origin}/api/"


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
        return lambda doc, emb, ctx: ctx.api + template.format_map(doc)
    if isinstance(field, ListLink):
        template = field.template
        return lambda doc, emb, ctx: f"{ctx.origin}/api/" + template.format_map(doc)
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
            target = emb.get((table, ref))
            return None if target is None else inner(target, emb, ctx)

        return one
    if isinstance(field, EmbedList):
        table = RESOURCES[field.target].table
        inner = embedded_renderer(field.target, effective)

        def many(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            out = []
            for ref in doc.get(key) or ():
                target = emb.get((table, ref))
                if target is not None:
                    out.append(inner(target, emb, ctx))
            return out

        return many
    if isinstance(field, UrlList):
        template = RESOURCES[field.target].path + "/{}/"
        flag = field.project_flag

        def urls(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            if flag:
                project = emb.get(("projects", doc.get("project")))
                if not project or not project.get(flag):
                    return _OMIT
            return [ctx.api + template.format(ref) for ref in doc.get(key) or ()]

        return urls
    if isinstance(field, Payload):
        categories = {
            category: _compile(fields, effective) for category, fields in field.categories.items()
        }

        def payload(doc: Doc, emb: Embeds, ctx: Context) -> Any:
            out = {}
            for name, render in categories.get(doc.get("category"), ()):
                out[name] = render(doc, emb, ctx)
            return out

        return payload
    raise TypeError(f"cannot render {field!r}")


def _compile(fields: tuple[Field, ...], effective: str) -> list[tuple[str, Renderer]]:
    return [(f.name, _field(f, effective)) for f in fields if has_version(effective, f.since)]


def _object_renderer(fields: tuple[Field, ...], effective: str) -> Renderer:
    compiled = _compile(fields, effective)

    def render(doc: Doc, emb: Embeds, ctx: Context) -> Doc:
        out = {}
        for name, fn in compiled:
            value = fn(doc, emb, ctx)
            if value is not _OMIT:
                out[name] = value
        return out

    return render


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


def embedded_refs(resource: str, doc: Doc) -> list[tuple[str, int]]:
    """Every (table, id) that rendering ``doc`` will look up."""
    return [ref for ref in _refs(RESOURCES[resource].fields, doc) if ref[1] is not None]


def _refs(fields: tuple[Field, ...], doc: Doc) -> list[tuple[str, Any]]:
    refs: list[tuple[str, Any]] = []
    for field in fields:
        key = getattr(field, "key", None) or field.name
        if isinstance(field, Embed):
            refs.append((RESOURCES[field.target].table, doc.get(key)))
        elif isinstance(field, EmbedList):
            table = RESOURCES[field.target].table
            refs.extend((table, ref) for ref in doc.get(key) or ())
        elif isinstance(field, UrlList) and field.project_flag:
            refs.append(("projects", doc.get("project")))
        elif isinstance(field, Payload):
            refs.extend(_refs(field.categories.get(doc.get("category"), ()), doc))
    return refs
