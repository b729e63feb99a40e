"""The canonical collection: passages, queries and examples as Parquet plus a manifest.

A collection is a directory:

- ``passages.parquet``: ``pid`` (dense uint32), ``docid``, ``title``, ``text``, ``extra`` (JSON of the
  fields a format has beyond these), ``content_hash`` (16-byte XXH3-128 of title and text).
  Passages are interned by exact content (docid, title, text, extra): one text used by many queries
  is stored once.
- ``queries.parquet``: ``qid``, ``query_id`` (original id, null when the format has none), ``text``,
  ``subset`` (source dataset), ``extra``.
- ``examples.parquet``: ``qid``, ``positives`` and ``negatives`` (lists of pids, in input order),
  ``pos_scores`` / ``neg_scores`` (lists of float64 or null), ``extra`` (JSON of unknown fields),
  ``source`` (index into the manifest's source files) and ``line`` (line or row there).
- ``manifest.json``: format version, source format and files, counts, and every step applied.

Hashing and interning run in Rust over Arrow buffers (`trueneg._core`); Python only moves columns.
"""

from trueneg.collection.builder import CollectionBuilder, Skipped, SourceFile
from trueneg.collection.extras import ID_LIST_FIELDS, VERDICT_FIELDS, parse_extra, refresh_extras
from trueneg.collection.manifest import step_record, write_manifest
from trueneg.collection.reader import Collection
from trueneg.collection.schema import (
    COMPRESSION,
    DICTIONARY_COLUMNS,
    EXAMPLE_SCHEMA,
    FORMAT_NAME,
    FORMAT_VERSION,
    PASSAGE_SCHEMA,
    QUERY_SCHEMA,
    arrow_indices,
    hash_columns,
    keys_to_binary,
    parquet_options,
    string_array,
    string_buffers,
)

__all__ = [
    "COMPRESSION",
    "DICTIONARY_COLUMNS",
    "EXAMPLE_SCHEMA",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ID_LIST_FIELDS",
    "PASSAGE_SCHEMA",
    "QUERY_SCHEMA",
    "VERDICT_FIELDS",
    "Collection",
    "CollectionBuilder",
    "Skipped",
    "SourceFile",
    "arrow_indices",
    "hash_columns",
    "keys_to_binary",
    "parquet_options",
    "parse_extra",
    "refresh_extras",
    "step_record",
    "string_array",
    "string_buffers",
    "write_manifest",
]
