"""Small mirrors for query tests: a few stored documents in a tmp SQLite
file, listed the way the gateway lists them (mirror.query, mirror.reader)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from multidict import MultiDict

from mirror import schema, store
from mirror.model import Doc
from mirror.query import EmptyResult, Query, build, order
from mirror.reader import Reader
from mirror.resources import RESOURCES


def patch(obj_id: int, **fields: Any) -> Doc:
    """A stored patch: project 1, submitter 10, new, not archived, unless told."""
    return {
        "id": obj_id,
        "project": 1,
        "submitter": 10,
        "delegate": None,
        "series": [],
        "state": "new",
        "archived": False,
        "hash": f"{obj_id:040x}",
        "msgid": f"<{obj_id}@example.org>",
        "date": f"2024-01-01T00:00:{obj_id:02d}",
        "name": f"patch {obj_id}",
    } | fields


def project(obj_id: int, link_name: str, **fields: Any) -> Doc:
    return {"id": obj_id, "name": link_name.title(), "link_name": link_name} | fields


def person(obj_id: int, email: str, **fields: Any) -> Doc:
    return {"id": obj_id, "name": email.split("@")[0], "email": email} | fields


def user(obj_id: int, username: str) -> Doc:
    return {"id": obj_id, "username": username, "email": f"{username}@example.org"}


@dataclass
class Listing:
    """A mirror holding given documents, listed as the gateway lists it."""

    reader: Reader

    async def query(
        self, resource: str, params: str, version: str, parent: int | None, for_list: bool = True
    ) -> Query:
        return await build(
            RESOURCES[resource],
            version,
            MultiDict(parse_qsl(params, keep_blank_values=True)),
            self.reader.fetch_kept,
            parent_id=parent,
            for_list=for_list,
        )

    async def ids(
        self,
        resource: str,
        params: str = "",
        *,
        version: str = "1.4",
        parent: int | None = None,
        limit: int = 30,
    ) -> list[int]:
        """The ids of the first page (``limit`` long) of the list, in order."""
        res = RESOURCES[resource]
        try:
            q = await self.query(resource, params, version, parent)
        except EmptyResult:
            return []
        count = await self.reader.count(res.table, q)
        order(res, q, min(limit, count))
        return await self.reader.page_ids(res.table, q, 0, limit, count)

    async def count(self, resource: str, params: str = "", **options: Any) -> int:
        res = RESOURCES[resource]
        try:
            q = await self.query(resource, params, options.get("version", "1.4"), None)
        except EmptyResult:
            return 0
        return await self.reader.count(res.table, q)

    async def detail(self, resource: str, obj_id: int, params: str = "") -> Doc | None:
        """The detail ``resource/obj_id/?params`` shows, if any."""
        res = RESOURCES[resource]
        try:
            q = await self.query(resource, params, "1.4", None, for_list=False)
        except EmptyResult:
            return None
        return self.reader.one(
            res.table, Query([*q.where, "t.id = ?"], [*q.args, obj_id]), ("ref", res.table, obj_id)
        )


Make = Callable[..., Awaitable[Listing]]


@pytest.fixture
async def mirror(tmp_path: Path) -> AsyncIterator[Make]:
    """``await mirror(patches=[...], projects=[...], sql=[...])``: a fresh mirror
    holding these stored documents (``sql``: statements run after)."""
    readers: list[Reader] = []

    async def make(sql: tuple[str, ...] = (), **objects: list[Doc]) -> Listing:
        path = tmp_path / f"mirror{len(readers)}.sqlite3"
        db = await schema.connect(path)
        try:
            batch = store.Batch()
            for resource, docs in objects.items():
                for doc in docs:
                    batch.add(resource, doc)
            await store.write(db, batch)
            for statement in sql:
                await db.execute(statement)
        finally:
            await db.close()
        reader = Reader(path, connections=1)
        await reader.open()
        readers.append(reader)
        return Listing(reader)

    yield make
    for reader in readers:
        await reader.close()
