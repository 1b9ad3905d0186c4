//! The legs index: for every leg of the dataset, hashes of its call_id and of its interaction
//! key, and its partition. A merge plans from it which partitions it rewrites (see
//! [`crate::merge`]) instead of opening every legs file of the dataset.
//!
//! One Parquet file per day of the partitions' dates, `_catalog/keys/day=2026-11-02.parquet`
//! (cut as the partition list, [`super::shards`]; by month in format 2): a run reads them all
//! and rewrites only the days it touches. Columns: `call_hash` and `key_hash` (UInt64: XXH3-64
//! of the call_id and of the first of `interaction_id`, `bridge_id`, `call_id` that is set, 0
//! for none), `account_id` (String, `_unassigned` for no account) and `date` (Date, null for
//! none), sorted by partition and hashes, so the same dataset has the same files byte for
//! byte. XXH3's output is fixed by its specification, so an index written by one rerate reads
//! in every later one; the catalog records the algorithm ([`KEYS_HASH`]). 16 bytes of hashes a
//! leg: a year of 3,000 legs a night is about 18 MB read a night (see BENCHMARKS.md).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use polars::prelude::*;

use super::shards::Cut;
use crate::interactions::KEY;
use crate::schema::{ACCOUNT_ID, CALL_ID, DATE};

/// The index's folder, relative to the output folder.
pub(crate) const KEYS_DIR: &str = "_catalog/keys";

/// A shard's index file, relative to the output folder.
pub(crate) fn keys_file(cut: Cut, key: &str) -> String {
    cut.file(KEYS_DIR, key)
}
/// The hash the index holds, as the catalog names it.
pub(crate) const KEYS_HASH: &str = "xxh3-64";

const CALL_HASH: &str = "call_hash";
const KEY_HASH: &str = "key_hash";

/// A set of hashes (they are XXH3 already: foldhash's fast hash on top costs a multiply).
pub(crate) type Ids = HashSet<u64, foldhash::fast::RandomState>;

/// A partition: (account_id as its folder says it, `_unassigned` for none; days since
/// 1970-01-01).
pub(crate) type Partition = (String, Option<i32>);

/// The stable hash of a key.
pub(crate) fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// The index rows of a legs frame: `call_id`, the interaction key columns, `account_id`
/// (filled: `_unassigned` for none) and `date`.
pub(crate) fn rows_of(legs: &DataFrame) -> PolarsResult<DataFrame> {
    let (call_hash, key_hash): (Vec<u64>, Vec<u64>) = hashes(legs)?.into_iter().unzip();
    DataFrame::new(
        legs.height(),
        vec![
            UInt64Chunked::from_vec(CALL_HASH.into(), call_hash).into_column(),
            UInt64Chunked::from_vec(KEY_HASH.into(), key_hash).into_column(),
            legs.column(ACCOUNT_ID)?.clone(),
            legs.column(DATE)?.cast(&DataType::Date)?,
        ],
    )
}

/// Per leg of a frame with `call_id` and the interaction key columns, the hashes of its
/// call_id and of its interaction key (the first of [`KEY`] set); 0 for none.
pub(crate) fn hashes(legs: &DataFrame) -> PolarsResult<Vec<(u64, u64)>> {
    let keys: Vec<&StringChunked> = KEY
        .iter()
        .map(|k| legs.column(k)?.str())
        .collect::<PolarsResult<_>>()?;
    let calls = legs.column(CALL_ID)?.str()?;
    Ok((0..legs.height())
        .map(|i| {
            let call = calls.get(i).map_or(0, hash);
            let key = keys.iter().find_map(|c| c.get(i)).map_or(0, hash);
            (call, key)
        })
        .collect())
}

/// The index in memory, compact: per leg its hashes and a partition number (20 bytes a leg);
/// the partitions' names once each.
pub struct KeyIndex {
    /// Every partition, by number.
    parts: Vec<Partition>,
    call: Vec<u64>,
    key: Vec<u64>,
    part: Vec<u32>,
    /// The rows themselves, for an index built from a format 1 dataset's legs files or read
    /// from a format 2 dataset's month files (which have no day files to rewrite the days
    /// from).
    built: Option<DataFrame>,
}

impl KeyIndex {
    /// An empty index.
    pub fn empty() -> Self {
        KeyIndex {
            parts: Vec::new(),
            call: Vec::new(),
            key: Vec::new(),
            part: Vec::new(),
            built: None,
        }
    }

    /// The columns of an index file, with no row.
    fn schema() -> PolarsResult<Schema> {
        Ok(Schema::from_iter([
            Field::new(CALL_HASH.into(), DataType::UInt64),
            Field::new(KEY_HASH.into(), DataType::UInt64),
            Field::new(ACCOUNT_ID.into(), DataType::String),
            Field::new(DATE.into(), DataType::Date),
        ]))
    }

    /// Reads `out`'s index, the files of the shards `keys` cut by `cut`, one at a time.
    /// Errors name the file.
    pub fn read<'k>(
        out: &Path,
        cut: Cut,
        keys: impl IntoIterator<Item = &'k String>,
    ) -> anyhow::Result<Self> {
        let mut ix = Self::empty();
        let mut ids = HashMap::new();
        for k in keys {
            let df = Self::read_shard(out, cut, k)?;
            ix.add(&df, &mut ids)?;
        }
        Ok(ix)
    }

    /// The rows of `out`'s index file of the shard `key` cut by `cut`, its columns checked.
    pub fn read_shard(out: &Path, cut: Cut, key: &str) -> anyhow::Result<DataFrame> {
        let rel = keys_file(cut, key);
        let df = super::read_parquet(out, &rel, "the dataset's legs index")?;
        let want = Self::schema()?;
        if df.schema().as_ref() != &want {
            anyhow::bail!(
                "{}: the dataset's legs index has columns {:?}, expected {:?}; rebuild the dataset with --mode replace-all",
                out.join(&rel).display(),
                df.schema(),
                want
            );
        }
        Ok(df)
    }

    /// An index of `rows` ([`rows_of`]'s or [`Self::read_shard`]'s frames), kept whole to write
    /// every day's file from.
    pub fn build(rows: Vec<DataFrame>) -> PolarsResult<Self> {
        let mut ix = Self::empty();
        let mut ids = HashMap::new();
        for df in &rows {
            ix.add(df, &mut ids)?;
        }
        let mut all = DataFrame::empty_with_schema(&Self::schema()?);
        for df in rows {
            all.vstack_mut_owned(df)?;
        }
        ix.built = Some(all);
        Ok(ix)
    }

    /// Appends an index frame's rows ([`Self::read_shard`]'s or [`rows_of`]'s); `ids`: the
    /// partitions' numbers so far. The rows of one partition are next to each other in a file,
    /// so a row is first compared with the one before it.
    pub fn add(&mut self, df: &DataFrame, ids: &mut HashMap<Partition, u32>) -> PolarsResult<()> {
        let accounts = df.column(ACCOUNT_ID)?.str()?;
        let dates = df.column(DATE)?.date()?.physical().clone();
        self.call
            .extend(df.column(CALL_HASH)?.u64()?.into_no_null_iter());
        self.key
            .extend(df.column(KEY_HASH)?.u64()?.into_no_null_iter());
        let mut last: Option<(&str, Option<i32>, u32)> = None;
        for (a, d) in accounts.iter().zip(dates.iter()) {
            let a = a.unwrap_or_default();
            let id = match last {
                Some((la, ld, id)) if la == a && ld == d => id,
                _ => {
                    let parts = &mut self.parts;
                    *ids.entry((a.to_owned(), d)).or_insert_with(|| {
                        parts.push((a.to_owned(), d));
                        (parts.len() - 1) as u32
                    })
                }
            };
            last = Some((a, d, id));
            self.part.push(id);
        }
        Ok(())
    }

    /// How many legs it indexes.
    pub fn len(&self) -> usize {
        self.part.len()
    }

    pub fn is_empty(&self) -> bool {
        self.part.is_empty()
    }

    /// Rows per partition.
    pub fn counts(&self) -> HashMap<Partition, u64> {
        let mut n = vec![0u64; self.parts.len()];
        for &id in &self.part {
            n[id as usize] += 1;
        }
        self.parts.iter().cloned().zip(n).collect()
    }

    /// The partitions a run must rewrite: `start` (the run's own partitions that the dataset
    /// holds), then every partition holding a leg whose call_id or interaction key is among
    /// `calls`, `keys` or those of a partition already taken, until none is added. Hash
    /// collisions can only add a partition, never leave one out.
    ///
    /// Each round looks up only the ids the previous round brought (the legs of the partitions
    /// it added, found through a per-partition list of legs), so a night costs a pass over the
    /// index per round, usually two, with lookups in sets of the night's size.
    pub fn closure(
        &self,
        start: &HashSet<Partition>,
        calls: impl IntoIterator<Item = u64>,
        keys: impl IntoIterator<Item = u64>,
    ) -> Vec<Partition> {
        // The legs of each partition: `legs[offsets[p]..offsets[p + 1]]`.
        let mut offsets = vec![0usize; self.parts.len() + 1];
        for &p in &self.part {
            offsets[p as usize + 1] += 1;
        }
        for p in 0..self.parts.len() {
            offsets[p + 1] += offsets[p];
        }
        let mut next = offsets.clone();
        let mut legs = vec![0u32; self.part.len()];
        for (i, &p) in self.part.iter().enumerate() {
            legs[next[p as usize]] = i as u32;
            next[p as usize] += 1;
        }

        let mut joined: Vec<bool> = self.parts.iter().map(|p| start.contains(p)).collect();
        let mut added: Vec<usize> = (0..self.parts.len()).filter(|&p| joined[p]).collect();
        let (mut seen_calls, mut seen_keys) = (Ids::default(), Ids::default());
        let (mut new_calls, mut new_keys): (Ids, Ids) =
            (calls.into_iter().collect(), keys.into_iter().collect());
        loop {
            // Every leg of a partition just added brings its ids.
            for &p in &added {
                for &i in &legs[offsets[p]..offsets[p + 1]] {
                    let (c, k) = (self.call[i as usize], self.key[i as usize]);
                    if !seen_calls.contains(&c) {
                        new_calls.insert(c);
                    }
                    if !seen_keys.contains(&k) {
                        new_keys.insert(k);
                    }
                }
            }
            if new_calls.is_empty() && new_keys.is_empty() {
                break;
            }
            // A leg that meets one of the new ids brings its partition.
            added.clear();
            for (i, &p) in self.part.iter().enumerate() {
                let p = p as usize;
                if !joined[p]
                    && (new_calls.contains(&self.call[i]) || new_keys.contains(&self.key[i]))
                {
                    joined[p] = true;
                    added.push(p);
                }
            }
            seen_calls.extend(new_calls.drain());
            seen_keys.extend(new_keys.drain());
            if added.is_empty() {
                break;
            }
        }
        self.parts
            .iter()
            .zip(joined)
            .filter(|(_, j)| *j)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Writes the index files of the days `keys` under `dir`: for each, the rows the index had
    /// in it (read again from `prev`, the dataset's folder, or from the rows it was built from)
    /// but those of `dropped` partitions, and the rows of `added` in it; sorted by partition
    /// and hashes, zstd-compressed. `keep`: whether the old rows stay at all (not under
    /// `--mode replace-all`).
    pub fn write(
        &self,
        prev: &Path,
        dir: &Path,
        keys: &std::collections::BTreeSet<String>,
        keep: bool,
        dropped: &HashSet<Partition>,
        added: &[DataFrame],
    ) -> anyhow::Result<()> {
        for k in keys {
            let file = keys_file(Cut::Day, k);
            let mut old = match (&self.built, keep) {
                (_, false) => DataFrame::empty_with_schema(&Self::schema()?),
                (Some(all), true) => in_day(all, k)?,
                (None, true) if prev.join(&file).is_file() => {
                    super::read_parquet(prev, &file, "the dataset's legs index")?
                }
                (None, true) => DataFrame::empty_with_schema(&Self::schema()?),
            };
            old = without(&old, dropped)?;
            for rows in added {
                old.vstack_mut_owned(in_day(rows, k)?)?;
            }
            let mut df = old.sort(
                [ACCOUNT_ID, DATE, CALL_HASH, KEY_HASH],
                SortMultipleOptions::default().with_multithreaded(false),
            )?;
            df.rechunk_mut();
            super::write_parquet(dir, &file, &mut df)?;
        }
        Ok(())
    }
}

/// The rows of an index frame whose date is the day `key` (`YYYY-MM-DD`; `none`: no date).
fn in_day(df: &DataFrame, key: &str) -> PolarsResult<DataFrame> {
    let dates = df.column(DATE)?.date()?.physical().clone();
    let day = crate::time::parse_date(key);
    let mask: BooleanChunked = match (key, day) {
        ("none", _) => dates.iter().map(|d| d.is_none()).collect(),
        // A key that is no day (none is written): no row.
        (_, None) => dates.iter().map(|_| false).collect(),
        (_, Some(day)) => dates.iter().map(|d| d == Some(day)).collect(),
    };
    df.filter(&mask)
}

/// An index frame without the rows of `dropped` partitions.
fn without(df: &DataFrame, dropped: &HashSet<Partition>) -> PolarsResult<DataFrame> {
    if dropped.is_empty() || df.height() == 0 {
        return Ok(df.clone());
    }
    let accounts = df.column(ACCOUNT_ID)?.str()?;
    let dates = df.column(DATE)?.date()?.physical().clone();
    let mut last: Option<(&str, Option<i32>, bool)> = None;
    let mut keep = Vec::with_capacity(df.height());
    for (a, d) in accounts.iter().zip(dates.iter()) {
        let a = a.unwrap_or_default();
        let k = match last {
            Some((la, ld, k)) if la == a && ld == d => k,
            _ => !dropped.contains(&(a.to_owned(), d)),
        };
        last = Some((a, d, k));
        keep.push(k);
    }
    df.filter(&BooleanChunked::from_slice("keep".into(), &keep))
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
    fn the_closure_follows_call_ids_and_interaction_keys_across_partitions() -> anyhow::Result<()> {
        let rows = rows_of(&legs(&[
            ("a1", Some("i1"), "A", 1),
            ("a2", Some("i1"), "A", 2),
            ("b1", Some("i2"), "B", 1),
            ("c1", None, "C", 3),
        ]))?;
        let ix = KeyIndex::build(vec![rows.clone()])?;
        // A new copy of a2 (its partition A/2 joins by call_id), whose interaction i1 has a leg
        // in A/1 (joins by key); B/1 and C/3 stay out.
        let got = ix.closure(&HashSet::new(), [hash("a2")], []);
        assert_eq!(got, [("A".to_owned(), Some(1)), ("A".to_owned(), Some(2))]);
        // The run's own partition C/3 brings nothing else.
        let got = ix.closure(&[("C".to_owned(), Some(3))].into(), [], []);
        assert_eq!(got, [("C".to_owned(), Some(3))]);
        // Written without A/1, read back: three legs, in their partitions, a file a day.
        let dir = tempfile::tempdir()?;
        let days: std::collections::BTreeSet<String> =
            (1..=4).map(crate::time::format_date).collect();
        let dropped = [("A".to_owned(), Some(1))].into();
        ix.write(dir.path(), dir.path(), &days, true, &dropped, &[])?;
        let back = KeyIndex::read(dir.path(), Cut::Day, &days)?;
        assert_eq!(back.len(), 3);
        assert_eq!(back.counts()[&("A".to_owned(), Some(2))], 1);
        assert!(!back.counts().contains_key(&("A".to_owned(), Some(1))));
        assert!(dir.path().join(keys_file(Cut::Day, "1970-01-03")).is_file());
        // Rewritten from its own files with a row added: four.
        let added = rows_of(&legs(&[("d1", None, "D", 4)]))?;
        ix.write(dir.path(), dir.path(), &days, true, &HashSet::new(), &[])?;
        let again = KeyIndex::read(dir.path(), Cut::Day, &days)?;
        back.write(
            dir.path(),
            dir.path(),
            &days,
            true,
            &HashSet::new(),
            &[added],
        )?;
        assert_eq!(again.len(), 4);
        assert_eq!(KeyIndex::read(dir.path(), Cut::Day, &days)?.len(), 5);
        Ok(())
    }
}
