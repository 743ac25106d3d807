"""Patchwork's REST writes, answered as Patchwork 3.x answers them.

In DRF's order: authentication, the view's permission, the method (405),
the object (404) and its permission (the views' permission classes,
``patchwork/api/``), then the body (DRF's parsers: JSON, URL-encoded or
multipart), its validation (DRF's fields and Patchwork's serializers,
field by field, with their messages), the change, and the serializer's
answer at the request's version.  ``PATCH``/``PUT`` of patches, comments
(API 1.3+), users and projects, ``POST`` of checks, and
``POST``/``PATCH``/``PUT``/``DELETE`` of bundles (API 1.2+).  Changes go
through the same code as the fake's mutation methods (:mod:`.state`), so
they emit the same events.  ``tests/test_fake_writes.py`` replays a
recorded sequence of writes to real Patchwork and the reads that
followed them.
"""

from __future__ import annotations

import codecs
import email.parser
import email.policy
import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fake.api import (
    DENIED,
    NOT_AUTHENTICATED,
    _allow,
    _Ctx,
    _has_version,
    _Http,
    _Route,
    _ServerError,
)
from tests.fake.reads import Reads
from tests.fake.state import CHECK_STATES, DEFAULT_SETTINGS


class _Missing:
    """DRF's ``empty``: no value at all (not even null)."""

    def __repr__(self) -> str:
        return "<empty>"


_MISSING: Any = _Missing()
#: A check's ``user`` defaults to the caller (DRF's ``CurrentUserDefault``).
_CURRENT_USER: Any = _Missing()


class _Skip(Exception):
    """DRF's ``SkipField``: a field left out of the validated data."""


class _FieldError(Exception):
    """A DRF ``ValidationError``: messages, or a dict of them per field (a 400)."""

    def __init__(self, detail: list[str] | dict[str, Any]) -> None:
        super().__init__(detail)
        self.detail = detail


class _Form:
    """Form data as Django's ``QueryDict`` holds it: keys repeat, the last one wins."""

    def __init__(self, pairs: Iterable[tuple[str, Any]]) -> None:
        self.pairs = list(pairs)

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.pairs)

    def __getitem__(self, key: str) -> Any:
        values = self.getlist(key)
        if not values:
            raise KeyError(key)
        return values[-1]

    def __setitem__(self, key: str, value: Any) -> None:
        self.pairs = [(k, v) for k, v in self.pairs if k != key] + [(key, value)]

    def getlist(self, key: str) -> list[Any]:
        return [v for k, v in self.pairs if k == key]

    def nested(self, prefix: str) -> Any:
        """DRF's ``parse_html_dict``: ``prefix.key`` fields, or nothing."""
        start = prefix + "."
        pairs = [(k[len(start) :], v) for k, v in self.pairs if k.startswith(start)]
        pairs = [(k, v) for k, v in pairs if k and "\n" not in k]
        return _Form(pairs) if pairs else _MISSING


@dataclass(frozen=True)
class _Field:
    """A writable field of a Patchwork serializer, as DRF validates it."""

    name: str
    #: char, bool, int, pk (a related object's id), pks (a list of them),
    #: state (a patch state's slug or name), choice (a check state), nested
    kind: str
    required: bool = False
    null: bool = False
    blank: bool = False
    max_length: int | None = None
    #: char: "url" or "slug" (one more validator); pk, pks: the resource
    check: str = ""
    default: Any = _MISSING
    min_value: int | None = None
    max_value: int | None = None
    fields: tuple[_Field, ...] = ()


_URL_FIELDS = (
    "web_url",
    "scm_url",
    "webscm_url",
    "list_archive_url",
    "list_archive_url_format",
    "commit_url_format",
)
#: Each writable resource's writable fields, in the serializers' order.
WRITABLE: dict[str, tuple[_Field, ...]] = {
    "patches": (
        _Field("commit_ref", "char", null=True, blank=True, max_length=255),
        _Field("pull_url", "char", null=True, blank=True, max_length=255),
        _Field("state", "state", required=True),
        _Field("archived", "bool"),
        _Field("delegate", "pk", required=True, null=True, check="users"),
        _Field("related", "pks", check="patches", default=list),
    ),
    "checks": (
        _Field("user", "pk", check="users", default=_CURRENT_USER),
        _Field("state", "choice"),
        _Field("target_url", "char", null=True, blank=True, max_length=200, check="url"),
        _Field("context", "char", max_length=255, check="slug"),
        _Field("description", "char", null=True, blank=True),
    ),
    "bundles": (
        _Field("name", "char", required=True, max_length=50),
        _Field("patches", "pks", required=True, check="patches"),
        _Field("public", "bool"),
    ),
    "users": (
        _Field("first_name", "char", blank=True, max_length=150),
        _Field("last_name", "char", blank=True, max_length=150),
        _Field(
            "settings",
            "nested",
            required=True,
            fields=(
                _Field("send_email", "bool"),
                # PositiveIntegerField on SQLite: Django's 64-bit range.
                _Field("items_per_page", "int", min_value=0, max_value=2**63 - 1),
                _Field("show_ids", "bool"),
            ),
        ),
    ),
    "projects": (
        *(_Field(name, "char", blank=True, max_length=2000) for name in _URL_FIELDS),
        _Field("show_dependencies", "bool"),
    ),
    "patch-comments": (_Field("addressed", "bool", null=True),),
    "cover-comments": (_Field("addressed", "bool", null=True),),
}

#: DRF's BooleanField values, strings compared lowercased (1 is True, 0 False).
_TRUE = frozenset({"t", "y", "yes", "true", "on", "1", 1})
_FALSE = frozenset({"f", "n", "no", "false", "off", "0", 0})
_NULL = frozenset({"null", "", None})
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+\Z")
_UL = "\u00a1-\uffff"
_IPV4 = r"(?:0|25[0-5]|2[0-4][0-9]|1[0-9]?[0-9]?|[1-9][0-9]?)"
_HOST = (
    rf"[a-z{_UL}0-9](?:[a-z{_UL}0-9-]{{0,61}}[a-z{_UL}0-9])?"
    rf"(?:\.(?!-)[a-z{_UL}0-9-]{{1,63}}(?<!-))*"
    rf"\.(?!-)(?:[a-z{_UL}-]{{2,63}}|xn--[a-z0-9]{{1,59}})(?<!-)\.?"
)
#: Django's ``URLValidator``.
_URL = re.compile(
    r"^(?:[a-z0-9.+-]*)://(?:[^\s:@/]+(?::[^\s:@/]*)?@)?"
    rf"(?:{_IPV4}(?:\.{_IPV4}){{3}}|\[[0-9a-f:.]+\]|(?:{_HOST}|localhost))"
    r"(?::[0-9]{1,5})?(?:[/?#][^\s]*)?\Z",
    re.IGNORECASE,
)
_MAX_SQLITE_INT = 2**63 - 1


def _valid_url(value: str) -> bool:
    if len(value) > 2048 or set("\t\r\n") & set(value):
        return False
    if value.split("://")[0].lower() not in ("http", "https", "ftp", "ftps"):
        return False
    match = _URL.match(value)
    if match is None:
        return False
    host = urlsplit(value).hostname or ""
    return len(host) <= 253


def _slugify(value: str) -> str:
    """Django's ``slugify`` (ASCII)."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value.lower())
    return re.sub(r"[-\s]+", "-", value).strip("-_")


def _strict_constant(value: str) -> Any:
    raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: DRF's default parsers, in the order it tries them.
_PARSERS = ("application/json", *_FORMS)


def _media_type(content_type: str) -> tuple[str, str, dict[str, str]]:
    """(type, subtype, parameters) of a Content-Type, as DRF's ``_MediaType``."""
    full, _, rest = content_type.partition(";")
    main, _, sub = full.strip().lower().partition("/")
    params = {}
    for part in rest.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return main, sub, params


def _parse_body(content_type: str | None, body: bytes) -> Any:
    """DRF's ``request.data``: a JSON value or a :class:`_Form`."""
    content_type = content_type or ""
    main, sub, params = _media_type(content_type)
    if not body:
        return _Form([]) if f"{main}/{sub}" in _FORMS else {}
    parser = None
    for candidate in _PARSERS:
        want_main, _, want_sub = candidate.partition("/")
        if main in ("*", want_main) and sub in ("*", want_sub):
            parser = candidate
            break
    if parser is None:
        raise _Http(415, f'Unsupported media type "{content_type}" in request.')
    encoding = params.get("charset") or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    if parser == "application/json":
        try:
            return json.loads(body.decode(encoding), parse_constant=_strict_constant)
        except ValueError as exc:
            raise _Http(400, f"JSON parse error - {exc}") from None
    if parser == "application/x-www-form-urlencoded":
        text = body.decode(encoding, "replace")
        return _Form(parse_qsl(text, keep_blank_values=True))
    boundary = params.get("boundary")
    if not boundary:
        raise _Http(400, "Multipart form parse error - Invalid boundary in multipart: None")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("utf-8", "surrogateescape")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    pairs = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue  # files are no field of any Patchwork serializer
        payload = part.get_payload(decode=True)
        charset = part.get_content_charset() or encoding
        value = payload.decode(charset, "replace") if isinstance(payload, bytes) else ""
        pairs.append((name, value))
    return _Form(pairs)


RELATION_CONFLICT = (
    "At least one patch is already part of another relation. You have to explicitly"
    " remove a patch from its existing relation before moving it to this one."
)
NOT_MAINTAINER = "At least one patch is part of a project you are not maintaining."


class Writes(Reads):
    """The write views, their validation and their changes."""

    def _write(
        self,
        method: str,
        route: _Route,
        auth: str | None,
        content_type: str | None,
        raw_body: bytes,
        ctx: _Ctx,
    ) -> tuple[int, Any, dict[str, str]]:
        """A write: (status, JSON body or None, more headers).

        DRF's order: authentication, the view's permission, the method
        (405), the object (404) and its permission, then the body (415,
        parse errors), its validation (400), and the change itself.
        """
        user = self._identity(auth)
        res = route.resource
        if res in ("people", "users") and user is None:
            raise _Http(403, NOT_AUTHENTICATED)  # IsAuthenticated
        if res == "bundles":
            # BundlePermission: writes came with API 1.2.
            if not _has_version(route.version, "1.2"):
                raise _Http(405, f'Method "{method}" not allowed.')
            if method == "POST" and user is None:
                raise _Http(403, NOT_AUTHENTICATED)
        writable = {m.strip() for m in _allow(route).split(",")} - {"GET", "HEAD", "OPTIONS"}
        if method not in writable:
            raise _Http(405, f'Method "{method}" not allowed.')

        def data() -> Any:
            return _parse_body(content_type, raw_body)

        partial = method == "PATCH"
        if route.kind == "list":
            if res == "checks":
                return self._create_check(route, user, data, ctx)
            return self._create_bundle(user, data, ctx)
        obj = self._lookup(route, user)
        if user is None or not self._editable(res, obj, user):
            raise _Http(403, NOT_AUTHENTICATED if user is None else DENIED)
        if res == "bundles" and method == "DELETE":
            self.delete_bundle(obj["id"])
            return 204, None, {}
        hooks: dict[str, Callable[[Any], Any]]
        if res == "patches":
            hooks = {"delegate": functools.partial(self._validate_delegate, obj)}
            validated = self._validate(res, data(), partial, user, hooks)
            self._update_patch(obj, validated, user)
        elif res in ("patch-comments", "cover-comments"):
            payload = data()
            if not partial:
                # The serializer's hidden parent field reads ``request.patch``
                # (or ``.cover``), which only the check view sets: a 500.
                self._validate_root(payload)
                raise _ServerError
            validated = self._validate(res, payload, partial, user)
            self.set_comment_addressed(res, obj["id"], validated.get("addressed", obj["addressed"]))
        elif res == "bundles":
            hooks = {"patches": self._validate_bundle_patches}
            validated = self._validate(res, data(), partial, user, hooks)
            self._update_bundle(obj, validated)
        elif res == "users":
            validated = self._validate(res, data(), partial, user)
            settings = validated.pop("settings", None)
            if settings and _has_version(route.version, "1.2") and user == obj["id"]:
                validated["settings"] = {**(obj.get("settings") or DEFAULT_SETTINGS), **settings}
            self.update(res, obj["id"], **validated)
        else:  # projects
            self.update(res, obj["id"], **self._validate(res, data(), partial, user))
        body = self._render_obj(res, obj, ctx, True, user)
        if res == "patches" and partial and obj["_relation"] is None:
            # ``related`` has a default, which DRF skips in a partial
            # update, where the patch has no relation to read it from.
            body.pop("related", None)
        return 200, body, {}

    def _editable(self, res: str, obj: dict[str, Any], user: int) -> bool:
        """The object permission of each writable view (to a user)."""
        if res == "projects":
            return self._maintains(user, obj["id"])
        if res == "users":
            return bool(obj["id"] == user)
        if res == "bundles":
            return bool(obj["owner"] == user)
        if res == "patches":
            return self._patch_editable(obj, user)
        if user == self._person_user(obj["submitter"]):
            return True
        if res == "patch-comments":
            return self._patch_editable(self._objects["patches"][obj["_patch"]], user)
        cover = self._objects["covers"][obj["_cover"]]
        return user == self._person_user(cover["submitter"]) or self._maintains(
            user, cover["project"]
        )

    # Validation: DRF's serializers, field by field

    @staticmethod
    def _validate_root(data: Any) -> None:
        """What a serializer makes of data that is no object."""
        if data is None:
            raise _FieldError({"detail": ["No data provided"]})
        if not isinstance(data, (dict, _Form)):
            kind = type(data).__name__
            raise _FieldError({"detail": [f"Invalid data. Expected a dictionary, but got {kind}."]})

    def _validate(
        self,
        res: str,
        data: Any,
        partial: bool,
        user: int | None,
        hooks: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> dict[str, Any]:
        """The validated data of a write to ``res``, or a 400 (``_FieldError``)."""
        self._validate_root(data)
        return self._validate_fields(WRITABLE[res], data, partial, user, hooks or {})

    def _validate_fields(
        self,
        fields: Iterable[_Field],
        data: Any,
        partial: bool,
        user: int | None,
        hooks: Mapping[str, Callable[[Any], Any]],
    ) -> dict[str, Any]:
        validated: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for field in fields:
            try:
                value = self._field_value(field, data, partial)
                value = self._run_field(field, value, partial, user)
                if field.name in hooks:
                    value = hooks[field.name](value)
            except _FieldError as exc:
                errors[field.name] = exc.detail
            except _Skip:
                continue
            else:
                validated[field.name] = value
        if errors:
            raise _FieldError(errors)
        return validated

    @staticmethod
    def _field_value(field: _Field, data: Any, partial: bool) -> Any:
        """DRF's ``get_value``: forms cannot say null or false."""
        if not isinstance(data, _Form):
            return data.get(field.name, _MISSING)
        if field.kind == "nested":
            return data.nested(field.name)
        if field.kind == "pks":
            if field.name not in data and partial:
                return _MISSING
            return data.getlist(field.name)
        if field.name not in data:
            if partial:
                return _MISSING
            if field.kind == "bool":
                return None if field.null else False
            return _MISSING
        value = data[field.name]
        if value == "" and field.null:
            return "" if field.blank else None
        if value == "" and not field.required:
            return "" if field.blank else _MISSING
        return value

    def _run_field(self, field: _Field, value: Any, partial: bool, user: int | None) -> Any:
        if field.kind in ("pk", "state") and isinstance(value, str) and value == "":
            value = None  # RelatedField: an empty string is null
        if (
            field.kind == "char"
            and value is not _MISSING
            and (value == "" or str(value).strip() == "")
        ):
            if not field.blank:
                raise _FieldError(["This field may not be blank."])
            return ""
        if value is _MISSING:
            if partial:
                raise _Skip
            if field.required:
                raise _FieldError(["This field is required."])
            if field.default is _MISSING:
                raise _Skip
            if field.default is _CURRENT_USER:
                return user
            return field.default() if callable(field.default) else field.default
        if value is None:
            if not field.null:
                raise _FieldError(["This field may not be null."])
            return None
        value = self._to_internal(field, value, partial, user)
        errors = []
        if field.kind == "char":
            if field.max_length is not None and len(value) > field.max_length:
                errors.append(f"Ensure this field has no more than {field.max_length} characters.")
            if "\x00" in value:
                errors.append("Null characters are not allowed.")
            surrogate = next((c for c in value if 0xD800 <= ord(c) <= 0xDFFF), None)
            if surrogate is not None:
                errors.append(f"Surrogate characters are not allowed: U+{ord(surrogate):X}.")
            if field.check == "url" and not _valid_url(value):
                errors.append("Enter a valid URL.")
            if field.check == "slug" and not _SLUG.match(value):
                errors.append(
                    'Enter a valid "slug" consisting of letters, numbers, underscores or hyphens.'
                )
        elif field.kind == "int":
            if field.max_value is not None and value > field.max_value:
                errors.append(f"Ensure this value is less than or equal to {field.max_value}.")
            if field.min_value is not None and value < field.min_value:
                errors.append(f"Ensure this value is greater than or equal to {field.min_value}.")
        if errors:
            raise _FieldError(errors)
        return value

    def _to_internal(self, field: _Field, value: Any, partial: bool, user: int | None) -> Any:
        kind = field.kind
        if kind == "char":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise _FieldError(["Not a valid string."])
            return str(value).strip()
        if kind == "bool":
            probe = value.lower() if isinstance(value, str) else value
            try:
                if probe in _TRUE:
                    return True
                if probe in _FALSE:
                    return False
                if probe in _NULL and field.null:
                    return None
            except TypeError:
                pass
            raise _FieldError(["Must be a valid boolean."])
        if kind == "int":
            if isinstance(value, str) and len(value) > 1000:
                raise _FieldError(["String value too large."])
            try:
                return int(re.sub(r"\.0*\s*$", "", str(value)))
            except ValueError:
                raise _FieldError(["A valid integer is required."]) from None
        if kind == "pk":
            return self._pk(field.check, value)
        if kind == "pks":
            if isinstance(value, str) or not hasattr(value, "__iter__"):
                kind_name = type(value).__name__
                raise _FieldError([f'Expected a list of items but got type "{kind_name}".'])
            return [self._pk(field.check, item) for item in value]
        if kind == "state":
            if not isinstance(value, str):
                raise _ServerError  # StateField calls data.lower()
            slug = _slugify(value.lower())
            ordered = sorted(self.states, key=lambda s: (s.ordering, s.id))
            for state in ordered:
                if state.slug == slug:
                    return state.slug
            choices = ", ".join(s.slug for s in ordered)
            raise _FieldError([f"Invalid state {slug}. Expected one of: {choices}."])
        if kind == "choice":
            labels = {str(code): label for label, code in CHECK_STATES.items()}
            if str(value) in labels:
                return labels[str(value)]
            raise _FieldError([f'"{value}" is not a valid choice.'])
        # nested (a user's settings)
        if not isinstance(value, (dict, _Form)):
            kind_name = type(value).__name__
            raise _FieldError(
                {"detail": [f"Invalid data. Expected a dictionary, but got {kind_name}."]}
            )
        return self._validate_fields(field.fields, value, partial, user, {})

    def _pk(self, res: str, value: Any) -> int:
        """DRF's ``PrimaryKeyRelatedField`` over Django's integer lookup."""
        try:
            if isinstance(value, bool):
                raise TypeError
            number = int(value)
        except (TypeError, ValueError):
            kind = type(value).__name__
            raise _FieldError([f"Incorrect type. Expected pk value, received {kind}."]) from None
        if abs(number) > _MAX_SQLITE_INT:
            raise _ServerError  # SQLite: "Python int too large to convert"
        if number not in self._objects[res]:
            raise _FieldError([f'Invalid pk "{value}" - object does not exist.'])
        return number

    def _validate_delegate(self, patch: dict[str, Any], value: int | None) -> int | None:
        if value is not None and not self._maintains(value, patch["project"]):
            username = self._objects["users"][value]["username"]
            project = self._objects["projects"][patch["project"]]["name"]
            raise _FieldError([f"User '{username}' is not a maintainer for project '{project}'"])
        return value

    def _validate_bundle_patches(self, value: list[int]) -> list[int]:
        if not value:
            raise _FieldError(["Bundles cannot be empty"])
        if len({self._objects["patches"][p]["project"] for p in value}) > 1:
            raise _FieldError(["Bundle patches must belong to the same project"])
        return value

    # The changes

    def _update_patch(self, patch: dict[str, Any], validated: dict[str, Any], user: int) -> None:
        """``PatchDetailSerializer.update`` and the events of its saves."""
        pid = patch["id"]
        patches = self._objects["patches"]
        left = False  # the saved patch leaves a relation of more than two
        if "related" in validated:
            ids = validated.pop("related")
            self._require_maintainer(user, [pid])
            # A set of patches: Python iterates model instances as their ids.
            members = set(ids)
            rid = patch["_relation"]
            if rid is not None:
                members = members.union(
                    sorted(self._relations[rid], key=lambda i: (patches[i]["_date"], i))
                )
            self._require_maintainer(user, members)
            if not ids:
                if rid is not None and len(self._relations[rid]) == 2:
                    # Deleted before the patch is saved: no change, no event.
                    for member in self._relations.pop(rid):
                        patches[member]["_relation"] = None
                elif rid is not None:
                    self._relations[rid].discard(pid)
                    patch["_relation"] = None
                    left = True
            else:
                relations = {patches[m]["_relation"] for m in members} - {None}
                if len(relations) > 1:
                    raise _Http(409, RELATION_CONFLICT)
                target = relations.pop() if relations else self._new_relation(set())
                for member in members:  # saved as themselves: no actor
                    self._join(patches[member], target, None)
                self._join(patch, target, user)
        # One save: pre_save handlers in their order (state, delegate, relation).
        if "state" in validated:
            self.set_state(pid, validated.pop("state"), user)
        if "delegate" in validated:
            self.set_delegate(pid, validated.pop("delegate"), user)
        if left:
            self._event(
                "patch-relation-changed",
                patch["project"],
                actor=user,
                patch=pid,
                previous_relation=None,
                current_relation=None,
            )
        patch.update(validated)  # commit_ref, pull_url, archived: no events

    def _require_maintainer(self, user: int, patch_ids: Iterable[int]) -> None:
        patches = self._objects["patches"]
        if any(not self._maintains(user, patches[p]["project"]) for p in patch_ids):
            raise _Http(403, NOT_MAINTAINER)

    def _join(self, patch: dict[str, Any], rid: int, actor: int | None) -> None:
        if patch["_relation"] == rid:
            return
        patch["_relation"] = rid
        self._relations[rid].add(patch["id"])
        self._event(
            "patch-relation-changed",
            patch["project"],
            actor=actor,
            patch=patch["id"],
            previous_relation=None,
            current_relation=None,
        )

    def _create_check(
        self, route: _Route, user: int | None, data: Callable[[], Any], ctx: _Ctx
    ) -> tuple[int, Any, dict[str, str]]:
        patch = self._objects["patches"].get(route.parent or 0)
        if patch is None:
            raise _Http(404, "No Patch matches the given query.")
        if not self._patch_editable(patch, user):
            raise _Http(403, DENIED)  # raised by the view: anonymous or not
        payload = data()
        # CheckSerializer.run_validation: a state, named by its label.
        if isinstance(payload, (dict, _Form)):
            if "state" not in payload or payload["state"] == "":
                raise _FieldError({"state": ["A check must have a state."]})
            if isinstance(payload["state"], str) and payload["state"] in CHECK_STATES:
                payload["state"] = CHECK_STATES[payload["state"]]
        elif isinstance(payload, (list, str)) and "state" not in payload:
            raise _FieldError({"state": ["A check must have a state."]})
        else:
            raise _ServerError  # ``'state' in data`` or ``data['state']`` fails
        validated = self._validate("checks", payload, False, user)
        check_id = self.add_check(
            patch["id"],
            validated["user"],
            validated.get("state", "pending"),
            validated.get("context", "default"),
            validated.get("target_url"),
            validated.get("description"),
        )
        check = self._objects["checks"][check_id]
        body = self._render_obj("checks", check, ctx, True, user)
        return 201, body, {"Location": body["url"]}

    def _create_bundle(
        self, user: int | None, data: Callable[[], Any], ctx: _Ctx
    ) -> tuple[int, Any, dict[str, str]]:
        assert user is not None
        hooks = {"patches": self._validate_bundle_patches}
        validated = self._validate("bundles", data(), False, user, hooks)
        patch_ids = list(dict.fromkeys(validated["patches"]))
        if self._bundle_named(user, validated["name"]) is not None:
            raise _ServerError  # the unique (owner, name) constraint
        project = self._objects["patches"][patch_ids[0]]["project"]
        public = bool(validated.get("public", False))
        bundle_id = self.create_bundle(project, user, validated["name"], patch_ids, public)
        body = self._render_obj("bundles", self._objects["bundles"][bundle_id], ctx, True, user)
        return 201, body, {"Location": body["url"]}

    def _bundle_named(self, owner: int, name: str) -> int | None:
        for bundle in self._objects["bundles"].values():
            if bundle["owner"] == owner and bundle["name"] == name:
                return int(bundle["id"])
        return None

    def _update_bundle(self, bundle: dict[str, Any], validated: dict[str, Any]) -> None:
        if "name" in validated and self._bundle_named(bundle["owner"], validated["name"]) not in (
            None,
            bundle["id"],
        ):
            raise _ServerError
        changes: dict[str, Any] = {k: validated[k] for k in ("name", "public") if k in validated}
        if validated.get("patches"):
            patch_ids = list(dict.fromkeys(validated["patches"]))
            changes["project"] = self._objects["patches"][patch_ids[0]]["project"]
            changes["patches"] = patch_ids
        self.update("bundles", bundle["id"], **changes)
