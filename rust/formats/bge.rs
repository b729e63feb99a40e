//! BGE / `FlagEmbedding` JSON Lines, `{query, pos: [str], neg: [str], pos_scores?, neg_scores?, ...}`,
//! parsed in parallel into columns. Bad rows are reported with their line and field, with the same
//! messages as the Python validators, and left out of the columns.

use std::borrow::Cow;
use std::fmt;

use rayon::prelude::*;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::StrBuf;
use crate::pool;

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
}

/// The good rows of a chunk, column by column.
#[derive(Debug, Default)]
pub struct BgeColumns {
    pub query: StrBuf,
    /// Every passage: the positives of row 0, its negatives, the positives of row 1, ...
    pub passages: StrBuf,
    pub pos_counts: Vec<u32>,
    pub neg_counts: Vec<u32>,
    /// Flattened scores (counts follow `pos_counts`) of the rows where `has_pos_scores`.
    pub pos_scores: Vec<f64>,
    pub has_pos_scores: Vec<bool>,
    pub neg_scores: Vec<f64>,
    pub has_neg_scores: Vec<bool>,
    /// JSON object of the fields beyond the five known ones, empty string when none.
    pub extra: StrBuf,
    pub lines: Vec<u64>,
    pub errors: Vec<RowError>,
    /// Every score seen was written as an integer.
    pub all_int_scores: bool,
}

impl BgeColumns {
    fn new() -> Self {
        Self {
            all_int_scores: true,
            ..Self::default()
        }
    }

    fn append(&mut self, o: BgeColumns) {
        self.query.append(&o.query);
        self.passages.append(&o.passages);
        self.pos_counts.extend(o.pos_counts);
        self.neg_counts.extend(o.neg_counts);
        self.pos_scores.extend(o.pos_scores);
        self.has_pos_scores.extend(o.has_pos_scores);
        self.neg_scores.extend(o.neg_scores);
        self.has_neg_scores.extend(o.has_neg_scores);
        self.extra.append(&o.extra);
        self.lines.extend(o.lines);
        self.errors.extend(o.errors);
        self.all_int_scores &= o.all_int_scores;
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// The query, passages and scores of one good row (its extra fields and line go separately).
    fn push_example<S: AsRef<str>>(
        &mut self,
        query: &str,
        pos: &[S],
        neg: &[S],
        ps: Option<Vec<f64>>,
        ns: Option<Vec<f64>>,
    ) {
        self.query.push(query);
        for p in pos.iter().chain(neg.iter()) {
            self.passages.push(p.as_ref());
        }
        self.pos_counts.push(pos.len() as u32);
        self.neg_counts.push(neg.len() as u32);
        self.has_pos_scores.push(ps.is_some());
        self.pos_scores.extend(ps.unwrap_or_default());
        self.has_neg_scores.push(ns.is_some());
        self.neg_scores.extend(ns.unwrap_or_default());
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn err(field: &str, message: impl Into<String>) -> (Option<String>, String) {
    (Some(field.to_string()), message.into())
}

fn str_list<'a>(
    row: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<&'a str>, (Option<String>, String)> {
    let v = row.get(key).ok_or_else(|| err(key, "missing"))?;
    match v {
        Value::String(_) => Err(err(
            key,
            "expected a list of strings, got a string (a string here would be read as one passage per character)",
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.as_str()),
                other => Err(err(&format!("{key}[{i}]"), format!("expected a string, got {}", type_name(other)))),
            })
            .collect(),
        other => Err(err(key, format!("expected a list of strings, got {}", type_name(other)))),
    }
}

fn scores(
    row: &Map<String, Value>,
    key: &str,
    n: usize,
    all_int: &mut bool,
) -> Result<Option<Vec<f64>>, (Option<String>, String)> {
    let v = match row.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let items = match v {
        Value::Array(items) => items,
        Value::String(_) => {
            return Err(err(
                key,
                "expected a list of numbers, got a string (a string here would be read as one passage per character)",
            ))
        }
        other => return Err(err(key, format!("expected a list of numbers, got {}", type_name(other)))),
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ints = true;
    for (i, x) in items.iter().enumerate() {
        match x {
            Value::Number(num) => {
                ints &= num.is_i64() || num.is_u64();
                out.push(num.as_f64().unwrap_or(f64::NAN));
            }
            other => {
                return Err(err(
                    &format!("{key}[{i}]"),
                    format!("expected a number, got {}", type_name(other)),
                ))
            }
        }
    }
    if out.len() != n {
        return Err(err(
            key,
            format!("has {} scores for {n} passages", out.len()),
        ));
    }
    *all_int &= ints;
    Ok(Some(out))
}

const KNOWN: [&str; 5] = ["query", "pos", "neg", "pos_scores", "neg_scores"];

/// A row as the fast path reads it: strings borrowed from the input where they have no escapes,
/// unknown fields kept as their raw JSON text.
#[derive(Default)]
struct FastRow<'a> {
    query: Option<Cow<'a, str>>,
    pos: Option<Vec<Cow<'a, str>>>,
    neg: Option<Vec<Cow<'a, str>>>,
    pos_scores: Option<Vec<Number>>,
    neg_scores: Option<Vec<Number>>,
    extra: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// `Cow<str>` that borrows when it can (serde's own `Cow` impl always copies).
struct CowStr<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct CowList<'a>(Vec<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for CowList<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<CowStr<'de>> = de::Deserialize::deserialize(d)?;
        Ok(CowList(v.into_iter().map(|c| c.0).collect()))
    }
}

impl<'de> de::Deserialize<'de> for FastRow<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FastRow<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a BGE row")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut r = FastRow::default();
                while let Some(CowStr(k)) = m.next_key::<CowStr<'de>>()? {
                    match k.as_ref() {
                        "query" => r.query = Some(m.next_value::<CowStr<'de>>()?.0),
                        "pos" => r.pos = Some(m.next_value::<CowList<'de>>()?.0),
                        "neg" => r.neg = Some(m.next_value::<CowList<'de>>()?.0),
                        "pos_scores" => r.pos_scores = m.next_value()?,
                        "neg_scores" => r.neg_scores = m.next_value()?,
                        _ => {
                            let raw: &'de RawValue = m.next_value()?;
                            r.extra.push((k, raw));
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

fn fast_scores(
    v: Option<Vec<Number>>,
    n: usize,
    all_int: &mut bool,
) -> Result<Option<Vec<f64>>, ()> {
    match v {
        None => Ok(None),
        Some(nums) => {
            if nums.len() != n {
                return Err(());
            }
            let mut ints = true;
            let out = nums
                .iter()
                .map(|x| {
                    ints &= x.is_i64() || x.is_u64();
                    x.as_f64().unwrap_or(f64::NAN)
                })
                .collect();
            *all_int &= ints;
            Ok(Some(out))
        }
    }
}

/// The common case: a well-formed row. `Err` sends the line to the checking path for its message.
fn parse_line_fast(raw: &[u8], line: u64, out: &mut BgeColumns) -> Result<(), ()> {
    let text = std::str::from_utf8(raw).map_err(|_| ())?;
    let row: FastRow<'_> = serde_json::from_str(text).map_err(|_| ())?;
    let (Some(query), Some(pos), Some(neg)) = (row.query, row.pos, row.neg) else {
        return Err(());
    };
    if pos.is_empty() {
        return Err(());
    }
    let mut all_int = out.all_int_scores;
    let ps = fast_scores(row.pos_scores, pos.len(), &mut all_int)?;
    let ns = fast_scores(row.neg_scores, neg.len(), &mut all_int)?;
    out.all_int_scores = all_int;
    out.push_example(&query, &pos, &neg, ps, ns);
    if row.extra.is_empty() {
        out.extra.push("");
    } else {
        let mut extra = row.extra;
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        let mut s = String::from("{");
        for (i, (k, v)) in extra.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&serde_json::to_string(k.as_ref()).unwrap_or_default());
            s.push(':');
            s.push_str(v.get());
        }
        s.push('}');
        out.extra.push(&s);
    }
    out.lines.push(line);
    Ok(())
}

fn parse_line(raw: &[u8], line: u64, out: &mut BgeColumns) {
    if parse_line_fast(raw, line, out).is_ok() {
        return;
    }
    parse_line_checked(raw, line, out);
}

/// The checking path: every rule with its message; also handles rows the fast path declined.
fn parse_line_checked(raw: &[u8], line: u64, out: &mut BgeColumns) {
    if let Err(e) = std::str::from_utf8(raw) {
        let at = e.valid_up_to();
        out.errors.push(RowError {
            line,
            field: None,
            message: format!(
                "not valid UTF-8 (bad byte 0x{:02x} at byte {at} of the line)",
                raw[at]
            ),
        });
        return;
    }
    let value: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg);
            out.errors.push(RowError {
                line,
                field: None,
                message: format!("invalid JSON: {msg}"),
            });
            return;
        }
    };
    let Value::Object(row) = value else {
        out.errors.push(RowError {
            line,
            field: None,
            message: format!("expected a JSON object, got {}", type_name(&value)),
        });
        return;
    };
    let mut all_int = out.all_int_scores;
    let checked = (|| {
        let query = match row.get("query") {
            None => return Err(err("query", "missing")),
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(err(
                    "query",
                    format!("expected a string, got {}", type_name(other)),
                ))
            }
        };
        let pos = str_list(&row, "pos")?;
        if pos.is_empty() {
            return Err(err("pos", "no positives (an example needs at least one)"));
        }
        if !row.contains_key("neg") {
            return Err(err(
                "neg",
                "missing (use [] for an example without negatives)",
            ));
        }
        let neg = str_list(&row, "neg")?;
        let ps = scores(&row, "pos_scores", pos.len(), &mut all_int)?;
        let ns = scores(&row, "neg_scores", neg.len(), &mut all_int)?;
        Ok((query, pos, neg, ps, ns))
    })();
    match checked {
        Err((field, message)) => out.errors.push(RowError {
            line,
            field,
            message,
        }),
        Ok((query, pos, neg, ps, ns)) => {
            out.all_int_scores = all_int;
            out.push_example(query, &pos, &neg, ps, ns);
            let extra: Map<String, Value> = row
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if extra.is_empty() {
                out.extra.push("");
            } else {
                out.extra.push(&Value::Object(extra).to_string());
            }
            out.lines.push(line);
        }
    }
}

fn parse_serial(data: &[u8], first_line: u64) -> BgeColumns {
    let mut out = BgeColumns::new();
    for (line, raw) in (first_line..).zip(data.split(|&b| b == b'\n')) {
        let trimmed = raw.strip_suffix(b"\r").unwrap_or(raw);
        if !trimmed.iter().all(u8::is_ascii_whitespace) {
            parse_line(trimmed, line, &mut out);
        }
    }
    out
}

/// Parse whole lines of a BGE JSON Lines file; `first_line` is the number of the first line.
/// `data` should end at a line boundary (a last line without newline is parsed too).
pub fn parse_bge_lines(data: &[u8], first_line: u64) -> BgeColumns {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    if data.is_empty() {
        return BgeColumns::new();
    }
    let threads = pool::num_threads();
    if threads <= 1 || data.len() < 1 << 20 {
        return parse_serial(data, first_line);
    }
    // Cut into line-aligned pieces, several per thread for balance.
    let pieces = threads * 4;
    let target = data.len() / pieces + 1;
    let mut bounds = vec![(0usize, first_line)];
    let mut start = 0usize;
    let mut line = first_line;
    while start + target < data.len() {
        let Some(nl) = memchr::memchr(b'\n', &data[start + target..]) else {
            break;
        };
        let cut = start + target + nl + 1;
        line += memchr::memchr_iter(b'\n', &data[start..cut]).count() as u64;
        bounds.push((cut, line));
        start = cut;
    }
    let parts: Vec<BgeColumns> = pool::install(|| {
        bounds
            .par_iter()
            .enumerate()
            .map(|(i, &(s, l))| {
                let e = bounds.get(i + 1).map_or(data.len(), |b| b.0);
                let piece = &data[s..e];
                parse_serial(piece.strip_suffix(b"\n").unwrap_or(piece), l)
            })
            .collect()
    });
    let mut out = BgeColumns::new();
    for p in parts {
        out.append(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_rows_become_columns() {
        let data = b"{\"query\": \"q1\", \"pos\": [\"a\"], \"neg\": [\"b\", \"c\"], \"prompt\": \"x\"}\n\n\
{\"query\": \"q2\", \"pos\": [\"d\"], \"neg\": [], \"pos_scores\": [1]}\n";
        let c = parse_bge_lines(data, 1);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.lines, vec![1, 3]);
        assert_eq!(c.query.get(1), "q2");
        assert_eq!(c.passages.len(), 4);
        assert_eq!(c.pos_counts, vec![1, 1]);
        assert_eq!(c.neg_counts, vec![2, 0]);
        assert_eq!(c.has_pos_scores, vec![false, true]);
        assert_eq!(c.pos_scores, vec![1.0]);
        assert!(c.all_int_scores);
        assert_eq!(c.extra.get(0), "{\"prompt\":\"x\"}");
        assert_eq!(c.extra.get(1), "");
    }

    #[test]
    fn bad_rows_report_line_and_field() {
        let data = b"{\"query\": \"q\", \"pos\": \"oops\", \"neg\": []}\n[1]\n{\"query\": \"q\", \"pos\": [\"p\"], \"neg\": [3]}\n{bad";
        let c = parse_bge_lines(data, 10);
        assert!(c.is_empty());
        let got: Vec<_> = c.errors.iter().map(|e| (e.line, e.field.clone())).collect();
        assert_eq!(
            got,
            vec![
                (10, Some("pos".into())),
                (11, None),
                (12, Some("neg[0]".into())),
                (13, None)
            ]
        );
        assert!(c.errors[1].message.contains("got a list"));
        assert!(c.errors[3].message.starts_with("invalid JSON"));
    }

    #[test]
    fn non_utf8_is_reported() {
        let c = parse_bge_lines(b"{\"query\": \"caf\xe9\"}", 1);
        assert_eq!(
            c.errors[0].message,
            "not valid UTF-8 (bad byte 0xe9 at byte 14 of the line)"
        );
    }

    #[test]
    fn parallel_equals_serial() {
        let mut data = Vec::new();
        for i in 0..40_000 {
            data.extend_from_slice(
                format!("{{\"query\": \"q{i}\", \"pos\": [\"p{i}\"], \"neg\": [\"n{i}\", \"m\"], \"neg_scores\": [0.5, {i}]}}\n")
                    .as_bytes(),
            );
            if i % 997 == 0 {
                data.extend_from_slice(b"not json\n");
            }
        }
        let par = parse_bge_lines(&data, 1);
        let ser = parse_serial(data.strip_suffix(b"\n").unwrap(), 1);
        assert_eq!(par.lines, ser.lines);
        assert_eq!(par.passages, ser.passages);
        assert_eq!(par.errors, ser.errors);
        assert_eq!(par.neg_scores, ser.neg_scores);
        assert!(!par.all_int_scores);
        assert_eq!(par.len(), 40_000);
    }
}

/// Where to continue after a block of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    pub line: u64,
}

/// Parse the whole lines in `[offset, offset + block_bytes)` of the file at `path` (memory-mapped,
/// no copy), stretching the block to the end of its last line. Returns the columns and where
/// the next block starts; `offset == file size` means done.
pub fn parse_bge_file_block(
    path: &std::path::Path,
    offset: u64,
    block_bytes: u64,
    first_line: u64,
) -> std::io::Result<(BgeColumns, Resume)> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if offset >= len {
        return Ok((
            BgeColumns::new(),
            Resume {
                offset: len,
                line: first_line,
            },
        ));
    }
    // SAFETY: the map is read-only and dropped before returning; a file truncated by another
    // process while we read would fault, as any reader of a changing file could.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let data = &map[offset as usize..];
    let want = (block_bytes as usize).min(data.len());
    let end = if want == data.len() {
        data.len()
    } else {
        match memchr::memchr(b'\n', &data[want..]) {
            Some(i) => want + i + 1,
            None => data.len(),
        }
    };
    let block = &data[..end];
    let lines = memchr::memchr_iter(b'\n', block).count() as u64
        + u64::from(!block.is_empty() && !block.ends_with(b"\n"));
    let cols = parse_bge_lines(block, first_line);
    Ok((
        cols,
        Resume {
            offset: offset + end as u64,
            line: first_line + lines,
        },
    ))
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn blocks_cover_the_file_exactly() {
        let dir = std::env::temp_dir().join(format!("trueneg-bge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.jsonl");
        let mut s = String::new();
        for i in 0..1000 {
            writeln!(s, "{{\"query\": \"q{i}\", \"pos\": [\"p\"], \"neg\": []}}").unwrap();
        }
        s.push_str("{\"query\": \"last\", \"pos\": [\"p\"], \"neg\": []}"); // no final newline
        std::fs::write(&path, &s).unwrap();
        let mut at = Resume { offset: 0, line: 1 };
        let mut lines = Vec::new();
        loop {
            let (c, next) = parse_bge_file_block(&path, at.offset, 700, at.line).unwrap();
            assert!(c.errors.is_empty());
            lines.extend(c.lines);
            if next.offset == at.offset {
                break;
            }
            at = next;
        }
        assert_eq!(lines, (1..=1001).collect::<Vec<u64>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
