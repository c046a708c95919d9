"""The pointer to the generation the service answers from: switched atomically, read by the service.

- **Qdrant server**: collection aliases, Qdrant's own mechanism for this. ``<QDRANT_COLLECTION>_active``
  names the active generation's collection and ``<QDRANT_COLLECTION>_previous`` the one before (what
  a rollback returns to); a switch is one ``update_collection_aliases`` call, which Qdrant applies
  atomically, so any Qdrant client following the alias moves at the same instant.
- **Embedded (Qdrant Edge)**: Edge has no aliases, and its shards are held by one process (the
  service), so the equivalent is a small JSON file beside the shards, ``<QDRANT_PATH>/
  <QDRANT_COLLECTION>.active.json``, replaced atomically (written to a temporary name, renamed).
  Any process can switch it without opening a shard.

No pointer (never switched) means the base generation: the deployment as configured.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.generations.records import BASE
from resources.settings import IndexSettings


@dataclass(frozen=True)
class PointerState:
    """Which generation is active, which was before it (None: none), and when it switched."""

    active: str
    previous: str | None
    switched_at: float | None = None


class GenerationPointer(ABC):
    """Reads and switches the active generation of the index whose base collection is ``base``."""

    def __init__(self, base: str) -> None:
        self.base = base

    @abstractmethod
    def read(self) -> PointerState | None:
        """The current state; None when nothing was ever switched (the base generation serves)."""

    @abstractmethod
    def write(self, state: PointerState) -> None:
        """Point at ``state.active`` in one atomic step."""

    def active(self) -> str:
        state = self.read()
        return state.active if state is not None else BASE

    def collection(self, name: str) -> str:
        return self.base if name == BASE else f"{self.base}_{name}"

    def name_of(self, collection: str) -> str:
        if collection == self.base:
            return BASE
        prefix = f"{self.base}_"
        if not collection.startswith(prefix):
            raise ValueError(f"collection {collection!r} is no generation of {self.base!r}")
        return collection[len(prefix):]


class FilePointer(GenerationPointer):
    """The embedded index's pointer: ``<folder>/<base>.active.json``."""

    def __init__(self, folder: str | Path, base: str) -> None:
        super().__init__(base)
        self.path = Path(folder) / f"{base}.active.json"

    def read(self) -> PointerState | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return PointerState(data["active"], data.get("previous"), data.get("switched_at"))

    def write(self, state: PointerState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"active": state.active, "previous": state.previous, "switched_at": state.switched_at or time.time()})
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=f".{self.path.name}.", delete=False) as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, self.path)  # readers see the old file or the new one, never half


class AliasPointer(GenerationPointer):
    """A Qdrant server's pointer: the aliases ``<base>_active`` and ``<base>_previous``.

    The time of the switch is not kept by Qdrant (an alias is only a name): ``switched_at`` is None."""

    def __init__(self, client: Any, base: str) -> None:
        super().__init__(base)
        self.client = client
        self.active_alias, self.previous_alias = f"{base}_active", f"{base}_previous"

    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def read(self) -> PointerState | None:
        aliases = self._aliases()
        if self.active_alias not in aliases:
            return None
        previous = aliases.get(self.previous_alias)
        return PointerState(self.name_of(aliases[self.active_alias]), self.name_of(previous) if previous else None)

    def write(self, state: PointerState) -> None:
        from qdrant_client import models

        existing = self._aliases()
        operations: list[Any] = [
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            for alias in (self.active_alias, self.previous_alias) if alias in existing
        ]
        operations.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=self.collection(state.active), alias_name=self.active_alias)))
        if state.previous is not None:
            operations.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=self.collection(state.previous), alias_name=self.previous_alias)))
        self.client.update_collection_aliases(change_aliases_operations=operations)  # one atomic change


def default_pointer(settings: IndexSettings) -> GenerationPointer | None:
    """The pointer of the index ``settings`` describe: aliases on a Qdrant server, the file of an
    embedded index; None for qdrant-client's ``:memory:`` mode (its own client holds the aliases:
    pass ``AliasPointer(client, base)``)."""
    if settings.url == ":memory:":
        return None
    if settings.url:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=settings.url, api_key=settings.api_key or None, timeout=30, check_compatibility=False)
        return AliasPointer(client, settings.collection)
    return FilePointer(settings.path, settings.collection)
