"""The frame index in Qdrant: embedded (Qdrant Edge, in-process) or a Qdrant server (qdrant-client).

:class:`VectorIndex` is one facade over two backends that build the same collections, run the
same queries and return the same results (the test suite runs every query against both). The
package, one idea a module:

- :mod:`.schema`: what a point is - ids, payloads, filters, hits - and the points of a
  checkpoint; :mod:`.follower`: keeps an index in step with a checkpoint folder (and defers a
  sync to the shard's owner).
- :mod:`.layout`: the two collections (frames; the companion collection of patches) and their
  datatypes, graphs and payload indexes, described once for both backends (pure).
- :mod:`.backend`: the primitives a backend offers (create, upsert, delete, count, batched
  nearest queries, retrieve) and the shared errors; :mod:`.edge` and :mod:`.server` implement them.
- :mod:`.fusion`: how a candidate's global and MaxSim scores become one (pure numpy).
- :mod:`.index`: the facade - schema checks, per-video sync of both collections, search with
  candidates from the global and the patch vectors; :mod:`.queries`: that search's steps
  (candidates, exact scores, best patches).

Inputs are validated before any backend call, because the two backends fail differently on bad
input (and Edge raises bare ``Exception`` s): callers never need to branch on backend errors.
"""

from resources.vector_index.backend import IndexBusyError, IndexUnavailableError
from resources.vector_index.fusion import AGREEMENT_SHARE, DEFAULT_ALPHA, DEFAULT_FUSION, FUSIONS, fuse
from resources.vector_index.index import SyncResult, VectorIndex
from resources.vector_index.layout import IndexLayout, index_layout
from resources.vector_index.queries import SearchTrace
from resources.vector_index.schema import SchemaMismatchError, SearchFilters, SearchHit

__all__ = [
    "AGREEMENT_SHARE",
    "DEFAULT_ALPHA",
    "DEFAULT_FUSION",
    "FUSIONS",
    "IndexBusyError",
    "IndexLayout",
    "IndexUnavailableError",
    "SchemaMismatchError",
    "SearchFilters",
    "SearchHit",
    "SearchTrace",
    "SyncResult",
    "VectorIndex",
    "fuse",
    "index_layout",
]
