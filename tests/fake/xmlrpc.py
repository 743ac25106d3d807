"""Patchwork's XML-RPC API at ``/xmlrpc/`` (``patchwork/views/xmlrpc.py``).

Its methods, filters (Django's field lookups on SQLite), dict answers and
faults (Django's exceptions, down to the ``None`` that ``allow_none=False``
cannot send), HTTP Basic logins (``pw-<username>`` with the fake's
``tokens`` set), and writes (``patch_set``, ``check_create``) through the
fake's mutation methods, so with Patchwork's events.
``tests/test_fake_xmlrpc.py`` runs pwclient on it.
"""

from __future__ import annotations

import base64
import datetime as dt
import operator
import xmlrpc.client
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xmlrpc.server import SimpleXMLRPCDispatcher, XMLRPCDocGenerator

from aiohttp import web

from tests.fake.downloads import _FILENAME
from tests.fake.state import CHECK_STATES, State, _ilower

if TYPE_CHECKING:
    from tests.fake.server import FakePatchwork

XMLRPC_PATH = "/xmlrpc/"
#: The Django field lookups Patchwork's list filters accept.
LOOKUP_TYPES = [
    "iexact",
    "contains",
    "icontains",
    "gt",
    "gte",
    "lt",
    "in",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
    "range",
    "year",
    "month",
    "day",
    "isnull",
]


def _named_error(module: str, qualname: str, base: type[Exception] = Exception) -> Any:
    """An exception class that prints as Django's or Patchwork's does in a fault
    (``<class 'patchwork.models.Patch.DoesNotExist'>``)."""
    name = qualname.rpartition(".")[2]
    return type(name, (base,), {"__module__": module, "__qualname__": qualname})


_FieldErr = _named_error("django.core.exceptions", "FieldError")
_ValidationErr = _named_error("django.core.exceptions", "ValidationError")
_IntegrityErr = _named_error("django.db.utils", "IntegrityError")
#: Model -> its DoesNotExist; MultipleObjectsReturned of a patch.
_DOES_NOT_EXIST = {
    model: _named_error("patchwork.models", f"{model}.DoesNotExist")
    for model in ("Project", "Person", "Patch", "State", "Check")
}
_MULTIPLE_PATCHES = _named_error("patchwork.models", "Patch.MultipleObjectsReturned")


def _validation_error(message: str) -> Exception:
    """``str(ValidationError)`` is the repr of its list of messages."""
    return _ValidationErr(str([message]))


def _django_int(value: Any, name: str = "id") -> int | None:
    """``IntegerField.get_prep_value``."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise exc.__class__(f"Field '{name}' expected a number but got {value!r}.") from None


def _char(value: Any) -> str | None:
    """``CharField.get_prep_value``."""
    return value if value is None or isinstance(value, str) else str(value)


def _django_bool(value: Any) -> bool:
    """``BooleanField.to_python`` (not null)."""
    if value in (True, False):
        return bool(value)
    if value in ("t", "True", "1"):
        return True
    if value in ("f", "False", "0"):
        return False
    raise _validation_error(f"“{value}” value must be either True or False.")


def _django_datetime(value: Any) -> dt.datetime:
    """``DateTimeField.to_python`` and SQLite's refusal of aware values (USE_TZ off)."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif not isinstance(value, str):
        raise TypeError("fromisoformat: argument must be str")
    else:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                raise _validation_error(
                    f"“{value}” value has an invalid format. It must be in"
                    " YYYY-MM-DD HH:MM[:ss[.uuuuuu]][TZ] format."
                ) from None
            parsed = dt.datetime(day.year, day.month, day.day)
    if parsed.tzinfo is not None:
        raise ValueError(
            "SQLite backend does not support timezone-aware datetimes when USE_TZ is False."
        )
    return parsed


@dataclass(frozen=True)
class _Column:
    """A model field as the XML-RPC filters may query it."""

    #: int, str, bool, date, or fk (a foreign key, looked up by id)
    kind: str
    #: Django's field class, as its FieldError names it
    field: str
    get: Callable[[dict[str, Any]], Any]


_PATCH_COLUMNS = {
    "id": _Column("int", "AutoField", operator.itemgetter("id")),
    "name": _Column("str", "CharField", operator.itemgetter("name")),
    "archived": _Column("bool", "BooleanField", operator.itemgetter("archived")),
    "date": _Column("date", "DateTimeField", operator.itemgetter("_date")),
    "commit_ref": _Column("str", "CharField", operator.itemgetter("commit_ref")),
    "hash": _Column("str", "HashField", operator.itemgetter("hash")),
    "msgid": _Column("str", "CharField", operator.itemgetter("msgid")),
}
_CHECK_COLUMNS = {
    "id": _Column("int", "AutoField", operator.itemgetter("id")),
    "user": _Column("fk", "ForeignKey", operator.itemgetter("user")),
}
_RELATED_LOOKUPS = ("exact", "in", "gt", "gte", "lt", "isnull")
_COMPARISONS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt}
_PATTERNS = (
    "iexact",
    "contains",
    "icontains",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
)
#: Lookups proper (the others of LOOKUP_TYPES are a date's transforms).
_FINAL_LOOKUPS = frozenset(LOOKUP_TYPES) - {"year", "month", "day"} | {"exact"}


def _db_text(kind: str, value: Any) -> str | None:
    """A column's value as SQLite's LIKE sees it."""
    if value is None:
        return None
    if kind == "bool":
        return "1" if value else "0"
    return str(value)


def _like(lookup: str, rhs: Any, text: str | None) -> bool:
    """The pattern lookups: SQLite's LIKE, which folds ASCII case (even ``contains``)."""
    if text is None:
        return False
    needle, hay = _ilower(str(rhs)), _ilower(text)
    if lookup == "iexact":
        return hay == needle
    if lookup in ("contains", "icontains"):
        return needle in hay
    if lookup in ("startswith", "istartswith"):
        return hay.startswith(needle)
    return hay.endswith(needle)


def _matcher(column: _Column, lookups: list[str], value: Any) -> Callable[[dict[str, Any]], bool]:
    """``Model.objects.filter(field__lookup=value)`` for one object, as Django on SQLite."""
    lookups = list(lookups) or ["exact"]
    kind, get, name = column.kind, column.get, "id"
    if kind == "fk":
        if len(lookups) > 1 or lookups[0] not in _RELATED_LOOKUPS:
            raise _FieldErr(f"Related Field got invalid lookup: {lookups[0]}")
    elif lookups[0] in ("year", "month", "day"):
        if kind != "date":
            raise _FieldErr(
                f"Unsupported lookup '{lookups[0]}' for {column.field}"
                " or join on the field not permitted."
            )
        part = lookups.pop(0)
        column_get = get

        def get(obj: dict[str, Any]) -> Any:
            date = column_get(obj)
            return None if date is None else getattr(date, part)

        kind, name, lookups = "int", "None", lookups or ["exact"]
    if len(lookups) > 1 or lookups[0] not in _FINAL_LOOKUPS:
        field = "IntegerField" if name == "None" else column.field
        raise _FieldErr(
            f"Unsupported lookup '{lookups[0]}' for {field} or join on the field not permitted."
        )
    lookup = lookups[0]

    def prep(raw: Any) -> Any:
        if raw is None:
            return None
        if kind in ("int", "fk"):
            return _django_int(raw, name)
        if kind == "bool":
            return _django_bool(raw)
        if kind == "date":
            return _django_datetime(raw)
        return _char(raw)

    if value is None and lookup in ("exact", "iexact"):
        return lambda obj: get(obj) is None
    if value is None and lookup != "isnull":
        raise ValueError("Cannot use None as a query value")
    if lookup == "isnull":
        if not isinstance(value, bool):
            raise ValueError("The QuerySet value for an isnull lookup must be True or False.")
        return lambda obj: (get(obj) is None) is value
    if lookup in _PATTERNS:
        return lambda obj: _like(lookup, value, _db_text(kind, get(obj)))
    if lookup == "in":
        accepted = [v for v in (prep(item) for item in value) if v is not None]
        return lambda obj: get(obj) is not None and get(obj) in accepted
    if lookup == "range":
        low, high = (prep(item) for item in value)
        return lambda obj: get(obj) is not None and low <= get(obj) <= high
    wanted = prep(value)
    compare = _COMPARISONS.get(lookup, operator.eq)
    return lambda obj: get(obj) is not None and compare(get(obj), wanted)


def _where(get: Callable[[dict[str, Any]], Any], wanted: Any) -> Callable[[dict[str, Any]], bool]:
    """An equality filter (a foreign key's ``field=obj``)."""
    return lambda obj: bool(get(obj) == wanted)


def _get_objects(
    serializer: Callable[[Any], dict[str, Any]], objects: list[Any], max_count: Any
) -> list[dict[str, Any]]:
    """Patchwork's ``_get_objects``: the first ``max_count``, or the last ``-max_count``."""
    if max_count > 0:
        return [serializer(x) for x in objects[:max_count]]
    if max_count < 0:
        min_count = len(objects) + max_count
        if min_count < 0:
            raise ValueError("Negative indexing is not supported.")
        return [serializer(x) for x in objects[min_count:]]
    return [serializer(x) for x in objects]


class _XmlRpcDocs(SimpleXMLRPCDispatcher, XMLRPCDocGenerator):
    """The page a GET shows, made as Patchwork makes it."""

    def __init__(self, funcs: Mapping[str, Callable[..., Any]]) -> None:
        SimpleXMLRPCDispatcher.__init__(self, allow_none=False, encoding=None)
        XMLRPCDocGenerator.__init__(self)
        self.funcs.update(funcs)


class _XmlRpc:
    """Patchwork's XML-RPC API over a fake: its dispatcher and methods.

    Methods are plain functions of Patchwork's names and signatures (a wrong
    number of arguments is the same TypeError), their answers Patchwork's
    dicts (``str(...).encode()`` values go out as base64, as Patchwork's
    do), their failures Patchwork's (Django's exceptions in a fault, down
    to the ``None`` that ``allow_none=False`` cannot send).  Writes go
    through the fake's mutation methods, so they emit Patchwork's events.
    """

    def __init__(self, fake: FakePatchwork) -> None:
        self.fake = fake
        #: name -> (authentication required, function)
        self.methods: dict[str, tuple[bool, Callable[..., Any]]] = {}
        self._define()

    # The wire

    def view(self, request: web.Request, raw_body: bytes) -> web.Response:
        """Patchwork's ``views.xmlrpc.xmlrpc``: POST calls, GET documents, the rest
        go to the project list."""

        def html(status: int = 200, text: str = "", location: str | None = None) -> web.Response:
            headers = {} if location is None else {"Location": location}
            return web.Response(
                status=status, text=text, headers=headers, content_type="text/html", charset="utf-8"
            )

        if request.path != XMLRPC_PATH:  # Django's APPEND_SLASH
            raw = request.rel_url.raw_query_string
            return html(301, location=XMLRPC_PATH + (f"?{raw}" if raw else ""))
        if request.method not in ("POST", "GET"):
            return html(302, location="/")
        if request.method == "GET":
            return html(text=self.documentation())
        try:
            return html(text=self.dispatch(request.headers.get("Authorization"), raw_body))
        except Exception:
            return html(500)

    @staticmethod
    def _dumps(obj: Any, methodresponse: bool = False) -> str:
        return xmlrpc.client.dumps(obj, methodresponse=methodresponse, allow_none=False)

    def dispatch(self, authorization: str | None, body: bytes) -> str:
        """``_marshaled_dispatch``: an answer, or any exception as fault 1."""
        try:
            params, method = xmlrpc.client.loads(body)
            response = self._dispatch(authorization, method, params)
            return self._dumps((response,), methodresponse=True)
        except xmlrpc.client.Fault as fault:
            return self._dumps(fault)
        except Exception as exc:
            return self._dumps(xmlrpc.client.Fault(1, f"{type(exc)}:{exc}"))

    def _dispatch(
        self, authorization: str | None, method: str | None, params: tuple[Any, ...]
    ) -> Any:
        if method not in list(self.methods):
            raise Exception(f'method "{method}" is not supported')
        auth_required, fn = self.methods[method]
        if auth_required:
            user = self._user_for_request(authorization)
            if not user:
                raise Exception("Invalid username/password")
            params = (user, *params)
        return fn(*params)

    def _user_for_request(self, auth_header: str | None) -> int | None:
        """HTTP Basic credentials, as ``django.contrib.auth.authenticate`` takes them:
        ``pw-<username>`` with ``tokens`` set, anything (the crawl's identity) without."""
        if auth_header is None or auth_header == "":
            raise Exception("No authentication credentials given")
        header = auth_header.strip()
        if not header.startswith("Basic "):
            raise Exception("Authentication scheme not supported")
        header = header[len("Basic ") :].strip()
        try:
            decoded = base64.b64decode(header.encode("ascii")).decode("ascii")
            username, password = decoded.split(":", 1)
        except ValueError:
            raise Exception("Invalid authentication credentials") from None
        if self.fake.tokens is None:
            return self.fake.identity
        for user in self.fake._objects["users"].values():
            if user["username"] == username and password == f"pw-{username}":
                return int(user["id"])
        return None

    def documentation(self) -> str:
        return str(
            _XmlRpcDocs(
                {k: fn for k, (_, fn) in self.methods.items()}
            ).generate_html_documentation()
        )

    # Lookups

    def _get(self, model: str, res: str, value: Any) -> dict[str, Any]:
        """``Model.objects.get(id=value)``."""
        number = _django_int(value)
        obj = None if number is None else self.fake._objects[res].get(number)
        if obj is None:
            raise _DOES_NOT_EXIST[model](f"{model} matching query does not exist.")
        return obj

    def _first(self, res: str, value: Any) -> dict[str, Any]:
        """``Model.objects.filter(id=value)[0]``."""
        number = _django_int(value)
        obj = None if number is None else self.fake._objects[res].get(number)
        if obj is None:
            raise IndexError("list index out of range")
        return obj

    def _state(self, value: Any) -> State:
        number = _django_int(value)
        for state in self.fake.states:
            if state.id == number:
                return state
        raise _DOES_NOT_EXIST["State"]("State matching query does not exist.")

    def _ordered(self, res: str) -> list[dict[str, Any]]:
        """Objects in their model's ordering (none: by id)."""
        objects = self.fake._objects[res].values()
        if res == "projects":
            return sorted(objects, key=lambda p: (p["link_name"], p["id"]))
        if res == "patches":
            return sorted(objects, key=lambda p: (p["_date"], p["id"]))
        return sorted(objects, key=operator.itemgetter("id"))

    def _states(self) -> list[State]:
        return sorted(self.fake.states, key=lambda s: (s.ordering, s.id))

    def _unique_checks(self, patch_id: int) -> list[dict[str, Any]]:
        """``Patch.filter_unique_checks``: each (user, context)'s latest check."""
        checks = [
            self.fake._objects["checks"][i] for i in self.fake._children["checks"].get(patch_id, [])
        ]
        unique: dict[tuple[int, str], dict[str, Any]] = {}
        duplicates = set()
        for check in checks:
            key = (check["user"], check["context"])
            if key in unique:
                if unique[key]["_date"] > check["_date"]:
                    duplicates.add(check["id"])
                    continue
                duplicates.add(unique[key]["id"])
            unique[key] = check
        return [c for c in checks if c["id"] not in duplicates]

    # Serializers

    def _user_str(self, user_id: int | None) -> str:
        return "None" if user_id is None else str(self.fake._objects["users"][user_id]["username"])

    def _person_str(self, person_id: int) -> str:
        person = self.fake._objects["people"][person_id]
        return f"{person['name']} <{person['email']}>" if person["name"] else str(person["email"])

    @staticmethod
    def _project_to_dict(obj: dict[str, Any]) -> dict[str, Any]:
        return {"id": obj["id"], "linkname": obj["link_name"], "name": obj["name"]}

    def _person_to_dict(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": obj["id"],
            "email": obj["email"],
            "name": obj["name"] if obj["name"] is not None else obj["email"],
            "user": self._user_str(obj["user"]).encode("utf-8"),
        }

    def _patch_to_dict(self, obj: dict[str, Any]) -> dict[str, Any]:
        state = self.fake.state(obj["state"])
        return {
            "id": obj["id"],
            "date": str(obj["_date"]).encode("utf-8"),
            "filename": _FILENAME.sub("-", str(obj["name"])).strip("-"),
            "msgid": obj["msgid"],
            "name": obj["name"],
            "project": str(self.fake._objects["projects"][obj["project"]]["name"]).encode("utf-8"),
            "project_id": obj["project"],
            "state": state.name.encode("utf-8"),
            "state_id": state.id,
            "archived": obj["archived"],
            "submitter": self._person_str(obj["submitter"]).encode("utf-8"),
            "submitter_id": obj["submitter"],
            "delegate": self._user_str(obj["delegate"]).encode("utf-8"),
            "delegate_id": obj["delegate"] or 0,
            "commit_ref": obj["commit_ref"] or "",
            "hash": obj["hash"] or "",
        }

    @staticmethod
    def _state_to_dict(obj: State) -> dict[str, Any]:
        return {"id": obj.id, "name": obj.name}

    def _check_to_dict(self, obj: dict[str, Any]) -> dict[str, Any]:
        patch = self.fake._objects["patches"][obj["_patch"]]
        return {
            "id": obj["id"],
            "date": str(obj["_date"]).encode("utf-8"),
            "patch": str(patch["name"]).encode("utf-8"),
            "patch_id": obj["_patch"],
            "user": self._user_str(obj["user"]).encode("utf-8"),
            "user_id": obj["user"],
            "state": obj["state"],
            "target_url": obj["target_url"],
            "description": obj["description"],
            "context": obj["context"],
        }

    def _patch_to_mbox(self, patch: dict[str, Any]) -> str:
        """``views.utils.patch_to_mbox``, as the mbox download makes it."""
        return self.fake._submission_mbox("patches", patch)

    # The methods

    def _register(self, auth: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            fn.__qualname__ = fn.__name__  # TypeErrors name it as Patchwork's
            self.methods[fn.__name__] = (auth, fn)
            return fn

        return wrap

    def _define(self) -> None:
        fake = self.fake
        o = fake._objects
        register = self._register

        @register()
        def pw_rpc_version() -> Any:
            """Return Patchwork XML-RPC interface version."""
            return (1, 3, 0)

        @register()
        def project_list(search_str: Any = None, max_count: Any = 0) -> Any:
            """List projects matching a given linkname filter."""
            projects = self._ordered("projects")
            if search_str:
                projects = [p for p in projects if _like("icontains", search_str, p["link_name"])]
            return _get_objects(self._project_to_dict, projects, max_count)

        @register()
        def project_get(project_id: Any) -> Any:
            """Get a project by its ID."""
            try:
                return self._project_to_dict(self._get("Project", "projects", project_id))
            except _DOES_NOT_EXIST["Project"]:
                return {}

        @register()
        def person_list(search_str: Any = None, max_count: Any = 0) -> Any:
            """List persons matching a given name or email filter."""
            people = self._ordered("people")
            if search_str:
                people = [
                    p
                    for p in people
                    if _like("icontains", search_str, p["name"])
                    or _like("icontains", search_str, p["email"])
                ]
            return _get_objects(self._person_to_dict, people, max_count)

        @register()
        def person_get(person_id: Any) -> Any:
            """Get a person by its ID."""
            try:
                return self._person_to_dict(self._get("Person", "people", person_id))
            except _DOES_NOT_EXIST["Person"]:
                return {}

        @register()
        def patch_list(filt: Any = None) -> Any:
            """List patches matching all of a given set of filters."""
            if filt is None:
                filt = {}
            ok_fields = [
                "id",
                "name",
                "project_id",
                "submitter_id",
                "delegate_id",
                "archived",
                "state_id",
                "date",
                "commit_ref",
                "hash",
                "msgid",
                "max_count",
            ]
            dfilter: dict[str, Any] = {}
            max_count = 0
            for key in filt:
                parts = key.split("__")
                if parts[0] not in ok_fields:
                    return []
                if len(parts) > 1 and LOOKUP_TYPES.count(parts[1]) == 0:
                    return []
                try:
                    if parts[0] == "project_id":
                        dfilter["project"] = self._get("Project", "projects", filt[key])
                    elif parts[0] == "submitter_id":
                        dfilter["submitter"] = self._get("Person", "people", filt[key])
                    elif parts[0] == "delegate_id":
                        dfilter["delegate"] = self._get("Person", "people", filt[key])
                    elif parts[0] == "state_id":
                        dfilter["state"] = self._state(filt[key])
                    elif parts[0] == "max_count":
                        max_count = filt[key]
                    else:
                        dfilter[key] = filt[key]
                except (
                    _DOES_NOT_EXIST["Project"],
                    _DOES_NOT_EXIST["Person"],
                    _DOES_NOT_EXIST["State"],
                ):
                    return []
            tests: list[Callable[[dict[str, Any]], bool]] = []
            for key, value in dfilter.items():
                if key in ("project", "submitter"):
                    tests.append(_where(operator.itemgetter(key), value["id"]))
                elif key == "state":
                    tests.append(_where(operator.itemgetter("state"), value.slug))
                elif key == "delegate":
                    # ``Patch.delegate`` is a User: Django refuses a Person.
                    person = self._person_str(value["id"])
                    raise ValueError(f'Cannot query "{person}": Must be "User" instance.')
                else:
                    name, *lookups = key.split("__")
                    tests.append(_matcher(_PATCH_COLUMNS[name], lookups, value))
            patches = [p for p in self._ordered("patches") if all(t(p) for t in tests)]
            return _get_objects(self._patch_to_dict, patches, max_count)

        def get_patch(patch_id: Any) -> dict[str, Any]:
            return self._get("Patch", "patches", patch_id)

        def get_patch_by(**wanted: Any) -> dict[str, Any]:
            found = [
                p for p in self._ordered("patches") if all(p[k] == v for k, v in wanted.items())
            ]
            if not found:
                raise _DOES_NOT_EXIST["Patch"]("Patch matching query does not exist.")
            if len(found) > 1:
                raise _MULTIPLE_PATCHES(
                    f"get() returned more than one Patch -- it returned {len(found)}!"
                )
            return found[0]

        @register()
        def patch_get(patch_id: Any) -> Any:
            """Get a patch by its ID."""
            try:
                return self._patch_to_dict(get_patch(patch_id))
            except _DOES_NOT_EXIST["Patch"]:
                return {}

        @register()
        def patch_get_by_hash(hash: Any) -> Any:
            """Get a patch by its hash."""
            try:
                return self._patch_to_dict(get_patch_by(hash=_char(hash)))
            except _DOES_NOT_EXIST["Patch"]:
                return {}

        @register()
        def patch_get_by_project_hash(project: Any, hash: Any) -> Any:
            """Get a patch by its project and hash."""
            linkname = _char(project)
            ids = [p["id"] for p in o["projects"].values() if p["link_name"] == linkname]
            try:
                if not ids:
                    raise _DOES_NOT_EXIST["Patch"]("Patch matching query does not exist.")
                return self._patch_to_dict(get_patch_by(project=ids[0], hash=_char(hash)))
            except _DOES_NOT_EXIST["Patch"]:
                return {}

        @register()
        def patch_get_mbox(patch_id: Any) -> Any:
            """Get a patch by its ID in mbox format."""
            try:
                return self._patch_to_mbox(get_patch(patch_id))
            except _DOES_NOT_EXIST["Patch"]:
                return ""

        @register()
        def patch_get_diff(patch_id: Any) -> Any:
            """Get a patch by its ID in diff format."""
            try:
                return get_patch(patch_id)["diff"]
            except _DOES_NOT_EXIST["Patch"]:
                return ""

        @register(auth=True)
        def patch_set(user: int, patch_id: Any, params: Any) -> Any:
            """Set fields of a patch (state, commit_ref, archived)."""
            ok_params = ["state", "commit_ref", "archived"]
            patch = get_patch(patch_id)
            if not fake._patch_editable(patch, user):
                raise Exception("No permissions to edit this patch")
            changes: dict[str, Any] = {}
            for k, v in params.items():
                if k not in ok_params:
                    continue
                changes[k] = self._state(v) if k == "state" else v
            # ``patch.save()``: each field's value as the database takes it.
            if "archived" in changes:
                if changes["archived"] is None:
                    raise _IntegrityErr("NOT NULL constraint failed: patchwork_patch.archived")
                changes["archived"] = _django_bool(changes["archived"])
            if "commit_ref" in changes:
                changes["commit_ref"] = _char(changes["commit_ref"])
            if "state" in changes:
                fake.set_state(patch["id"], changes["state"].id, user)
            if "commit_ref" in changes:
                fake.set_commit_ref(patch["id"], changes["commit_ref"])
            if "archived" in changes:
                fake.set_archived(patch["id"], changes["archived"])
            return True

        @register()
        def state_list(search_str: Any = None, max_count: Any = 0) -> Any:
            """List states matching a given name filter."""
            states = self._states()
            if search_str:
                states = [s for s in states if _like("icontains", search_str, s.name)]
            return _get_objects(self._state_to_dict, states, max_count)

        @register()
        def state_get(state_id: Any) -> Any:
            """Get a state by its ID."""
            try:
                return self._state_to_dict(self._state(state_id))
            except _DOES_NOT_EXIST["State"]:
                return {}

        @register()
        def check_list(filt: Any = None) -> Any:
            """List checks matching all of a given set of filters."""
            if filt is None:
                filt = {}
            ok_fields = ["id", "user", "project_id", "patch_id", "max_count"]
            dfilter: dict[str, Any] = {}
            max_count = 0
            for key in filt:
                parts = key.split("__")
                if parts[0] not in ok_fields:
                    return []
                if len(parts) > 1 and LOOKUP_TYPES.count(parts[1]) == 0:
                    return []
                # (Patchwork's ``user_id`` branch is unreachable: not an ok field.)
                if parts[0] == "project_id":
                    dfilter["patch__project"] = self._first("projects", filt[key])
                elif parts[0] == "patch_id":
                    dfilter["patch"] = self._first("patches", filt[key])
                elif parts[0] == "max_count":
                    max_count = filt[key]
                else:
                    dfilter[key] = filt[key]
            tests: list[Callable[[dict[str, Any]], bool]] = []
            for key, value in dfilter.items():
                if key == "patch__project":
                    tests.append(
                        _where(lambda c: o["patches"][c["_patch"]]["project"], value["id"])
                    )
                elif key == "patch":
                    tests.append(_where(operator.itemgetter("_patch"), value["id"]))
                else:
                    name, *lookups = key.split("__")
                    tests.append(_matcher(_CHECK_COLUMNS[name], lookups, value))
            checks = [c for c in self._ordered("checks") if all(t(c) for t in tests)]
            return _get_objects(self._check_to_dict, checks, max_count)

        @register()
        def check_get(check_id: Any) -> Any:
            """Get a check by its ID."""
            try:
                return self._check_to_dict(self._get("Check", "checks", check_id))
            except _DOES_NOT_EXIST["Check"]:
                return {}

        @register(auth=True)
        def check_create(
            user: int,
            patch_id: Any,
            context: Any,
            state: Any,
            target_url: Any = "",
            description: Any = "",
        ) -> Any:
            """Add a Check to a patch."""
            patch = get_patch(patch_id)
            if not fake._patch_editable(patch, user):
                raise Exception("No permissions to edit this patch")
            if not any(state == label for label in CHECK_STATES):
                raise Exception(f"Invalid check state: {state}")
            if context is None:
                raise _IntegrityErr("NOT NULL constraint failed: patchwork_check.context")

            fake.add_check(
                patch["id"], user, state, str(context), _char(target_url), _char(description)
            )
            return True

        @register()
        def patch_check_get(patch_id: Any) -> Any:
            """Get a patch's combined checks by its ID."""
            try:
                patch = get_patch(patch_id)
            except _DOES_NOT_EXIST["Patch"]:
                return {}
            checks = self._unique_checks(patch["id"])
            states = {c["state"] for c in checks}
            combined = next((s for s in ("fail", "warning", "pending") if s in states), "success")
            return {
                "state": combined if states else "pending",
                "total": len(checks),
                "checks": [self._check_to_dict(c) for c in checks],
            }
