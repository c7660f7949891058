"""Build the entity catalog from the real data sets into a :class:`CatalogStore`.

::

    data/ --readers--> records --assemble_catalog--> entities, relations, users --> CatalogStore

The store skips entities whose content hash is unchanged and relations whose
weight is unchanged, so re-running :func:`build_catalog` on an unchanged data
directory reports ``changed == 0`` and only costs the parse and the hash checks.
The build never deletes: an entity or relation that disappears from the data
stays in the store.

**One exception: a change of the held-out split.** The store remembers, in meta
``catalog:held_out``, the split (:data:`ltrr.catalog.lastfm.HELD_OUT_SPEC`) it was built
with. A build into a non-empty store built under another split (or before splits existed)
brings it to exactly what this build produced: every relation of the store that the build
did not write is *retired* (rewritten with weight 0, a new ``seq``, so each incremental reader
sees it: the graph applies it like any update, and a weight-0 edge carries no PageRank mass),
and every ``lfm:<id>`` profile the build did not write is deleted (profiles under other ids,
e.g. learned from a user's own clicks, are left alone). Entities are never deleted; those whose
content changed are rewritten and re-indexed through the watermarks as usual. So ``ltrr ingest``
(which ``make up`` runs) migrates an existing ``var/catalog.sqlite`` in place.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from tqdm import tqdm

from ltrr.catalog.assemble import AssembledCatalog, assemble_catalog
from ltrr.catalog.lastfm import HELD_OUT_SPEC
from ltrr.catalog.readers import read_lastfm, read_podcasts, read_spotify_songs
from ltrr.catalog.store import CatalogBase
from ltrr.errors import ConfigError, InvalidRequest
from ltrr.types import ENTITY_TYPES, Entity, Relation, UserProfile

T = TypeVar("T")
ENTITY_BATCH = 2000
RELATION_BATCH = 20000
#: Meta key holding the held-out split the store was built with (see the module docstring).
HELD_OUT_META = "catalog:held_out"


@dataclass(frozen=True)
class CatalogStats:
    """What one build (or synthetic generation) wrote.

    Counts are of what the build produced (not only what changed); ``changed``
    is how many entities the store actually rewrote, ``relations_changed`` the
    same for relations. ``seconds`` is wall time of the whole call.
    """

    artists: int = 0
    tracks: int = 0
    playlists: int = 0
    podcasts: int = 0
    relations: int = 0
    users: int = 0
    changed: int = 0
    relations_changed: int = 0
    seconds: float = 0.0
    relations_by_kind: Mapping[str, int] = field(default_factory=dict)
    held_out_users: int = 0
    relations_retired: int = 0
    users_removed: int = 0

    @property
    def entities(self) -> int:
        """All entities, of every type."""
        return self.artists + self.tracks + self.playlists + self.podcasts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["relations_by_kind"] = dict(self.relations_by_kind)
        d["entities"] = self.entities
        return d


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic records.

    A build allocates ~10^6 long-lived objects (entities, relations); each
    allocation burst triggers full collections that rescan all of them, which
    costs about a third of the build time. None of them form cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_store(store: Any) -> None:
    if not isinstance(store, CatalogBase):
        raise InvalidRequest("store", f"must be a CatalogStore, got {type(store).__name__}")


def write_batches(
    write: Callable[[Sequence[T]], int],
    items: Iterable[T],
    *,
    batch_size: int,
    total: int | None,
    desc: str,
    progress: bool,
) -> int:
    """Call ``write`` on consecutive batches of ``items``; return the sum of its results."""
    changed = 0
    batch: list[T] = []
    with tqdm(total=total, desc=desc, unit="rec", disable=not progress, file=sys.stderr, leave=False) as bar:
        for item in items:
            batch.append(item)
            if len(batch) >= batch_size:
                changed += write(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            changed += write(batch)
            bar.update(len(batch))
    return changed


def write_catalog(
    store: CatalogBase,
    entities: Sequence[Entity],
    relations: Sequence[Relation],
    users: Sequence[UserProfile],
    *,
    started: float,
    progress: bool = True,
) -> CatalogStats:
    """Write entities, relations and users; return their :class:`CatalogStats`."""
    changed = write_batches(
        store.upsert_entities,
        entities,
        batch_size=ENTITY_BATCH,
        total=len(entities),
        desc="entities",
        progress=progress,
    )
    rel_changed = write_batches(
        store.upsert_relations,
        relations,
        batch_size=RELATION_BATCH,
        total=len(relations),
        desc="relations",
        progress=progress,
    )
    store.upsert_users(users)
    per_type = Counter(e.entity_type for e in entities)
    return CatalogStats(
        artists=per_type["artist"],
        tracks=per_type["track"],
        playlists=per_type["playlist"],
        podcasts=per_type["podcast"],
        relations=len(relations),
        users=len(users),
        changed=changed,
        relations_changed=rel_changed,
        seconds=round(time.perf_counter() - started, 3),
        relations_by_kind=dict(sorted(Counter(r.kind for r in relations).items())),
    )


def build_catalog(
    store: CatalogBase,
    data_dir: str | Path = "data",
    *,
    max_artists: int | None = None,
    progress: bool = True,
) -> CatalogStats:
    """Parse ``data_dir``, assemble the catalog and upsert it into ``store``.

    ``max_artists=N`` builds a consistent slice: the top N Last.fm artists by
    plays with their tracks and a few playlists and podcasts (see
    :mod:`ltrr.catalog.assemble`). Raises :class:`InvalidRequest` for a bad
    argument and :class:`ConfigError` if a data file is missing.
    """
    _check_store(store)
    if max_artists is not None and (
        isinstance(max_artists, bool) or not isinstance(max_artists, int) or max_artists < 1
    ):
        raise InvalidRequest("max_artists", f"must be None or an int >= 1, got {max_artists!r}")
    root = Path(data_dir)
    if not root.is_dir():
        raise ConfigError(f"`data_dir` must be a directory holding the data sets, got {str(root)!r}")
    started = time.perf_counter()
    with paused_gc(), tqdm(total=4, desc="catalog", disable=not progress, file=sys.stderr, leave=False) as bar:
        lfm = read_lastfm(root)
        bar.update()
        songs = read_spotify_songs(root)
        bar.update()
        podcasts = read_podcasts(root)
        bar.update()
        built = assemble_catalog(lfm, songs, podcasts, max_artists)
        bar.update()
        previous = store.get_meta(HELD_OUT_META)
        migrate = previous != HELD_OUT_SPEC and store.max_seq() > 0
        stats = write_catalog(store, built.entities, built.relations, built.users, started=started, progress=progress)
        retired, removed = _retire_unbuilt(store, built, progress=progress) if migrate else (0, 0)
    store.set_meta(HELD_OUT_META, HELD_OUT_SPEC)
    stats = replace(
        stats,
        held_out_users=built.held_out_users,
        relations_retired=retired,
        users_removed=removed,
        seconds=round(time.perf_counter() - started, 3),
    )
    store.set_meta("catalog:last_build", json.dumps(stats.to_dict(), sort_keys=True))
    return stats


def _retire_unbuilt(store: CatalogBase, built: AssembledCatalog, *, progress: bool) -> tuple[int, int]:
    """Retire (weight 0) the store's relations ``built`` lacks and delete its ``lfm:`` profiles
    ``built`` lacks; return ``(relations retired, profiles deleted)``."""
    keep = {(r.src, r.dst, r.kind) for r in built.relations}
    stale = [
        Relation(r.src, r.dst, r.kind, 0.0)
        for r in store.relations_since(0)
        if r.weight != 0.0 and (r.src, r.dst, r.kind) not in keep
    ]
    retired = write_batches(
        store.upsert_relations, stale, batch_size=RELATION_BATCH, total=len(stale), desc="retire", progress=progress
    )
    users = {u.user_id for u in built.users}
    gone = [u.user_id for u in store.users() if u.user_id.startswith("lfm:") and u.user_id not in users]
    return retired, store.delete_users(gone)


def catalog_summary(store: CatalogBase) -> dict[str, int]:
    """Entity counts per type, plus ``"total"``: ``{"artist": n, ..., "total": n}``."""
    _check_store(store)
    out = {t: store.count(t) for t in ENTITY_TYPES}
    out["total"] = store.count()
    return out
