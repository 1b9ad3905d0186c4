//! Bounded memory: frames routed into hash buckets, held in memory up to a byte budget, and
//! spilled beyond it to Arrow IPC files in the staging folder, compressed with zstd level 1 (kept
//! fields make a leg's columns larger than its JSON text: uncompressed, five million legs
//! filled 19 GB of spill).
//!
//! A run routes its legs twice. Parsed legs go to buckets by interaction key, so that a bucket
//! holds every copy and every leg of its calls (deduplication, rating, reconciliation and
//! interactions then run one bucket at a time). Their results go to buckets by (account_id,
//! date), so that a bucket holds whole partitions and each partition is written as one file.
//! A run that fits in the budget never touches the disk: it is one bucket, held in memory.

use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use polars::prelude::*;
use rayon::prelude::*;

use crate::schema::{ACCOUNT_ID, DATE};

/// Frames in `n` buckets: in memory while their estimated size stays under the budget, then
/// written out (all held frames at once, one file per bucket) and dropped from memory.
pub struct Buckets {
    dir: PathBuf,
    name: &'static str,
    budget: usize,
    state: Mutex<State>,
}

struct State {
    held: Vec<Vec<DataFrame>>,
    held_bytes: usize,
    files: Vec<Vec<PathBuf>>,
    flushes: usize,
}

impl Buckets {
    /// `n` buckets named `name`, spilled under `dir` (created when first needed).
    pub fn new(dir: &Path, name: &'static str, n: usize, budget: usize) -> Self {
        let n = n.max(1);
        Buckets {
            dir: dir.to_owned(),
            name,
            budget,
            state: Mutex::new(State {
                held: vec![Vec::new(); n],
                held_bytes: 0,
                files: vec![Vec::new(); n],
                flushes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the lists half-updated: every change is one push.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many buckets (at least one).
    pub fn count(&self) -> usize {
        self.lock().held.len()
    }

    /// Whether anything went to disk.
    pub fn spilled(&self) -> bool {
        self.lock().flushes > 0
    }

    /// Adds `df`'s rows, split by `bucket` (one entry per row), to the buckets.
    pub fn push_split(&self, df: &DataFrame, bucket: &[u32]) -> PolarsResult<()> {
        let n = self.count();
        if n == 1 {
            return self.push(0, df.clone());
        }
        let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); n];
        for (i, &b) in bucket.iter().enumerate() {
            rows[b as usize].push(i as IdxSize);
        }
        let mut pieces = Vec::new();
        for (b, idx) in rows.into_iter().enumerate() {
            if !idx.is_empty() {
                pieces.push((b, df.take(&IdxCa::from_vec("idx".into(), idx))?));
            }
        }
        // The pieces share `df`'s text buffers: together they hold `df`'s size, not n times it.
        self.add(pieces, df.estimated_size())
    }

    /// Adds a frame to bucket `b`.
    pub fn push(&self, b: usize, df: DataFrame) -> PolarsResult<()> {
        let size = df.estimated_size();
        self.add(vec![(b, df)], size)
    }

    /// Adds frames of `size` bytes in all; past the budget, everything held is written out.
    fn add(&self, pieces: Vec<(usize, DataFrame)>, size: usize) -> PolarsResult<()> {
        let full = {
            let mut s = self.lock();
            for (b, df) in pieces {
                s.held[b].push(df);
            }
            s.held_bytes += size;
            if s.held_bytes > self.budget {
                s.held_bytes = 0;
                s.flushes += 1;
                let n = s.held.len();
                Some((
                    std::mem::replace(&mut s.held, vec![Vec::new(); n]),
                    s.flushes,
                ))
            } else {
                None
            }
        };
        // Written outside the lock: other workers keep adding while this one writes.
        if let Some((held, seq)) = full {
            self.write(held, seq)?;
        }
        Ok(())
    }

    /// Writes everything still held, so that every row is on disk (for [`Buckets::scan`]).
    pub fn flush(&self) -> PolarsResult<()> {
        let (held, seq) = {
            let mut s = self.lock();
            s.held_bytes = 0;
            s.flushes += 1;
            let n = s.held.len();
            (
                std::mem::replace(&mut s.held, vec![Vec::new(); n]),
                s.flushes,
            )
        };
        self.write(held, seq)
    }

    fn write(&self, held: Vec<Vec<DataFrame>>, seq: usize) -> PolarsResult<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| polars_err!(ComputeError: "creating {}: {e}", self.dir.display()))?;
        let written: Vec<(usize, PathBuf)> = held
            .into_par_iter()
            .enumerate()
            .filter(|(_, frames)| !frames.is_empty())
            .map(|(b, frames)| {
                // One chunk, so one record batch: the writer compresses every buffer of every
                // batch with a fresh zstd context, which for a bucket's many small pieces cost
                // more than the copy.
                let mut df = compact(concat(frames)?)?;
                let path = self
                    .dir
                    .join(format!("{}-{b:05}-{seq:05}.arrow", self.name));
                let failed = |e: &dyn std::fmt::Display| {
                    polars_err!(ComputeError: "spilling to {}: {e}", path.display())
                };
                let file = File::create(&path).map_err(|e| failed(&e))?;
                IpcWriter::new(BufWriter::with_capacity(1 << 20, file))
                    // zstd 1 against none: 1/5 of the disk for ~35% more time on 200k legs
                    // (LZ4: 1/3 of the disk, nearly the same time).
                    .with_compression(Some(IpcCompression::ZSTD(
                        polars_utils::compression::ZstdLevel::try_new(1)?,
                    )))
                    .finish(&mut df)
                    .map_err(|e| failed(&e))?;
                Ok((b, path))
            })
            .collect::<PolarsResult<_>>()?;
        let mut s = self.lock();
        for (b, path) in written {
            s.files[b].push(path);
        }
        Ok(())
    }

    /// Bucket `b`'s rows: those held and those spilled, as one frame (None when empty).
    pub fn get(&self, b: usize) -> PolarsResult<Option<DataFrame>> {
        let (mut frames, files) = {
            let s = self.lock();
            (s.held[b].clone(), s.files[b].clone())
        };
        for path in files {
            let file = File::open(&path)
                .map_err(|e| polars_err!(ComputeError: "reading spill {}: {e}", path.display()))?;
            frames.push(IpcReader::new(file).finish()?);
        }
        if frames.is_empty() {
            return Ok(None);
        }
        concat(frames).map(Some)
    }

    /// Bucket `b`'s rows, dropped from memory and disk.
    pub fn take(&self, b: usize) -> PolarsResult<Option<DataFrame>> {
        let df = self.get(b)?;
        let files = {
            let mut s = self.lock();
            s.held[b].clear();
            std::mem::take(&mut s.files[b])
        };
        for path in files {
            fs::remove_file(&path)?;
        }
        Ok(df)
    }

    /// Every row as one lazy frame: the held frames when nothing was spilled, else a scan of
    /// the spilled files (call [`Buckets::flush`] first), so a query reads only the columns
    /// it uses.
    pub fn scan(&self) -> PolarsResult<LazyFrame> {
        let (held, files) = {
            let s = self.lock();
            (
                s.held.iter().flatten().cloned().collect::<Vec<_>>(),
                s.files.iter().flatten().cloned().collect::<Vec<_>>(),
            )
        };
        if files.is_empty() {
            polars_ensure!(!held.is_empty(), ComputeError: "scan of {}, which holds no frame", self.name);
            // Stacked, not copied: a query reads chunked columns as well.
            return Ok(stack(held)?.lazy());
        }
        polars_ensure!(held.is_empty(), ComputeError: "scan of {} before its flush", self.name);
        let paths: Vec<PlRefPath> = files
            .iter()
            .map(|p| PlRefPath::new(p.to_string_lossy().into_owned()))
            .collect();
        LazyFrame::scan_ipc_sources(
            ScanSources::Paths(paths.into_iter().collect()),
            Default::default(),
            Default::default(),
        )
    }
}

/// `df` with its text columns holding only their own bytes. A bucket's rows, taken from a larger
/// frame, still point into that frame's text buffers, which a writer would otherwise write
/// whole into every bucket's file.
fn compact(df: DataFrame) -> PolarsResult<DataFrame> {
    let height = df.height();
    let columns = df
        .into_columns()
        .into_iter()
        .map(|c| match c.dtype() {
            DataType::String => {
                let ca = c.str()?;
                let chunks = ca.downcast_iter().map(|a| a.clone().gc());
                Ok(StringChunked::from_chunk_iter(ca.name().clone(), chunks).into_column())
            }
            _ => Ok(c),
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    DataFrame::new(height, columns)
}

/// Stacks frames of one schema, each column's chunks side by side.
fn stack(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut it = frames.into_iter();
    let mut out = it.next().unwrap_or_default();
    for df in it {
        out.vstack_mut_owned(df)?;
    }
    Ok(out)
}

/// Stacks frames of one schema into one chunk per column.
pub fn concat(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut out = stack(frames)?;
    out.rechunk_mut_par();
    Ok(out)
}

/// A hasher with fixed keys: the same key lands in the same bucket in every worker.
fn hasher() -> impl Hasher {
    std::hash::DefaultHasher::new()
}

/// The hash of a text key, as the buckets and the duplicate index use it.
pub fn hash_str(s: &str) -> u64 {
    let mut h = hasher();
    s.hash(&mut h);
    h.finish()
}

/// Per row, the bucket (of `n`) of the first of `keys` that is not null (null when all are).
pub fn by_first_key(df: &DataFrame, keys: &[&str], n: usize) -> PolarsResult<Vec<u32>> {
    let cols: Vec<&StringChunked> = keys
        .iter()
        .map(|k| df.column(k)?.str())
        .collect::<PolarsResult<_>>()?;
    Ok((0..df.height())
        .map(|i| {
            let key = cols.iter().find_map(|c| c.get(i)).unwrap_or("");
            (hash_str(key) % n as u64) as u32
        })
        .collect())
}

/// Per row, the bucket (of `n`) of its partition, (account_id, date).
pub fn by_partition(df: &DataFrame, n: usize) -> PolarsResult<Vec<u32>> {
    let acct = df.column(ACCOUNT_ID)?.str()?;
    let date = df.column(DATE)?.date()?.physical();
    Ok(acct
        .iter()
        .zip(date.iter())
        .map(|(a, d)| {
            let mut h = hasher();
            (a, d).hash(&mut h);
            (h.finish() % n as u64) as u32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ids: &[&str]) -> DataFrame {
        df!("call_id" => ids, "n" => (0..ids.len() as i64).collect::<Vec<_>>()).unwrap_or_default()
    }

    #[test]
    fn spilled_rows_come_back_whole_and_in_their_bucket() -> PolarsResult<()> {
        let dir = tempfile::tempdir()?;
        // A budget of one byte: every push goes to disk.
        let b = Buckets::new(dir.path(), "t", 3, 1);
        let ids = ["a", "b", "c", "d", "e", "f", "a", "b"];
        let df = frame(&ids);
        let route = by_first_key(&df, &["call_id"], 3)?;
        b.push_split(&df, &route)?;
        b.push_split(&df, &route)?;
        assert!(b.spilled());
        let mut seen = 0;
        for k in 0..3 {
            let Some(part) = b.get(k)? else { continue };
            seen += part.height();
            for id in part.column("call_id")?.str()?.iter().flatten() {
                assert_eq!(hash_str(id) % 3, k as u64, "{id} in bucket {k}");
            }
        }
        assert_eq!(seen, 16);
        let all = b.scan()?.collect()?;
        assert_eq!(all.height(), 16);
        assert_eq!(all.column("n")?.i64()?.sum(), Some(2 * 28));
        let first = b.take(0)?.map_or(0, |d| d.height());
        assert_eq!(b.get(0)?.map_or(0, |d| d.height()), 0);
        assert!(first > 0);
        Ok(())
    }

    #[test]
    fn under_budget_nothing_touches_the_disk() -> PolarsResult<()> {
        let dir = tempfile::tempdir()?;
        let b = Buckets::new(&dir.path().join("spill"), "t", 1, 1 << 30);
        b.push_split(&frame(&["a", "b"]), &[0, 0])?;
        assert!(!b.spilled());
        assert!(!dir.path().join("spill").exists());
        assert_eq!(b.scan()?.collect()?.height(), 2);
        Ok(())
    }
}
