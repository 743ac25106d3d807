"""The fake's data: Patchwork's objects, ids, clock, events and identities,
and the changes tests make to them, made as Patchwork makes them.

Objects are kept as rows, with references (ids) instead of embedded
copies (``patchwork/models.py``), so an answer rendered from them always
shows the referenced objects' current values.  Changes emit events where
Patchwork 3.x's signal handlers emit them (``patchwork/signals.py``) and
nowhere else, and deletions cascade as the models' foreign keys do.  Who
a request's credentials stand for is DRF's Basic and Token
authentication; who may edit a patch is ``Patch.is_editable``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from tests.fake.api import _Http

#: The crawl's identity: any token stands for it unless told otherwise.
CIBOT = 4


class State(NamedTuple):
    """A patch state as Patchwork's ``State`` model has it."""

    id: int
    slug: str
    name: str
    ordering: int


DEFAULT_STATES = tuple(
    State(i + 1, slug, name, i)
    for i, (slug, name) in enumerate(
        [
            ("new", "New"),
            ("under-review", "Under Review"),
            ("accepted", "Accepted"),
            ("rejected", "Rejected"),
            ("rfc", "RFC"),
            ("not-applicable", "Not Applicable"),
            ("changes-requested", "Changes Requested"),
            ("awaiting-upstream", "Awaiting Upstream"),
            ("superseded", "Superseded"),
            ("deferred", "Deferred"),
        ]
    )
)

CHECK_STATES = {"pending": 0, "success": 1, "warning": 2, "fail": 3}

#: Resource name -> the model Patchwork names in its 404 ``detail``.
MODELS = {
    "projects": "Project",
    "people": "Person",
    "users": "User",
    "patches": "Patch",
    "covers": "Cover",
    "series": "Series",
    "bundles": "Bundle",
    "patch-comments": "PatchComment",
    "cover-comments": "CoverComment",
    "checks": "Check",
}
RESOURCES = (*MODELS, "events")

#: Sub-resource -> (parent resource, the field naming the parent).
PARENTS = {
    "patch-comments": ("patches", "_patch"),
    "checks": ("patches", "_patch"),
    "cover-comments": ("covers", "_cover"),
}


def _names(text: str) -> tuple[str, ...]:
    """A key order written as one string of names."""
    return tuple(text.split())


#: Fields derived at render time: not stored, whatever the recording says.
DERIVED = {
    "projects": ("url",),
    "people": ("url",),
    "users": ("url",),
    "patches": _names("url web_url list_archive_url mbox series comments check checks related"),
    "covers": _names("url web_url list_archive_url mbox series comments"),
    "series": _names("url web_url received_total received_all mbox patches dependents"),
    "bundles": _names("url web_url mbox"),
    "patch-comments": _names("url web_url list_archive_url"),
    "cover-comments": _names("url web_url list_archive_url"),
    "checks": ("url",),
}

#: Payload keys per event category, in the order Patchwork renders them.
EVENT_PAYLOADS = {
    "cover-created": ("cover",),
    "patch-created": ("patch",),
    "patch-completed": ("patch", "series"),
    "patch-state-changed": ("patch", "previous_state", "current_state"),
    "patch-delegated": ("patch", "previous_delegate", "current_delegate"),
    "patch-relation-changed": ("patch", "previous_relation", "current_relation"),
    "check-created": ("patch", "check"),
    "series-created": ("series",),
    "series-completed": ("series",),
    "cover-comment-created": ("cover", "comment"),
    "patch-comment-created": ("patch", "comment"),
}

#: Fields a user's detail shows only to that user.
SELF_ONLY = ("settings",)
DEFAULT_SETTINGS = {"send_email": False, "items_per_page": 100, "show_ids": False}

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ilower(text: str) -> str:
    """SQLite's LIKE folds only ASCII letters: so do we."""
    return text.translate(_ASCII_LOWER)


def _iso(value: dt.datetime) -> str:
    """Django REST framework's date format: Python's ``isoformat()``."""
    return value.isoformat()


def _parse_date(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _subject(name: str) -> str:
    """The mail subject a patch name comes from: '[1/2] x' <- '[PATCH 1/2] x'."""
    return f"[PATCH {name[1:]}" if name.startswith("[") else f"[PATCH] {name}"


class Store:
    """Patchwork's data in memory, and the changes tests make to it.

    Every public method takes the lock, so tests may change the fake while
    its application serves requests in another thread.
    """

    def __init__(self, states: Iterable[State] = DEFAULT_STATES) -> None:
        self._lock = threading.RLock()
        self.states = tuple(states)
        self._objects: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._next_id: dict[str, int] = dict.fromkeys(RESOURCES, 1)
        # Indexes of children, kept in ascending id order.
        self._series_patches: dict[int, list[int]] = {}
        self._children: dict[str, dict[int, list[int]]] = {r: {} for r in PARENTS}
        self._relations: dict[int, set[int]] = {}
        self._next_relation = 1
        self._clock = dt.datetime(2000, 1, 1)
        self._mail_clock = dt.datetime(2000, 1, 1)
        #: Token -> user id; ``None``: any token is the crawl's identity.
        self.tokens: dict[str, int] | None = None
        #: The user any token stands for when ``tokens`` is None: the
        #: crawl's identity (the owner of a private bundle it saw, else 4).
        self.identity = CIBOT

    def _new_relation(self, members: set[int]) -> int:
        rid = self._next_relation
        self._next_relation += 1
        self._relations[rid] = set(members)
        return rid

    def _store(self, res: str, obj: dict[str, Any]) -> None:
        """Add an object and keep the child indexes."""
        obj_id = obj["id"]
        self._objects[res][obj_id] = obj
        self._next_id[res] = max(self._next_id[res], obj_id + 1)
        if res == "patches" and obj["_series"] is not None:
            members = self._series_patches.setdefault(obj["_series"], [])
            members.append(obj_id)
            members.sort()
        elif res == "series":
            order = obj.pop("_patch_order", None)
            for number, pid in enumerate(order or (), 1):
                self._objects["patches"][pid]["_number"] = number
            if obj["cover_letter"] is not None:
                self._objects["covers"][obj["cover_letter"]]["_series"] = obj_id
        elif res in PARENTS:
            parent = obj[PARENTS[res][1]]
            self._children[res].setdefault(parent, []).append(obj_id)
            self._children[res][parent].sort()

    def state(self, value: str | int) -> State:
        """A state by id, slug or name (as Patchwork's state filter reads)."""
        for state in self.states:
            if value in (state.id, state.slug) or (
                isinstance(value, str) and _ilower(value) == _ilower(state.name)
            ):
                return state
        raise KeyError(value)

    # ------------------------------------------------------------------
    # Identities: who a request is, and what they may see and edit

    def _identity(self, header: str | None) -> int | None:
        """The user an ``Authorization`` header stands for; None: anonymous.

        As DRF's Basic then Token authentication read it: other schemes
        are anonymous, malformed credentials a 403.  With ``tokens`` set,
        a token must be one of them and Basic credentials must be a
        username and ``pw-<username>``; without, any credentials stand for
        :attr:`identity`.
        """
        if not header:
            return None
        parts = header.encode("utf-8", "surrogateescape").split()
        if not parts:
            return None
        scheme = parts[0].lower()
        if scheme == b"basic":
            if len(parts) == 1:
                raise _Http(403, "Invalid basic header. No credentials provided.")
            if len(parts) > 2:
                raise _Http(
                    403, "Invalid basic header. Credentials string should not contain spaces."
                )
            try:
                raw = base64.b64decode(parts[1])
                try:
                    decoded = raw.decode("utf-8")
                except UnicodeDecodeError:
                    decoded = raw.decode("latin-1")
                username, password = decoded.split(":", 1)
            except (ValueError, binascii.Error):
                raise _Http(
                    403, "Invalid basic header. Credentials not correctly base64 encoded."
                ) from None
            if self.tokens is None:
                return self.identity
            for user in self._objects["users"].values():
                if user["username"] == username and password == f"pw-{username}":
                    return int(user["id"])
            raise _Http(403, "Invalid username/password.")
        if scheme != b"token":
            return None  # DRF ignores schemes it does not know
        if len(parts) == 1:
            raise _Http(403, "Invalid token header. No credentials provided.")
        if len(parts) > 2:
            raise _Http(403, "Invalid token header. Token string should not contain spaces.")
        try:
            token = parts[1].decode()
        except UnicodeDecodeError:
            raise _Http(
                403, "Invalid token header. Token string should not contain invalid characters."
            ) from None
        if self.tokens is None:
            return self.identity
        if token in self.tokens:
            return self.tokens[token]
        raise _Http(403, "Invalid token.")

    def _maintains(self, user: int | None, project_id: int) -> bool:
        return user is not None and user in self._objects["projects"][project_id]["maintainers"]

    def _person_user(self, person_id: int | None) -> int | None:
        person = self._objects["people"].get(person_id) if person_id is not None else None
        return None if person is None else person["user"]

    def _patch_editable(self, patch: dict[str, Any], user: int | None) -> bool:
        """``Patch.is_editable``: its submitter, its delegate, its maintainers."""
        if user is None:
            return False
        if user in (self._person_user(patch["submitter"]), patch["delegate"]):
            return True
        return self._maintains(user, patch["project"])

    def _visible_bundle(self, bundle: dict[str, Any], user: int | None) -> bool:
        return bool(bundle["public"]) or (user is not None and bundle["owner"] == user)

    # ------------------------------------------------------------------
    # The clock and new objects

    @property
    def now(self) -> dt.datetime:
        """The fake clock: the date of the latest event."""
        with self._lock:
            return self._clock

    def advance(self, seconds: float) -> None:
        """Move the fake clock forward (say, to age events)."""
        with self._lock:
            self._clock += dt.timedelta(seconds=seconds)

    def _tick(self) -> dt.datetime:
        self._clock += dt.timedelta(microseconds=2_347)
        return self._clock

    def _mail_date(self) -> dt.datetime:
        """A mail's Date: whole seconds, increasing, not after the clock."""
        self._mail_clock = max(
            self._mail_clock + dt.timedelta(seconds=1), self._clock.replace(microsecond=0)
        )
        return self._mail_clock

    def _new_id(self, res: str) -> int:
        obj_id = self._next_id[res]
        self._next_id[res] += 1
        return obj_id

    def _event(self, category: str, project: int, actor: int | None = None, **refs: Any) -> int:
        """Record an event as Patchwork's signal handlers do."""
        when = self._tick()
        event: dict[str, Any] = {
            "id": self._new_id("events"),
            "category": category,
            "project": project,
            "date": _iso(when),
            "_date": when,
            "actor": actor,
        }
        for key in EVENT_PAYLOADS[category]:
            event[key] = refs.get(key)
        self._store("events", event)
        return int(event["id"])

    def _require(self, res: str, obj_id: int | None) -> dict[str, Any]:
        if obj_id is None or obj_id not in self._objects[res]:
            raise KeyError(f"no {MODELS.get(res, res)} {obj_id}")
        return self._objects[res][obj_id]

    def add_person(self, name: str | None, email: str, user_id: int | None = None) -> int:
        """A new person (no event: people have none)."""
        with self._lock:
            if user_id is not None:
                self._require("users", user_id)
            person: dict[str, Any] = {
                "id": self._new_id("people"),
                "name": name,
                "email": email,
                "user": user_id,
            }
            self._store("people", person)
            return int(person["id"])

    def _submitter(self, submitter: int | tuple[str, str] | None) -> int:
        if isinstance(submitter, int):
            self._require("people", submitter)
            return submitter
        if submitter is None:
            number = self._next_id["people"]
            submitter = (f"Fake Submitter {number}", f"submitter{number}@example.org")
        return self.add_person(*submitter)

    def _mail(
        self, project: dict[str, Any], submitter: int, subject: str, kind: str, when: dt.datetime
    ) -> tuple[str, dict[str, str]]:
        person = self._objects["people"][submitter]
        domain = person["email"].rpartition("@")[2] or "example.org"
        # Like the recorded ones: a (UTC) timestamp, whatever the local zone.
        stamp = when.replace(tzinfo=dt.UTC).timestamp()
        msgid = f"<{stamp:.0f}.{self._clock.microsecond:06d}-{kind}@{domain}>"
        sender = f"{person['name']} <{person['email']}>" if person["name"] else person["email"]
        headers = {
            "From": sender,
            "Subject": subject,
            "Date": email.utils.format_datetime(when),
            "Message-Id": msgid,
            "List-Id": f"<{project['list_id']}>",
            "To": project["list_email"],
        }
        return msgid, headers

    def new_series(
        self,
        project_id: int,
        submitter_id: int | tuple[str, str] | None = None,
        *,
        n_patches: int = 3,
        cover: bool = True,
        name: str | None = None,
        version: int = 1,
        total: int | None = None,
    ) -> dict[str, Any]:
        """A series arriving by mail, with Patchwork's events in its order.

        ``submitter_id``: a person id, or (name, email) of a new person, or
        None for a new person.  With ``total`` above ``n_patches`` the
        series stays incomplete (see :meth:`add_series_patch`).

        Events, as the recorded instance emitted them: with a cover,
        series-created, cover-created, then per patch patch-created and
        patch-completed, then series-completed; without one the first
        patch's patch-created comes before series-created.  Returns the
        ids: ``series``, ``cover`` (or None), ``patches``, ``submitter``,
        ``events``.
        """
        with self._lock:
            self._require("projects", project_id)
            person = self._submitter(submitter_id)
            total = max(total or n_patches, n_patches)
            series_id = self._next_id["series"]
            subject = name or f"Fake change {series_id}"
            first_event = self._next_id["events"]
            cover_id = None
            series: dict[str, Any] = {
                "id": self._new_id("series"),
                "project": project_id,
                "name": None,
                "date": None,
                "submitter": person,
                "version": version,
                "total": total,
                "cover_letter": None,
                "dependencies": [],
                "_subject": subject,
            }
            if cover:
                when = self._mail_date()
                series["date"], series["_date"] = _iso(when), when
                series["name"] = subject
                self._store("series", series)
                self._event("series-created", project_id, series=series_id)
                cover_id = self._new_cover(series, subject, when)
            patch_ids = []
            for number in range(1, n_patches + 1):
                patch_ids.append(self._new_patch(series, number, subject, cover_id))
            return {
                "series": series_id,
                "cover": cover_id,
                "patches": patch_ids,
                "submitter": person,
                "events": list(range(first_event, self._next_id["events"])),
            }

    def add_series_patch(self, series_id: int, number: int | None = None) -> int:
        """One more patch of a series (the next number unless told)."""
        with self._lock:
            series = self._require("series", series_id)
            members = self._series_patches.get(series_id, [])
            numbers = {self._objects["patches"][p]["_number"] for p in members}
            if number is None:
                number = max((n for n in numbers if n), default=0) + 1
            if number in numbers:
                raise ValueError(f"series {series_id} has a patch {number} already")
            subject = series.get("_subject") or (series["name"] or "").split("] ", 1)[-1]
            return self._new_patch(series, number, subject, series["cover_letter"])

    def _prefix(self, series: dict[str, Any], number: int | None) -> str:
        parts = [f"v{series['version']}"] if series["version"] > 1 else []
        if number is not None and series["total"] > 1:
            parts.append(f"{number}/{series['total']}")
        return f"[{','.join(parts)}] " if parts else ""

    def _new_cover(self, series: dict[str, Any], subject: str, when: dt.datetime) -> int:
        project = self._objects["projects"][series["project"]]
        name = self._prefix(series, 0) + subject
        msgid, headers = self._mail(project, series["submitter"], _subject(name), "cover", when)
        cover = {
            "id": self._new_id("covers"),
            "project": series["project"],
            "msgid": msgid,
            "date": _iso(when),
            "_date": when,
            "name": name,
            "submitter": series["submitter"],
            "headers": headers,
            "content": f"This series changes {series['total']} files.",
            "_series": None,
        }
        self._store("covers", cover)
        series["cover_letter"] = cover["id"]
        cover["_series"] = series["id"]
        self._event("cover-created", series["project"], cover=cover["id"])
        return int(cover["id"])

    def _new_patch(
        self, series: dict[str, Any], number: int, subject: str, cover_id: int | None
    ) -> int:
        """Patchwork's parser: create the patch, then add it to its series."""
        project_id = series["project"]
        project = self._objects["projects"][project_id]
        when = self._mail_date()
        name = self._prefix(series, number) + f"{subject} (part {number})"
        msgid, headers = self._mail(
            project, series["submitter"], _subject(name), f"patch{number}", when
        )
        if cover_id is not None:
            cover_msgid = self._objects["covers"][cover_id]["msgid"]
            headers = {
                **{k: v for k, v in headers.items() if k not in ("List-Id", "To")},
                "In-Reply-To": cover_msgid,
                "References": cover_msgid,
                "List-Id": headers["List-Id"],
                "To": headers["To"],
            }
        diff = (
            f"diff --git a/fake/file{number}.txt b/fake/file{number}.txt\n"
            f"--- a/fake/file{number}.txt\n+++ b/fake/file{number}.txt\n"
            f"@@ -1 +1 @@\n-old {series['id']}.{number}\n+new {series['id']}.{number}\n"
        )
        patch = {
            "id": self._new_id("patches"),
            "project": project_id,
            "msgid": msgid,
            "date": _iso(when),
            "_date": when,
            "name": name,
            "commit_ref": None,
            "pull_url": None,
            "state": self.states[0].slug,
            "archived": False,
            "hash": hashlib.sha1(diff.encode()).hexdigest(),
            "submitter": series["submitter"],
            "delegate": None,
            "tags": {},
            "headers": headers,
            "content": f"Signed-off-by: {headers['From']}\n---\n fake/file{number}.txt | 2 +-",
            "diff": diff,
            "prefixes": self._prefix(series, number).strip(" []").split(",")
            if self._prefix(series, number)
            else [],
            "_series": None,
            "_number": None,
            "_relation": None,
        }
        self._store("patches", patch)
        pid = int(patch["id"])
        self._event("patch-created", project_id, patch=pid)
        if series["id"] not in self._objects["series"]:
            # The first mail of a series without a cover creates it.
            series["date"], series["_date"] = _iso(when), when
            self._store("series", series)
            self._event("series-created", project_id, series=series["id"])
        members = self._series_patches.get(series["id"], [])
        received = len(members)
        numbers = {self._objects["patches"][p]["_number"] for p in members}
        # Series.add_patch: a series without a name takes its first patch's.
        if not series["name"] and number == 1:
            series["name"] = name
        # pre_save of the patch: patch-completed (if its predecessors are all
        # in), for it and the successors it completes; then series-completed.
        if all(n in numbers for n in range(1, number)):
            self._event("patch-completed", project_id, patch=pid, series=series["id"])
            successor = number + 1
            for other in sorted(members, key=lambda p: self._objects["patches"][p]["_number"] or 0):
                if self._objects["patches"][other]["_number"] == successor:
                    self._event("patch-completed", project_id, patch=other, series=series["id"])
                    successor += 1
        if received + 1 >= series["total"]:
            self._event("series-completed", project_id, series=series["id"])
        patch["_series"], patch["_number"] = series["id"], number
        self._series_patches.setdefault(series["id"], []).append(pid)
        self._series_patches[series["id"]].sort()
        return pid

    def add_patch_comment(
        self, patch_id: int, submitter_id: int | tuple[str, str] | None = None
    ) -> int:
        """A reply to a patch: patch-comment-created (no ``addressed``)."""
        with self._lock:
            return self._new_comment("patch-comments", patch_id, submitter_id)

    def add_cover_comment(
        self, cover_id: int, submitter_id: int | tuple[str, str] | None = None
    ) -> int:
        """A reply to a cover letter: cover-comment-created.

        Patch and cover comments are two tables: two id sequences.
        """
        with self._lock:
            return self._new_comment("cover-comments", cover_id, submitter_id)

    def _new_comment(
        self, res: str, parent_id: int, submitter: int | tuple[str, str] | None
    ) -> int:
        parent_res, parent_key = PARENTS[res]
        parent = self._require(parent_res, parent_id)
        person = self._submitter(submitter)
        project = self._objects["projects"][parent["project"]]
        when = self._mail_date()
        msgid, headers = self._mail(project, person, "", "reply", when)
        subject = "Re: " + parent["headers"].get("Subject", parent["name"])
        headers["Subject"] = subject
        headers = {
            **{k: v for k, v in headers.items() if k not in ("List-Id", "To")},
            "In-Reply-To": parent["msgid"],
            "References": parent["msgid"],
            "List-Id": headers["List-Id"],
            "To": headers["To"],
        }
        comment = {
            "id": self._new_id(res),
            "msgid": msgid,
            "date": _iso(when),
            "_date": when,
            "subject": subject,
            "submitter": person,
            "content": f"On {parent['headers'].get('Date', '')} someone wrote:\n\nLooks good.",
            "headers": headers,
            "addressed": None,
            parent_key: parent_id,
        }
        self._store(res, comment)
        self._comment_event(res, comment)
        return int(comment["id"])

    def _comment_event(self, res: str, comment: dict[str, Any]) -> None:
        parent_res, parent_key = PARENTS[res]
        parent_id = comment[parent_key]
        project = self._objects[parent_res][parent_id]["project"]
        if res == "patch-comments":
            self._event("patch-comment-created", project, patch=parent_id, comment=comment["id"])
        else:
            self._event("cover-comment-created", project, cover=parent_id, comment=comment["id"])

    def set_comment_addressed(self, kind: str, comment_id: int, value: bool | None) -> None:
        """Patchwork 3.x emits *-comment-created on every save of a comment."""
        with self._lock:
            res = "patch-comments" if kind in ("patch", "patch-comments") else "cover-comments"
            comment = self._require(res, comment_id)
            comment["addressed"] = value
            self._comment_event(res, comment)

    def add_check(
        self,
        patch_id: int,
        user_id: int,
        state: str,
        context: str = "default",
        target_url: str | None = None,
        description: str | None = None,
    ) -> int:
        """A check result: check-created, by the check's user."""
        with self._lock:
            patch = self._require("patches", patch_id)
            self._require("users", user_id)
            if state not in CHECK_STATES:
                raise ValueError(f"invalid check state {state!r}")
            when = self._tick()
            check: dict[str, Any] = {
                "id": self._new_id("checks"),
                "user": user_id,
                "date": _iso(when),
                "_date": when,
                "state": state,
                "target_url": target_url,
                "context": context,
                "description": description,
                "_patch": patch_id,
            }
            self._store("checks", check)
            self._event(
                "check-created", patch["project"], actor=user_id, patch=patch_id, check=check["id"]
            )
            return int(check["id"])

    def set_state(self, patch_id: int, state: str | int, actor_id: int | None = None) -> None:
        """patch-state-changed, if the state changes."""
        with self._lock:
            patch = self._require("patches", patch_id)
            new = self.state(state).slug
            old = patch["state"]
            if new == old:
                return
            patch["state"] = new
            self._event(
                "patch-state-changed",
                patch["project"],
                actor=actor_id,
                patch=patch_id,
                previous_state=old,
                current_state=new,
            )

    def set_delegate(self, patch_id: int, user_id: int | None, actor_id: int | None = None) -> None:
        """patch-delegated, if the delegate changes."""
        with self._lock:
            patch = self._require("patches", patch_id)
            if user_id is not None:
                self._require("users", user_id)
            old = patch["delegate"]
            if old == user_id:
                return
            patch["delegate"] = user_id
            self._event(
                "patch-delegated",
                patch["project"],
                actor=actor_id,
                patch=patch_id,
                previous_delegate=old,
                current_delegate=user_id,
            )

    def set_related(self, patch_ids: Iterable[int], actor_id: int | None = None) -> None:
        """Make ``patch_ids`` exactly one relation; one id alone leaves its relation.

        Patchwork emits patch-relation-changed for a patch whose relation
        (the row it points to) changes, not for patches whose list of
        related patches merely changes: a patch joining gets one, the
        members already in do not; a patch leaving gets one, the ones
        staying do not, except that a relation of two is deleted before the
        leaving patch is saved, so neither gets an event.  The first
        id is the patch edited (its events carry ``actor_id``); the others
        are saved as a side effect (actor null), before it, as Patchwork
        does.  Patches in two different relations conflict (Patchwork
        answers 409): remove them from one first.
        """
        with self._lock:
            ids = list(dict.fromkeys(patch_ids))
            patches = [self._require("patches", pid) for pid in ids]
            if len(ids) == 1:
                self._leave_relation(patches[0], actor_id)
                return
            relations = {p["_relation"] for p in patches if p["_relation"] is not None}
            if len(relations) > 1:
                raise ValueError("patches are in different relations; remove them first")
            rid = relations.pop() if relations else None
            if rid is not None:
                for pid in sorted(self._relations[rid] - set(ids)):
                    self._leave_relation(self._objects["patches"][pid], actor_id)
                rid = patches[0]["_relation"] or next(
                    (p["_relation"] for p in patches if p["_relation"]), None
                )
            if rid is None:
                rid = self._new_relation(set())
            edited, others = patches[0], sorted(patches[1:], key=lambda p: p["id"])
            for patch, actor in [*((p, None) for p in others), (edited, actor_id)]:
                self._relations[rid].add(patch["id"])
                if patch["_relation"] != rid:
                    patch["_relation"] = rid
                    self._event(
                        "patch-relation-changed",
                        patch["project"],
                        actor=actor,
                        patch=patch["id"],
                        previous_relation=None,
                        current_relation=None,
                    )

    def _leave_relation(self, patch: dict[str, Any], actor_id: int | None) -> None:
        rid = patch["_relation"]
        if rid is None:
            return
        members = self._relations[rid]
        if len(members) <= 2:
            # Patchwork deletes a relation that would keep one patch before
            # it saves the patch, which then shows no change: no event.
            for pid in members:
                self._objects["patches"][pid]["_relation"] = None
            del self._relations[rid]
            return
        members.discard(patch["id"])
        patch["_relation"] = None
        self._event(
            "patch-relation-changed",
            patch["project"],
            actor=actor_id,
            patch=patch["id"],
            previous_relation=None,
            current_relation=None,
        )

    # Changes without events -------------------------------------------

    # Patchwork's pre_save handlers compare only state, delegate, relation
    # and series: saving anything else emits nothing.

    def set_archived(self, patch_id: int, archived: bool = True) -> None:
        """Archive a patch (or bring it back): no event."""
        with self._lock:
            self._require("patches", patch_id)["archived"] = bool(archived)

    def set_commit_ref(self, patch_id: int, value: str | None) -> None:
        """The commit a patch was merged as: no event."""
        with self._lock:
            self._require("patches", patch_id)["commit_ref"] = value

    def set_pull_url(self, patch_id: int, value: str | None) -> None:
        """No event."""
        with self._lock:
            self._require("patches", patch_id)["pull_url"] = value

    def rename(self, resource: str, obj_id: int, name: str | None) -> None:
        """A new name for a patch, cover, series, bundle or project: no event,
        but every embedded copy shows it (they render at request time)."""
        if resource not in ("patches", "covers", "series", "bundles", "projects"):
            raise ValueError(f"cannot rename {resource}")
        with self._lock:
            self._require(resource, obj_id)["name"] = name

    def rename_person(self, person_id: int, name: str | None) -> None:
        """No event; submitters embedded everywhere show the new name."""
        with self._lock:
            self._require("people", person_id)["name"] = name

    def link_person(self, person_id: int, user_id: int | None) -> None:
        """Attach a person to a user account (or detach with None): no event."""
        with self._lock:
            if user_id is not None:
                self._require("users", user_id)
            self._require("people", person_id)["user"] = user_id

    #: Fields whose change Patchwork signals: use the setters instead.
    _SIGNALLED = {"state", "delegate", "related", "_relation", "_series", "_number"}

    def update(self, resource: str, obj_id: int, **fields: Any) -> None:
        """Change stored fields; none of these changes emits an event.

        Reference fields take ids (a project's ``maintainers``, a bundle's
        ``patches``, a person's ``user``...).  Derived fields (URLs, a
        patch's ``check``, a series' ``received_total``) cannot be set.
        """
        with self._lock:
            obj = self._require(resource, obj_id)
            for key, value in fields.items():
                if resource == "patches" and key in self._SIGNALLED:
                    raise ValueError(f"use the setter for a patch's {key}")
                if key in DERIVED.get(resource, ()) or key == "id":
                    raise ValueError(f"{resource}.{key} is derived")
                if key not in obj and not (resource == "users" and key in SELF_ONLY):
                    raise ValueError(f"{resource} have no field {key}")
                obj[key] = value
                if key == "date":
                    obj["_date"] = _parse_date(value)

    def create_bundle(
        self,
        project_id: int,
        owner_id: int,
        name: str,
        patch_ids: Iterable[int],
        public: bool = False,
    ) -> int:
        """A new bundle (no event)."""
        with self._lock:
            self._require("projects", project_id)
            self._require("users", owner_id)
            patches = [self._require("patches", pid)["id"] for pid in patch_ids]
            bundle: dict[str, Any] = {
                "id": self._new_id("bundles"),
                "project": project_id,
                "name": name,
                "owner": owner_id,
                "patches": patches,
                "public": public,
            }
            self._store("bundles", bundle)
            return int(bundle["id"])

    def delete_bundle(self, bundle_id: int) -> None:
        """No event (bundles have none)."""
        self.delete("bundles", bundle_id)

    # Deletions ----------------------------------------------------------

    def delete(self, resource: str, obj_id: int, *, detach: bool = False) -> None:
        """Delete an object and cascade as Patchwork's models do.

        A patch takes its comments, checks and events (and leaves series,
        bundles and its relation); a comment or check its events; a series
        its events and, as ``Patch.series`` cascades, its patches; a cover
        its comments, its events and, as ``Series.cover_letter`` cascades,
        its series with that series' patches.  With ``detach`` a series
        leaves its patches (their ``series`` empties) and a cover leaves its
        series (``cover_letter`` null) instead, as if those foreign keys
        were nullable: not what Patchwork does, but handy for tests.
        """
        with self._lock:
            self._require(resource, obj_id)
            self._delete(resource, obj_id, detach)

    def _delete(self, res: str, obj_id: int, detach: bool) -> None:
        o = self._objects
        obj = o[res].pop(obj_id, None)
        if obj is None:
            return
        if res == "patches":
            for child in ("patch-comments", "checks"):
                for cid in list(self._children[child].get(obj_id, [])):
                    self._delete(child, cid, detach)
                self._children[child].pop(obj_id, None)
            self._drop_events(lambda e: e.get("patch") == obj_id)
            siblings = self._series_patches.get(obj["_series"], [])
            if obj_id in siblings:
                siblings.remove(obj_id)
            for bundle in o["bundles"].values():
                if obj_id in bundle["patches"]:
                    bundle["patches"] = [p for p in bundle["patches"] if p != obj_id]
            if obj["_relation"] is not None:
                self._relations[obj["_relation"]].discard(obj_id)
        elif res == "covers":
            for cid in list(self._children["cover-comments"].get(obj_id, [])):
                self._delete("cover-comments", cid, detach)
            self._children["cover-comments"].pop(obj_id, None)
            self._drop_events(lambda e: e.get("cover") == obj_id)
            series_id = obj["_series"]
            if series_id is not None:
                if detach:
                    o["series"][series_id]["cover_letter"] = None
                else:
                    self._delete("series", series_id, detach)
        elif res == "series":
            self._drop_events(lambda e: e.get("series") == obj_id)
            for pid in list(self._series_patches.pop(obj_id, [])):
                if detach:
                    o["patches"][pid]["_series"] = None
                    o["patches"][pid]["_number"] = None
                else:
                    self._delete("patches", pid, detach)
            if obj["cover_letter"] is not None and obj["cover_letter"] in o["covers"]:
                o["covers"][obj["cover_letter"]]["_series"] = None
            for other in o["series"].values():
                if obj_id in other.get("dependencies", []):
                    other["dependencies"] = [d for d in other["dependencies"] if d != obj_id]
        elif res in PARENTS:
            parent = obj[PARENTS[res][1]]
            siblings = self._children[res].get(parent, [])
            if obj_id in siblings:
                siblings.remove(obj_id)
            if res == "checks":
                self._drop_events(lambda e: e.get("check") == obj_id)
            else:
                category = (
                    "patch-comment-created"
                    if res == "patch-comments"
                    else ("cover-comment-created")
                )
                self._drop_events(
                    lambda e: e["category"] == category and e.get("comment") == obj_id
                )
        elif res == "events" or res == "bundles":
            pass
        else:
            o[res][obj_id] = obj
            raise ValueError(f"cannot delete {res}")

    def _drop_events(self, doomed: Callable[[dict[str, Any]], bool]) -> None:
        events = self._objects["events"]
        for event_id in [i for i, e in events.items() if doomed(e)]:
            del events[event_id]

    def purge_events_before(self, date: dt.datetime | str) -> int:
        """Delete events older than ``date`` (Patchwork 4.0 purges by age)."""
        bound = _parse_date(date) if isinstance(date, str) else date
        with self._lock:
            before = len(self._objects["events"])
            self._drop_events(lambda e: e["_date"] < bound)
            return before - len(self._objects["events"])
