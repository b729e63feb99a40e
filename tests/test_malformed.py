"""Bad input: each case gets a clear error naming the file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trueneg import InputError, ingest
from trueneg.exceptions import FormatError

from .helpers import write_lines

GOOD_BGE = '{"query": "q", "pos": ["p1"], "neg": ["n1", "n2"]}'
GOOD_TEV = orjson.dumps(
    {
        "query_id": "1",
        "query": "q",
        "positive_passages": [{"docid": "d1", "title": "", "text": "p"}],
        "negative_passages": [{"docid": "d2", "title": "", "text": "n"}],
    }
).decode()

# (name, format, second line, expected message after "<file>:2: ")
BGE_CASES = [
    ("malformed_json", "bge", '{"query": "q", "pos": ["p"],', r"invalid JSON"),
    ("not_an_object", "bge", '["q", ["p"], []]', r"expected a JSON object, got a list"),
    ("missing_query", "bge", '{"pos": ["p"], "neg": []}', r"field 'query': missing"),
    (
        "query_not_string",
        "bge",
        '{"query": 7, "pos": ["p"], "neg": []}',
        r"field 'query': expected a string, got an integer",
    ),
    (
        "pos_is_string",
        "bge",
        '{"query": "q", "pos": "a passage", "neg": []}',
        r"field 'pos': expected a list of strings, got a string \(a string here would be read as one passage per character\)",
    ),
    (
        "neg_is_string",
        "bge",
        '{"query": "q", "pos": ["p"], "neg": "oops"}',
        r"field 'neg': expected a list of strings, got a string",
    ),
    (
        "pos_item_null",
        "bge",
        '{"query": "q", "pos": ["p", null], "neg": []}',
        r"field 'pos\[1\]': expected a string, got null",
    ),
    (
        "neg_item_object",
        "bge",
        '{"query": "q", "pos": ["p"], "neg": [{"text": "n"}]}',
        r"field 'neg\[0\]': expected a string, got an object",
    ),
    ("empty_pos", "bge", '{"query": "q", "pos": [], "neg": ["n"]}', r"field 'pos': no positives"),
    (
        "missing_neg",
        "bge",
        '{"query": "q", "pos": ["p"]}',
        r"field 'neg': missing \(use \[\] for an example without negatives\)",
    ),
    (
        "pos_scores_length",
        "bge",
        '{"query": "q", "pos": ["p"], "neg": [], "pos_scores": [1.0, 2.0]}',
        r"field 'pos_scores': has 2 scores for 1 passages",
    ),
    (
        "neg_scores_not_numbers",
        "bge",
        '{"query": "q", "pos": ["p"], "neg": ["n"], "neg_scores": ["high"]}',
        r"field 'neg_scores\[0\]': expected a number, got a string",
    ),
    (
        "pos_not_list",
        "bge",
        '{"query": "q", "pos": {"a": 1}, "neg": []}',
        r"field 'pos': expected a list of strings, got an object",
    ),
    (
        "tev_missing_positives",
        "tevatron",
        '{"query_id": "2", "query": "q", "negative_passages": []}',
        r"field 'positive_passages': missing",
    ),
    (
        "tev_passage_not_object",
        "tevatron",
        '{"query_id": "2", "query": "q", "positive_passages": ["just text"], "negative_passages": []}',
        r"field 'positive_passages\[0\]': expected a passage object \{docid, title, text\}, got a string",
    ),
    (
        "tev_passage_missing_text",
        "tevatron",
        '{"query_id": "2", "query": "q", "positive_passages": [{"docid": "d"}], "negative_passages": []}',
        r"field 'positive_passages\[0\].text': missing",
    ),
    (
        "tev_docid_int",
        "tevatron",
        '{"query_id": "2", "query": "q", "positive_passages": [{"docid": 5, "text": "t"}], "negative_passages": []}',
        r"field 'positive_passages\[0\].docid': expected a string, got an integer",
    ),
    (
        "tev_query_id_missing",
        "tevatron",
        '{"query": "q", "positive_passages": [{"docid": "d", "text": "t"}], "negative_passages": []}',
        r"field 'query_id': missing",
    ),
    (
        "tev_negatives_string",
        "tevatron",
        '{"query_id": "2", "query": "q", "positive_passages": [{"docid": "d", "text": "t"}], "negative_passages": "d2"}',
        r"field 'negative_passages': expected a list of passage objects, got a string",
    ),
    (
        "tev_conflicting_query_id",
        "tevatron",
        '{"query_id": "1", "query": "another text", "positive_passages": [{"docid": "d", "text": "t"}], "negative_passages": []}',
        r"field 'query_id': query id '1' was seen before with a different text",
    ),
    (
        "tev_title_number",
        "tevatron",
        '{"query_id": "2", "query": "q", "positive_passages": [{"docid": "d", "text": "t", "title": 3}], "negative_passages": []}',
        r"field 'positive_passages\[0\].title': expected a string, got an integer",
    ),
]


@pytest.mark.parametrize(
    ("name", "fmt", "bad", "expected"), BGE_CASES, ids=[c[0] for c in BGE_CASES]
)
def test_bad_row_names_file_line_field(
    name: str, fmt: str, bad: str, expected: str, tmp_path: Path
) -> None:
    good = GOOD_BGE if fmt == "bge" else GOOD_TEV
    src = write_lines(tmp_path / "in.jsonl", [good, bad, good])
    with pytest.raises(InputError) as ei:
        ingest([src], tmp_path / "c", format=fmt)
    msg = str(ei.value)
    assert msg.startswith(f"{src}:2: "), msg
    assert re.search(expected, msg), msg
    # nothing half-written
    assert not (tmp_path / "c").exists()
    assert not any(p.name.startswith(".c.") for p in tmp_path.iterdir())


def test_non_utf8_bytes(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(GOOD_BGE.encode() + b'\n{"query": "caf\xe9", "pos": ["p"], "neg": []}\n')
    with pytest.raises(
        InputError, match=r"in\.jsonl:2: not valid UTF-8 \(bad byte 0xe9 at byte 14 of the line\)"
    ):
        ingest([src], tmp_path / "c", format="bge")


def test_skip_mode_counts_and_keeps_good_rows(tmp_path: Path) -> None:
    bad = [c[2] for c in BGE_CASES if c[1] == "bge"]
    src = write_lines(tmp_path / "in.jsonl", [GOOD_BGE, *bad, GOOD_BGE.replace('"q"', '"q2"')])
    coll = ingest([src], tmp_path / "c", format="bge", on_error="skip")
    assert len(coll) == 2
    sk = coll.manifest["skipped"]
    assert sk["count"] == len(bad)
    assert sk["first"][0].startswith(f"{src}:2: invalid JSON")


def test_skip_mode_with_no_valid_rows_fails(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", ['{"query": "q", "pos": "x", "neg": []}'])
    with pytest.raises(InputError, match=r"no valid examples .* \(1 rows skipped\)"):
        ingest([src], tmp_path / "c", format="bge", on_error="skip")


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: file not found"):
        ingest([tmp_path / "nope.jsonl"], tmp_path / "c")
    src = write_lines(tmp_path / "x.jsonl", ['{"a": 1}'])
    with pytest.raises(FormatError, match=r"cannot tell the format from the fields \['a'\]"):
        ingest([src], tmp_path / "c")
    with pytest.raises(FormatError, match=r"unknown format 'csv'"):
        ingest([src], tmp_path / "c", format="csv")


def test_empty_file(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "empty.jsonl", [])
    with pytest.raises(InputError, match="no valid examples"):
        ingest([src], tmp_path / "c", format="bge")


def test_parquet_rows_are_named_by_row(tmp_path: Path) -> None:
    rows = [
        orjson.loads(GOOD_TEV),
        {**orjson.loads(GOOD_TEV), "query_id": "3", "positive_passages": []},
    ]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    with pytest.raises(
        InputError, match=r"in\.parquet, row 2: field 'positive_passages': no positives"
    ):
        ingest([src], tmp_path / "c", format="tevatron")


def test_not_parquet(tmp_path: Path) -> None:
    src = tmp_path / "broken.parquet"
    src.write_bytes(b"this is not parquet")
    with pytest.raises(InputError, match=r"broken\.parquet: not a readable Parquet file"):
        ingest([src], tmp_path / "c", format="tevatron")


def test_tevatron_v2_unknown_docid_and_duplicate_corpus_id(tmp_path: Path) -> None:
    corpus = write_lines(
        tmp_path / "corpus.jsonl", ['{"docid": "d1", "text": "a"}', '{"docid": "d2", "text": "b"}']
    )
    train = write_lines(
        tmp_path / "train.jsonl",
        [
            '{"query_id": "1", "query_text": "q", "positive_document_ids": ["d1"], "negative_document_ids": ["d2"]}',
            '{"query_id": "2", "query_text": "r", "positive_document_ids": ["d1"], "negative_document_ids": ["d9"]}',
        ],
    )
    with pytest.raises(
        InputError, match=r"train\.jsonl:2: field 'document ids': docid 'd9' is not in the corpus"
    ):
        ingest([train], tmp_path / "c", format="tevatron-v2", corpus=corpus)
    dup = write_lines(
        tmp_path / "dup.jsonl", ['{"docid": "d1", "text": "a"}', '{"docid": "d1", "text": "other"}']
    )
    with pytest.raises(
        InputError, match=r"dup\.jsonl:2: field 'docid': docid 'd1' appears more than once"
    ):
        ingest([train], tmp_path / "c", format="tevatron-v2", corpus=dup)
    with pytest.raises(InputError, match="needs corpus=PATH"):
        ingest([train], tmp_path / "c", format="tevatron-v2")


def _beir(tmp_path: Path, qrels: str, queries: list[str] | None = None) -> Path:
    d = tmp_path / "set"
    (d / "qrels").mkdir(parents=True, exist_ok=True)
    write_lines(
        d / "corpus.jsonl",
        ['{"_id": "d1", "title": "", "text": "a"}', '{"_id": "d2", "text": "b"}'],
    )
    write_lines(d / "queries.jsonl", queries or ['{"_id": "1", "text": "q"}'])
    (d / "qrels" / "test.tsv").write_text(qrels)
    return d


@pytest.mark.parametrize(
    ("qrels", "expected"),
    [
        (
            "query-id\tcorpus-id\tscore\n1\td1\n",
            r"test\.tsv:2: expected 3 tab-separated fields \(query-id, corpus-id, score\), got 2",
        ),
        ("1\td1\thigh\n", r"test\.tsv:1: field 'score': expected an integer score, got 'high'"),
        ("1\td7\t1\n", r"test\.tsv:1: field 'document ids': docid 'd7' is not in the corpus"),
        ("5\td1\t1\n", r"test\.tsv:1: field 'query-id': query id '5' is not in the queries file"),
    ],
)
def test_beir_bad_qrels(qrels: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=expected):
        ingest([_beir(tmp_path, qrels)], tmp_path / "c")


def test_beir_duplicate_query_id(tmp_path: Path) -> None:
    d = _beir(
        tmp_path, "1\td1\t1\n", ['{"_id": "1", "text": "q"}', '{"_id": "1", "text": "q again"}']
    )
    with pytest.raises(InputError, match=r"queries\.jsonl:2: field '_id': duplicate query id '1'"):
        ingest([d], tmp_path / "c")


def test_beir_missing_parts(tmp_path: Path) -> None:
    d = tmp_path / "half"
    d.mkdir()
    write_lines(d / "corpus.jsonl", ['{"_id": "d1", "text": "a"}'])
    with pytest.raises(InputError, match=r"half: queries\.jsonl is missing"):
        ingest([d], tmp_path / "c", format="beir")


def test_st_bad_cell(tmp_path: Path) -> None:
    src = write_lines(
        tmp_path / "st.jsonl",
        ['{"anchor": "a", "positive": "p"}', '{"anchor": "a", "positive": null}'],
    )
    with pytest.raises(
        InputError, match=r"st\.jsonl:2: field 'positive': expected a string, got null"
    ):
        ingest([src], tmp_path / "c", format="st")


def test_existing_output_is_not_clobbered(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.jsonl", [GOOD_BGE])
    out = tmp_path / "c"
    ingest([src], out)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not empty"):
        ingest([src], out)
    assert (out / "keep.txt").read_text() == "mine"
    # a failing ingest with --overwrite leaves the old collection in place
    bad = write_lines(tmp_path / "bad.jsonl", ['{"query": 1}'])
    with pytest.raises(InputError):
        ingest([bad], out, format="bge", overwrite=True)
    assert (out / "keep.txt").exists()
    ingest([src], out, overwrite=True)
    assert not (out / "keep.txt").exists()
