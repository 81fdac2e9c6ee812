"""What an :class:`~activelab_lightning.store.AnnotationStore` file holds on disk: its schema.

The tables are described in the package docstring (:mod:`activelab_lightning.store`). A file
carries ``PRAGMA application_id`` = :data:`APPLICATION_ID` (``b"ALAB"``, shown by ``file`` and the
sqlite tools) and its schema version in the ``meta`` table; a store written by another version is
refused on open.
"""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "SCHEMA", "SCHEMA_VERSION"]

#: Version of the on-disk schema; a store written by another version is refused on open.
SCHEMA_VERSION = 1

# PRAGMA application_id marks the file as ours (b"ALAB"); `file` / sqlite tools show it.
APPLICATION_ID = 0x414C4142


SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE annotators (
    col          INTEGER PRIMARY KEY,        -- first-seen order = label-matrix column order
    annotator_id TEXT NOT NULL UNIQUE
);
CREATE TABLE annotations (
    id            INTEGER PRIMARY KEY,       -- log order
    example_id    INTEGER NOT NULL,
    annotator_id  TEXT    NOT NULL,
    label         INTEGER NOT NULL,
    round         INTEGER,                   -- NULL = imported / initial labels
    source        TEXT    NOT NULL,
    request_id    TEXT    NOT NULL DEFAULT '',  -- '' = answers no request (imports)
    created_at    TEXT    NOT NULL,
    is_correction INTEGER NOT NULL DEFAULT 0 CHECK (is_correction IN (0, 1))
);
-- One original label per (example, annotator): a second one must be an explicit correction.
CREATE UNIQUE INDEX annotations_one_original ON annotations (example_id, annotator_id)
    WHERE is_correction = 0;
CREATE INDEX annotations_example ON annotations (example_id);
CREATE TABLE rounds (
    round        INTEGER PRIMARY KEY,
    seed         INTEGER NOT NULL,
    selected_ids TEXT    NOT NULL,           -- JSON list of example ids, in request order
    status       TEXT    NOT NULL CHECK (status IN ('requested', 'completed')),
    created_at   TEXT    NOT NULL,
    completed_at TEXT
);
CREATE TABLE requests (
    request_id          TEXT PRIMARY KEY,
    round               INTEGER NOT NULL,
    position            INTEGER NOT NULL,    -- order of the request within its round
    example_id          INTEGER NOT NULL,
    score               REAL,                -- NULL = NaN (a request made without a score)
    kind                TEXT    NOT NULL CHECK (kind IN ('new', 'relabel')),
    existing_annotators TEXT    NOT NULL,    -- JSON list of annotator ids
    status              TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'answered', 'exhausted')),
    updated_at          TEXT    NOT NULL
);
CREATE INDEX requests_round ON requests (round, position);
CREATE TABLE external_ids (
    request_id  TEXT NOT NULL,
    system      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (system, request_id)
);
"""
