//! The legs index: for every leg of the dataset, hashes of its call_id and of its interaction
//! key, and its partition. A merge plans from it which partitions it rewrites (see
//! [`crate::merge`]) instead of opening every legs file of the dataset.
//!
//! One Parquet file, `_catalog/legs_keys.parquet`, rewritten by every run that writes legs:
//! columns `call_hash` and `key_hash` (UInt64: XXH3-64 of the call_id and of the first of
//! `interaction_id`, `bridge_id`, `call_id` that is set, 0 for none) and `account_id` (String,
//! `_unassigned` for no account) and `date` (Date, null for none). XXH3's output is fixed by its
//! specification, so an index written by one rerate reads in every later one; the catalog
//! records the algorithm ([`KEYS_HASH`]). At 16 bytes of hashes a leg, a year of 3,000 legs a
//! night is about 18 MB read and written a night (see BENCHMARKS.md).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::interactions::KEY;
use crate::schema::{ACCOUNT_ID, CALL_ID, DATE};

/// The index file, relative to the output folder.
pub const KEYS_FILE: &str = "_catalog/legs_keys.parquet";
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
        Ok(KeyIndex { df })
    }

    /// Reads `out`'s index. Errors name the file.
    pub fn read(out: &Path) -> anyhow::Result<Self> {
        let path = out.join(KEYS_FILE);
        let why = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "{}: the dataset's legs index cannot be read: {e}; rebuild the dataset with --mode replace-all",
                path.display()
            )
        };
        let f = File::open(&path).map_err(|e| why(&e))?;
        let df = ParquetReader::new(f).finish().map_err(|e| why(&e))?;
        let want = Self::empty()?.df.schema().clone();
        if df.schema() != &want {
            return Err(why(&format!(
                "columns {:?}, expected {:?}",
                df.schema(),
                want
            )));
        }
        Ok(KeyIndex { df })
    }

    /// Adds the rows of `legs` ([`rows_of`]'s frame).
    pub fn push(&mut self, rows: &DataFrame) -> PolarsResult<()> {
        self.df.vstack_mut(rows)?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.df.height()
    }

    pub fn is_empty(&self) -> bool {
        self.df.height() == 0
    }

    /// Each row's partition, and the partitions by number.
    fn partitions(&self) -> PolarsResult<(Vec<u32>, Vec<Partition>)> {
        let accounts = self.df.column(ACCOUNT_ID)?.str()?;
        let dates = self.df.column(DATE)?.date()?.physical().clone();
        let mut ids: HashMap<(&str, Option<i32>), u32> = HashMap::new();
        let mut list = Vec::new();
        let mut of_row = Vec::with_capacity(self.df.height());
        for (a, d) in accounts.iter().zip(dates.iter()) {
            let key = (a.unwrap_or_default(), d);
            let id = *ids.entry(key).or_insert_with(|| {
                list.push((key.0.to_owned(), d));
                (list.len() - 1) as u32
            });
            of_row.push(id);
        }
        Ok((of_row, list))
    }

    /// Rows per partition.
    pub fn counts(&self) -> PolarsResult<HashMap<Partition, u64>> {
        let (of_row, list) = self.partitions()?;
        let mut n = vec![0u64; list.len()];
        for id in of_row {
            n[id as usize] += 1;
        }
        Ok(list.into_iter().zip(n).collect())
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
            .into_iter()
            .zip(joined)
            .filter_map(|(p, j)| j.then_some(p))
            .collect())
    }

    /// The index without the rows of `dropped` partitions.
    pub fn without(&self, dropped: &HashSet<Partition>) -> PolarsResult<Self> {
        if dropped.is_empty() {
            return Ok(KeyIndex {
                df: self.df.clone(),
            });
        }
        let (of_row, list) = self.partitions()?;
        let gone: Vec<bool> = list.iter().map(|p| dropped.contains(p)).collect();
        let mask: BooleanChunked = of_row.iter().map(|&p| !gone[p as usize]).collect();
        Ok(KeyIndex {
            df: self.df.filter(&mask)?,
        })
    }

    /// Writes the index to `dir`'s [`KEYS_FILE`], zstd-compressed, sorted by partition and
    /// hashes.
    pub fn write(&mut self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(KEYS_FILE);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let f =
            File::create(&path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        // In one order whatever the history: the same dataset has the same index, byte for byte.
        self.df = self.df.sort(
            [ACCOUNT_ID, DATE, CALL_HASH, KEY_HASH],
            SortMultipleOptions::default().with_multithreaded(false),
        )?;
        self.df.rechunk_mut();
        ParquetWriter::new(f)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut self.df)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        Ok(())
    }
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
}
