//! The legs index: for every leg of the dataset, hashes of its call_id and of its interaction
//! key, and its partition. A merge plans from it which partitions it rewrites (see
//! [`crate::merge`]) instead of opening every legs file of the dataset.
//!
//! One Parquet file per month of the partitions' dates, `_catalog/keys/month=2026-11.parquet`
//! (as the partition list, [`super::shards`]): a run reads them all and rewrites only the months
//! it touches. Columns: `call_hash` and `key_hash` (UInt64: XXH3-64 of the call_id and of the
//! first of `interaction_id`, `bridge_id`, `call_id` that is set, 0 for none), `account_id`
//! (String, `_unassigned` for no account) and `date` (Date, null for none), sorted by partition
//! and hashes, so the same dataset has the same files byte for byte. XXH3's output is fixed by
//! its specification, so an index written by one rerate reads in every later one; the catalog
//! records the algorithm ([`KEYS_HASH`]). 16 bytes of hashes a leg: a year of 3,000 legs a
//! night is about 18 MB read a night (see BENCHMARKS.md).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::interactions::KEY;
use crate::schema::{ACCOUNT_ID, CALL_ID, DATE};

/// The index's folder, relative to the output folder.
pub const KEYS_DIR: &str = "_catalog/keys";

/// A month's index file, relative to the output folder.
pub fn keys_file(month: &str) -> String {
    format!("{KEYS_DIR}/month={month}.parquet")
}
/// The hash the index holds, as the catalog names it.
pub const KEYS_HASH: &str = "xxh3-64";

const CALL_HASH: &str = "call_hash";
const KEY_HASH: &str = "key_hash";

/// A partition: (account_id as its folder says it, `_unassigned` for none; days since
/// 1970-01-01).
pub type Partition = (String, Option<i32>);

/// The stable hash of a key.
pub fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// The index rows of a legs frame: `call_id`, the interaction key columns, `account_id`
/// (filled: `_unassigned` for none) and `date`.
pub fn rows_of(legs: &DataFrame) -> PolarsResult<DataFrame> {
    let keys: Vec<&StringChunked> = KEY
        .iter()
        .map(|k| legs.column(k)?.str())
        .collect::<PolarsResult<_>>()?;
    let calls = legs.column(CALL_ID)?.str()?;
    let n = legs.height();
    let mut call_hash = Vec::with_capacity(n);
    let mut key_hash = Vec::with_capacity(n);
    for i in 0..n {
        call_hash.push(calls.get(i).map_or(0, hash));
        key_hash.push(keys.iter().find_map(|c| c.get(i)).map_or(0, hash));
    }
    DataFrame::new(
        n,
        vec![
            UInt64Chunked::from_vec(CALL_HASH.into(), call_hash).into_column(),
            UInt64Chunked::from_vec(KEY_HASH.into(), key_hash).into_column(),
            legs.column(ACCOUNT_ID)?.clone(),
            legs.column(DATE)?.cast(&DataType::Date)?,
        ],
    )
}

/// The index, read or being built.
pub struct KeyIndex {
    df: DataFrame,
    /// Each row's partition number, and the partitions by number; computed once.
    parts: std::cell::OnceCell<(Vec<u32>, Vec<Partition>)>,
}

impl KeyIndex {
    /// An empty index.
    pub fn empty() -> PolarsResult<Self> {
        let df = DataFrame::new(
            0,
            vec![
                Column::new_empty(CALL_HASH.into(), &DataType::UInt64),
                Column::new_empty(KEY_HASH.into(), &DataType::UInt64),
                Column::new_empty(ACCOUNT_ID.into(), &DataType::String),
                Column::new_empty(DATE.into(), &DataType::Date),
            ],
        )?;
        Ok(Self::of(df))
    }

    fn of(df: DataFrame) -> Self {
        KeyIndex {
            df,
            parts: Default::default(),
        }
    }

    /// Reads `out`'s index, the files of `months`. Errors name the file.
    pub fn read<'m>(
        out: &Path,
        months: impl IntoIterator<Item = &'m String>,
    ) -> anyhow::Result<Self> {
        let want = Self::empty()?.df.schema().clone();
        let mut ix = Self::empty()?;
        for m in months {
            let rel = keys_file(m);
            let df = super::read_parquet(out, &rel, "the dataset's legs index")?;
            if df.schema() != &want {
                anyhow::bail!(
                    "{}: the dataset's legs index has columns {:?}, expected {:?}; rebuild the dataset with --mode replace-all",
                    out.join(&rel).display(),
                    df.schema(),
                    want
                );
            }
            ix.df.vstack_mut_owned_unchecked(df);
        }
        Ok(ix)
    }

    /// Adds the rows of `legs` ([`rows_of`]'s frame).
    pub fn push(&mut self, rows: &DataFrame) -> PolarsResult<()> {
        self.df.vstack_mut(rows)?;
        self.parts = Default::default();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.df.height()
    }

    pub fn is_empty(&self) -> bool {
        self.df.height() == 0
    }

    /// Each row's partition, and the partitions by number. Rows of one partition are next to
    /// each other in a file read, so a row is first compared with the one before it.
    fn partitions(&self) -> PolarsResult<&(Vec<u32>, Vec<Partition>)> {
        if let Some(p) = self.parts.get() {
            return Ok(p);
        }
        let accounts = self.df.column(ACCOUNT_ID)?.str()?;
        let dates = self.df.column(DATE)?.date()?.physical().clone();
        let mut ids: HashMap<(&str, Option<i32>), u32> = HashMap::new();
        let mut list = Vec::new();
        let mut of_row = Vec::with_capacity(self.df.height());
        let mut last: Option<((&str, Option<i32>), u32)> = None;
        for (a, d) in accounts.iter().zip(dates.iter()) {
            let key = (a.unwrap_or_default(), d);
            let id = match last {
                Some((k, id)) if k == key => id,
                _ => *ids.entry(key).or_insert_with(|| {
                    list.push((key.0.to_owned(), d));
                    (list.len() - 1) as u32
                }),
            };
            last = Some((key, id));
            of_row.push(id);
        }
        Ok(self.parts.get_or_init(|| (of_row, list)))
    }

    /// Rows per partition.
    pub fn counts(&self) -> PolarsResult<HashMap<Partition, u64>> {
        let (of_row, list) = self.partitions()?;
        let mut n = vec![0u64; list.len()];
        for &id in of_row {
            n[id as usize] += 1;
        }
        Ok(list.iter().cloned().zip(n).collect())
    }

    /// The partitions a run must rewrite: `start` (the run's own partitions that the dataset
    /// holds), then every partition holding a leg whose call_id or interaction key is among
    /// `calls`, `keys` or those of a partition already taken, until none is added. Hash
    /// collisions can only add a partition, never leave one out.
    pub fn closure(
        &self,
        start: &HashSet<Partition>,
        mut calls: HashSet<u64>,
        mut keys: HashSet<u64>,
    ) -> PolarsResult<Vec<Partition>> {
        let (of_row, list) = self.partitions()?;
        let call = self.df.column(CALL_HASH)?.u64()?;
        let key = self.df.column(KEY_HASH)?.u64()?;
        let call: Vec<u64> = call.into_no_null_iter().collect();
        let key: Vec<u64> = key.into_no_null_iter().collect();
        let mut joined: Vec<bool> = list.iter().map(|p| start.contains(p)).collect();
        let of_row = of_row.as_slice();
        loop {
            // Every leg of a joined partition brings its ids; a leg that meets them brings its
            // partition.
            for (i, &p) in of_row.iter().enumerate() {
                if joined[p as usize] {
                    calls.insert(call[i]);
                    keys.insert(key[i]);
                }
            }
            let mut added = false;
            for (i, &p) in of_row.iter().enumerate() {
                let p = p as usize;
                if !joined[p] && (calls.contains(&call[i]) || keys.contains(&key[i])) {
                    joined[p] = true;
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
        Ok(list
            .iter()
            .zip(joined)
            .filter(|(_, j)| *j)
            .map(|(p, _)| p.clone())
            .collect())
    }

    /// The index without the rows of `dropped` partitions.
    pub fn without(&self, dropped: &HashSet<Partition>) -> PolarsResult<Self> {
        if dropped.is_empty() {
            return Ok(Self::of(self.df.clone()));
        }
        let (of_row, list) = self.partitions()?;
        let gone: Vec<bool> = list.iter().map(|p| dropped.contains(p)).collect();
        let mask: BooleanChunked = of_row.iter().map(|&p| !gone[p as usize]).collect();
        Ok(Self::of(self.df.filter(&mask)?))
    }

    /// Writes the files of `months` under `dir`, each with the rows of its month, zstd-compressed
    /// and sorted by partition and hashes.
    pub fn write(
        &self,
        dir: &Path,
        months: &std::collections::BTreeSet<String>,
    ) -> anyhow::Result<()> {
        let dates = self.df.column(DATE)?.date()?.physical().clone();
        for m in months {
            let path = dir.join(keys_file(m));
            let why =
                |e: &dyn std::fmt::Display| anyhow::anyhow!("writing {}: {e}", path.display());
            let mask: BooleanChunked = match month_range(m) {
                None => dates.iter().map(|d| d.is_none()).collect(),
                Some((from, to)) => dates
                    .iter()
                    .map(|d| d.is_some_and(|d| d >= from && d < to))
                    .collect(),
            };
            let mut df = self.df.filter(&mask)?.sort(
                [ACCOUNT_ID, DATE, CALL_HASH, KEY_HASH],
                SortMultipleOptions::default().with_multithreaded(false),
            )?;
            df.rechunk_mut();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| why(&e))?;
            }
            let f = File::create(&path).map_err(|e| why(&e))?;
            ParquetWriter::new(f)
                .with_compression(ParquetCompression::Zstd(None))
                .finish(&mut df)
                .map_err(|e| why(&e))?;
        }
        Ok(())
    }
}

/// The days (since 1970-01-01) a month (`2026-11`) spans: [first, first of the next); `None`
/// for `none`, the partitions without a date.
fn month_range(month: &str) -> Option<(i32, i32)> {
    let first = crate::time::parse_date(&format!("{month}-01"))?;
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let next = match m {
        12 => format!("{:04}-01-01", y + 1),
        _ => format!("{y:04}-{:02}-01", m + 1),
    };
    Some((first, crate::time::parse_date(&next)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legs(rows: &[(&str, Option<&str>, &str, i32)]) -> DataFrame {
        let s = |name: &str, v: Vec<Option<&str>>| {
            StringChunked::from_iter_options(name.into(), v.into_iter()).into_column()
        };
        let mut cols = vec![s(CALL_ID, rows.iter().map(|r| Some(r.0)).collect())];
        for k in KEY.iter().filter(|k| **k != CALL_ID) {
            let v = rows
                .iter()
                .map(|r| r.1.filter(|_| *k == crate::schema::INTERACTION_ID))
                .collect();
            cols.push(s(k, v));
        }
        cols.push(s(ACCOUNT_ID, rows.iter().map(|r| Some(r.2)).collect()));
        cols.push(
            Int32Chunked::from_vec(DATE.into(), rows.iter().map(|r| r.3).collect())
                .into_date()
                .into_column(),
        );
        DataFrame::new(rows.len(), cols).expect("frame")
    }

    #[test]
    fn the_hash_is_xxh3_as_specified() {
        // XXH3-64 of the empty input, seed 0, from the specification's test vectors.
        assert_eq!(hash(""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn the_closure_follows_call_ids_and_interaction_keys_across_partitions() -> PolarsResult<()> {
        let mut ix = KeyIndex::empty()?;
        ix.push(&rows_of(&legs(&[
            ("a1", Some("i1"), "A", 1),
            ("a2", Some("i1"), "A", 2),
            ("b1", Some("i2"), "B", 1),
            ("c1", None, "C", 3),
        ]))?)?;
        // A new copy of a2 (its partition A/2 joins by call_id), whose interaction i1 has a leg
        // in A/1 (joins by key); B/1 and C/3 stay out.
        let got = ix.closure(&HashSet::new(), [hash("a2")].into(), HashSet::new())?;
        assert_eq!(got, [("A".to_owned(), Some(1)), ("A".to_owned(), Some(2))]);
        // The run's own partition C/3 brings nothing else.
        let got = ix.closure(
            &[("C".to_owned(), Some(3))].into(),
            HashSet::new(),
            HashSet::new(),
        )?;
        assert_eq!(got, [("C".to_owned(), Some(3))]);
        let kept = ix.without(&[("A".to_owned(), Some(1))].into())?;
        assert_eq!(kept.len(), 3);
        assert_eq!(kept.counts()?[&("A".to_owned(), Some(2))], 1);
        Ok(())
    }

    #[test]
    fn months_span_their_days() {
        let d = |s: &str| crate::time::parse_date(s);
        assert_eq!(month_range("2026-12"), d("2026-12-01").zip(d("2027-01-01")));
        assert_eq!(month_range("2024-02"), d("2024-02-01").zip(d("2024-03-01")));
        assert_eq!(month_range("none"), None);
    }
}
