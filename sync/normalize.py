"""Turning upstream API objects into the mirror's stored documents.

Upstream input is untrusted: every object is checked against the
resource's description (ids are integers, embedded objects are objects,
URLs are strings) and anything malformed raises :class:`BadUpstreamData`
instead of reaching the mirror.  See ``mirror.model`` for the shape of a
stored document.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from mirror.model import (
    Embed,
    EmbedList,
    Field,
    ListLink,
    Payload,
    SelfUrl,
    SiteUrl,
    UrlList,
    Value,
)
from mirror.resources import RESOURCES
from mirror.store import Batch

#: Longest string we accept in a stored document (patch diffs included).
MAX_STRING = 32 * 1024 * 1024


class BadUpstreamData(ValueError):
    """Upstream sent something that is not a well-formed Patchwork object."""


def _template_regex(template: str) -> re.Pattern[str]:
    """``patches/{patch}/checks/{id}/`` -> a regex capturing both ids."""
    pattern = re.escape(template)
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[0-9]+)", pattern)
    return re.compile(r"/" + pattern + r"$")


_SERIES_URL = re.compile(r"/series/([0-9]+)/$")


class Normalizer:
    """Normalises objects of one upstream, whose base URL is ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_path = urlsplit(base_url).path.rstrip("/")
        self._url_regexes: dict[str, re.Pattern[str]] = {}

    # -- URLs --------------------------------------------------------------

    def site_path(self, url: Any) -> str | None:
        """The path (and query) of a site URL, relative to the upstream base."""
        if url is None:
            return None
        if not isinstance(url, str) or len(url) > 8192:
            raise BadUpstreamData(f"bad URL {url!r:.80}")
        parts = urlsplit(url)
        path = parts.path
        if self.base_path and path.startswith(self.base_path + "/"):
            path = path[len(self.base_path) :]
        if not path.startswith("/"):
            raise BadUpstreamData(f"bad URL {url!r:.80}")
        return path + ("?" + parts.query if parts.query else "")

    def _url_ids(self, template: str, url: Any) -> dict[str, int]:
        if not isinstance(url, str):
            raise BadUpstreamData(f"bad URL {url!r:.80}")
        regex = self._url_regexes.get(template)
        if regex is None:
            regex = self._url_regexes[template] = _template_regex(template)
        match = regex.search(urlsplit(url).path)
        if not match:
            raise BadUpstreamData(f"URL {url!r:.80} is not of the form {template}")
        return {k: int(v) for k, v in match.groupdict().items()}

    # -- objects -----------------------------------------------------------

    def add(
        self,
        resource: str,
        obj: Any,
        batch: Batch,
        *,
        shape: str = "full",
        parent_id: int | None = None,
    ) -> int:
        """Normalise ``obj`` (and every object embedded in it) into ``batch``.

        ``shape`` is ``full`` for list and detail representations and
        ``embedded`` for an object found inside another.  Returns the id.
        """
        res = RESOURCES[resource]
        if not isinstance(obj, dict):
            raise BadUpstreamData(f"{resource}: expected an object, got {type(obj).__name__}")
        obj_id = _checked_id(resource, obj)
        doc: dict[str, Any] = {"id": obj_id}
        if res.parent and parent_id is not None:
            doc[res.parent.url_key] = parent_id

        fields: tuple[Field, ...]
        fields = res.embedded if shape == "embedded" and res.embedded else res.fields
        if shape == "full":
            fields = fields + res.detail_fields
        for field in fields:
            if field.name not in obj:
                continue
            self._field(field, obj[field.name], doc, batch)
        batch.add(resource, doc)
        return obj_id

    def copy(self, resource: str, obj: Any) -> dict[str, Any]:
        """An embedded object kept inline: its plain values, checked."""
        res = RESOURCES[resource]
        if not isinstance(obj, dict):
            raise BadUpstreamData(f"{resource}: expected an object, got {type(obj).__name__}")
        doc: dict[str, Any] = {"id": _checked_id(resource, obj)}
        for field in res.embedded or res.fields:
            if isinstance(field, Value) and field.name in obj:
                doc[field.key or field.name] = _checked_value(field.name, obj[field.name])
        return doc

    def _field(self, field: Field, value: Any, doc: dict[str, Any], batch: Batch) -> None:
        if isinstance(field, Value):
            doc[field.key or field.name] = _checked_value(field.name, value)
        elif isinstance(field, SelfUrl):
            ids = self._url_ids(field.template, value)
            if ids.pop("id", doc["id"]) != doc["id"]:
                raise BadUpstreamData(f"URL {value!r:.80} does not match id {doc['id']}")
            doc.update(ids)
        elif isinstance(field, ListLink):
            pass  # derived from the id when rendering
        elif isinstance(field, SiteUrl):
            doc[field.key or field.name] = self.site_path(value)
        elif isinstance(field, Embed):
            doc[field.key or field.name] = (
                None if value is None else self.add(field.target, value, batch, shape="embedded")
            )
        elif isinstance(field, EmbedList):
            if not isinstance(value, list):
                raise BadUpstreamData(f"{field.name}: expected a list")
            if field.copy:
                doc[field.key or field.name] = [self.copy(field.target, item) for item in value]
            else:
                doc[field.key or field.name] = [
                    self.add(field.target, item, batch, shape="embedded") for item in value
                ]
        elif isinstance(field, UrlList):
            if not isinstance(value, list):
                raise BadUpstreamData(f"{field.name}: expected a list")
            series_ids: list[int] = []
            for url in value:
                match = _SERIES_URL.search(urlsplit(url).path) if isinstance(url, str) else None
                if not match:
                    raise BadUpstreamData(f"{field.name}: bad URL {url!r:.80}")
                series_ids.append(int(match.group(1)))
            doc[field.key or field.name] = series_ids
        elif isinstance(field, Payload):
            self._payload(field, value, doc, batch)

    def _payload(self, field: Payload, value: Any, doc: dict[str, Any], batch: Batch) -> None:
        if not isinstance(value, dict):
            raise BadUpstreamData("payload: expected an object")
        for sub in field.categories.get(str(doc.get("category")), ()):
            if sub.name in value:
                self._field(sub, value[sub.name], doc, batch)


def _checked_id(resource: str, obj: dict[str, Any]) -> int:
    """Upstream ids must be integers SQLite can store."""
    obj_id = obj.get("id")
    if type(obj_id) is not int or not 0 <= obj_id < 2**63:
        raise BadUpstreamData(f"{resource}: bad id {obj_id!r:.40}")
    return obj_id


def _checked_value(name: str, value: Any, depth: int = 0) -> Any:
    """Accept JSON scalars and small nested structures, bounded in size."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise BadUpstreamData(f"{name}: string too long")
        return value
    if depth < 4 and isinstance(value, list):
        return [_checked_value(name, v, depth + 1) for v in value]
    if depth < 4 and isinstance(value, dict):
        return {str(k): _checked_value(name, v, depth + 1) for k, v in value.items()}
    raise BadUpstreamData(f"{name}: unexpected value {value!r:.80}")
