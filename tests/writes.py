"""Randomized writes through the store, of what the sync writes (patch
states, checks, comments, renames, new and deleted objects): for the
tests that follow changes (caches, the change feed)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import orjson

from mirror.store import Batch

STATES = ("new", "under-review", "accepted", "rejected", "superseded", "changes-requested")


def mirror_ids(path: Path, table: str, where: str = "") -> list[int]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute(f"SELECT id FROM {table} {where} ORDER BY id")]


def stored_doc(path: Path, table: str, obj_id: int) -> dict:
    with sqlite3.connect(path) as db:
        doc, detail = db.execute(
            f"SELECT doc, detail FROM {table} WHERE id = ?", (obj_id,)
        ).fetchone()
    found = orjson.loads(doc)
    found.update(orjson.loads(detail) if detail else {})
    return found


class Writer:
    """Randomized writes, through the store, of what the sync writes."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path = path
        self.rng = rng
        self.next_id = 900_000
        #: Patches a series or an event already names, not yet mirrored.
        self.to_come: list[int] = []

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def batch(self) -> tuple[Batch, str]:
        rng, path = self.rng, self.path
        patches = mirror_ids(path, "patches")
        batch = Batch()
        kind = rng.choice(
            [
                "state",
                "state",
                "archive",
                "check",
                "check",
                "comment",
                "rename person",
                "rename patch",
                "redate patch",
                "move patch",
                "rename project",
                "rename series",
                "new patch",
                "new patch",
                "named before it comes",
                "delete check",
                "delete patch",
            ]
        )
        patch = rng.choice(patches)
        if kind == "state":
            batch.add("patches", {"id": patch, "state": rng.choice(STATES)})
        elif kind == "archive":
            doc = stored_doc(path, "patches", patch)
            batch.add("patches", {"id": patch, "archived": not doc["archived"]})
        elif kind == "check":
            check = stored_doc(path, "checks", rng.choice(mirror_ids(path, "checks")))
            check.update(id=self.new_id(), patch=patch, state=rng.choice(["success", "fail"]))
            batch.add("checks", check)
            batch.add("patches", {"id": patch, "check": check["state"]})
        elif kind == "comment":
            comment = stored_doc(
                path, "patch_comments", rng.choice(mirror_ids(path, "patch_comments"))
            )
            comment.update(id=self.new_id(), patch=patch, msgid=f"<{self.next_id}@example>")
            batch.add("patch_comments", comment)
        elif kind == "rename person":
            person = rng.choice(mirror_ids(path, "people"))
            batch.add("people", {"id": person, "name": f"Renamed {self.new_id()}"})
        elif kind == "rename patch":
            batch.add("patches", {"id": patch, "name": f"[PATCH] renamed {self.new_id()}"})
        elif kind == "redate patch":
            # (Onto another's date: a tie, broken by id.)
            other = stored_doc(path, "patches", rng.choice(patches))
            batch.add("patches", {"id": patch, "date": other["date"]})
        elif kind == "move patch":
            doc = stored_doc(path, "patches", patch)
            batch.add("patches", {"id": patch, "project": 3 - doc["project"]})
        elif kind == "rename project":
            batch.add("projects", {"id": rng.choice([1, 2]), "name": f"Project {self.new_id()}"})
        elif kind == "rename series":
            series = rng.choice(mirror_ids(path, "series"))
            batch.add("series", {"id": series, "name": f"Series {self.new_id()}"})
        elif kind == "named before it comes":
            # (The sync may read a series, or an event, before its patch.)
            series = stored_doc(path, "series", rng.choice(mirror_ids(path, "series")))
            coming = self.new_id()
            self.to_come.append(coming)
            batch.add("series", {"id": series["id"], "patches": [*series["patches"], coming]})
            event = {"id": self.new_id(), "category": "patch-created", "project": 1}
            event.update(date="2030-01-01T00:00:00", actor=None, patch=coming)
            batch.add("events", event)
        elif kind == "new patch":
            doc = stored_doc(path, "patches", patch)
            new = self.to_come.pop() if self.to_come else self.new_id()
            doc.update(
                id=new,
                msgid=f"<{new}@example>",
                name=f"[PATCH] new {new}",
                date=f"2030-01-01T00:00:{new % 60:02d}",
                hash=f"{new:040x}",
            )
            batch.add("patches", doc)
        elif kind == "delete check":
            batch.deletions.append(("checks", rng.choice(mirror_ids(path, "checks"))))
        else:
            batch.deletions.append(("patches", patch))
        return batch, kind
