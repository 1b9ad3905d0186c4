//! Bounded memory: frames routed into hash buckets, held in memory up to a byte budget, and
//! spilled beyond it to files in the staging folder.
//!
//! Parsed legs go to buckets by partition (account_id, date), so that a bucket holds every copy
//! of its call_ids (bar the rare ones whose copies disagree on the partition) and whole
//! partitions: deduplication, rating and reconciliation run one bucket at a time, and each
//! partition is written as one file. The few columns interactions need go to buckets by
//! interaction key, and the interactions and reconciliation rows to buckets by partition.
//! A run that fits in the budget never touches the disk: it is one bucket, held in memory.
//!
//! Buckets read back whole spill as an Arrow IPC stream inside one zstd level-1 stream (kept
//! fields make a leg's columns larger than its JSON text: uncompressed, five million legs filled
//! 19 GB of spill). Buckets the reports scan spill as Arrow IPC files with LZ4-compressed
//! buffers, which a lazy scan reads a column at a time.

use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use polars::prelude::*;
use polars_arrow::io::ipc;
use rayon::prelude::*;

use crate::schema::{ACCOUNT_ID, DATE, UNASSIGNED_ACCOUNT};

/// How a bucket's spill files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpillFormat {
    /// An Arrow IPC stream inside one zstd stream: one compression context per file, the
    /// cheapest to write and read back whole. For buckets read a bucket at a time.
    Stream,
    /// An Arrow IPC file with LZ4-compressed buffers, which a lazy scan reads a column at a time.
    /// For the small tables that the reports query.
    ///
    /// LZ4, not zstd: the IPC writer and reader set up a compression context for every buffer,
    /// and zstd's are costly to set up. With 1M legs at `--memory 200M`, where these tables
    /// spill in 66 buckets, LZ4 took routing, the tables' write and the reports from 5.8-6.8 s
    /// (zstd level 1) to 4.5-4.9 s over four pairs of runs (uncompressed: 4.4-5.5 s). At 5M
    /// legs the difference is inside those stages' run-to-run noise.
    File,
}

/// Frames in `n` buckets: in memory while their estimated size stays under the budget, then
/// written out (all held frames at once, one file per bucket) and dropped from memory.
pub(crate) struct Buckets {
    dir: PathBuf,
    name: &'static str,
    budget: usize,
    format: SpillFormat,
    state: Mutex<State>,
}

struct State {
    held: Vec<Vec<DataFrame>>,
    held_bytes: usize,
    files: Vec<Vec<PathBuf>>,
    flushes: usize,
}

impl State {
    /// Every held frame, to be written as flush number `seq` (returned with them).
    fn take_held(&mut self) -> (Vec<Vec<DataFrame>>, usize) {
        self.held_bytes = 0;
        self.flushes += 1;
        let n = self.held.len();
        (
            std::mem::replace(&mut self.held, vec![Vec::new(); n]),
            self.flushes,
        )
    }
}

impl Buckets {
    /// `n` buckets named `name`, spilled under `dir` (created when first needed).
    pub(crate) fn new(
        dir: &Path,
        name: &'static str,
        n: usize,
        budget: usize,
        format: SpillFormat,
    ) -> Self {
        let n = n.max(1);
        Buckets {
            dir: dir.to_owned(),
            name,
            budget,
            format,
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
    pub(crate) fn count(&self) -> usize {
        self.lock().held.len()
    }

    /// Whether anything went to disk.
    pub(crate) fn spilled(&self) -> bool {
        self.lock().flushes > 0
    }

    /// Adds `df`'s rows, split by `bucket` (one entry per row), to the buckets. A frame
    /// without rows goes to the first bucket, so that a table without rows keeps its columns.
    pub(crate) fn push_split(&self, df: &DataFrame, bucket: &[u32]) -> PolarsResult<()> {
        let n = self.count();
        if n == 1 || df.height() == 0 {
            return self.push(0, df.clone());
        }
        let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); n];
        for (i, &b) in bucket.iter().enumerate() {
            rows[b as usize].push(i as IdxSize);
        }
        let mut pieces = Vec::new();
        for (b, idx) in rows.into_iter().enumerate() {
            if !idx.is_empty() {
                // A piece would share `df`'s text buffers, which a spill file would then hold
                // whole for every bucket: it gets its own.
                pieces.push((b, compact(df.take(&IdxCa::from_vec("idx".into(), idx))?)?));
            }
        }
        self.add(pieces, held_size(df))
    }

    /// Adds a frame to bucket `b`.
    pub(crate) fn push(&self, b: usize, df: DataFrame) -> PolarsResult<()> {
        let size = held_size(&df);
        self.add(vec![(b, df)], size)
    }

    /// Adds to bucket `b` a frame that may share text buffers with a larger one: it gets its
    /// own first, as [`Buckets::push_split`]'s pieces do.
    pub(crate) fn push_own(&self, b: usize, df: DataFrame) -> PolarsResult<()> {
        self.push(b, compact(df)?)
    }

    /// Adds frames of `size` bytes in all; past the budget, everything held is written out.
    fn add(&self, pieces: Vec<(usize, DataFrame)>, size: usize) -> PolarsResult<()> {
        let full = {
            let mut s = self.lock();
            for (b, df) in pieces {
                s.held[b].push(df);
            }
            s.held_bytes += size;
            (s.held_bytes > self.budget).then(|| s.take_held())
        };
        // Written outside the lock: other workers keep adding while this one writes.
        if let Some((held, seq)) = full {
            self.write(held, seq)?;
        }
        Ok(())
    }

    /// Writes everything still held, so that every row is on disk (for [`Buckets::scan`]).
    pub(crate) fn flush(&self) -> PolarsResult<()> {
        let (held, seq) = self.lock().take_held();
        self.write(held, seq)
    }

    fn write(&self, held: Vec<Vec<DataFrame>>, seq: usize) -> PolarsResult<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| polars_err!(ComputeError: "creating {}: {e}", self.dir.display()))?;
        let ext = match self.format {
            SpillFormat::Stream => "arrows.zst",
            SpillFormat::File => "arrow",
        };
        let written: Vec<(usize, PathBuf)> = held
            .into_par_iter()
            .enumerate()
            .filter(|(_, frames)| !frames.is_empty())
            .map(|(b, frames)| {
                let path = self
                    .dir
                    .join(format!("{}-{b:05}-{seq:05}.{ext}", self.name));
                let failed = |e: &dyn std::fmt::Display| {
                    polars_err!(ComputeError: "spilling to {}: {e}", path.display())
                };
                let file = File::create(&path).map_err(|e| failed(&e))?;
                let file = BufWriter::with_capacity(1 << 20, file);
                match self.format {
                    SpillFormat::Stream => {
                        write_stream(stack(frames)?, file).map_err(|e| failed(&e))?;
                    }
                    SpillFormat::File => {
                        // One chunk, so one record batch: the writer compresses every buffer of
                        // every batch with a fresh context.
                        let mut df = concat(frames)?;
                        IpcWriter::new(file)
                            .with_compression(Some(IpcCompression::LZ4))
                            .finish(&mut df)
                            .map_err(|e| failed(&e))?;
                    }
                }
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
    pub(crate) fn get(&self, b: usize) -> PolarsResult<Option<DataFrame>> {
        let (mut frames, files) = {
            let s = self.lock();
            (s.held[b].clone(), s.files[b].clone())
        };
        // The files in parallel: each is one zstd stream, decoded on one thread.
        let read: Vec<DataFrame> = files
            .par_iter()
            .map(|path| {
                let failed = |e: &dyn std::fmt::Display| {
                    polars_err!(ComputeError: "reading spill {}: {e}", path.display())
                };
                let file = File::open(path).map_err(|e| failed(&e))?;
                match self.format {
                    SpillFormat::Stream => read_stream(file).map_err(|e| failed(&e)),
                    SpillFormat::File => IpcReader::new(file).finish(),
                }
            })
            .collect::<PolarsResult<_>>()?;
        frames.extend(read);
        if frames.is_empty() {
            return Ok(None);
        }
        // One chunk: the later steps gather and compute much faster than over a bucket's many
        // small record batches (on 1M legs, writing took 60% longer and reconciling 17 times).
        concat(frames).map(Some)
    }

    /// Bucket `b`'s rows, dropped from memory and disk.
    pub(crate) fn take(&self, b: usize) -> PolarsResult<Option<DataFrame>> {
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
    pub(crate) fn scan(&self) -> PolarsResult<LazyFrame> {
        polars_ensure!(self.format == SpillFormat::File, ComputeError: "scan of {}, spilled as a stream", self.name);
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

/// What holding `df` costs, estimated: its bytes, plus the unfilled part of the text buffers. A
/// text column's data starts in an 8 KiB block, so the many small frames that parse tasks build
/// for many buckets take much more memory than their bytes (at 65 buckets, about three times).
fn held_size(df: &DataFrame) -> usize {
    const BLOCK: usize = 8 << 10;
    let slack: usize = df
        .columns()
        .iter()
        .filter_map(|c| c.str().ok())
        .map(|s| s.chunks().len() * BLOCK / 2)
        .sum();
    df.estimated_size() + slack
}

/// `df` with its text columns holding only their own bytes. A bucket's rows, taken from a larger
/// frame, still point into that frame's text buffers.
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

/// Writes `df` as an Arrow IPC stream, a record batch per chunk, through one zstd level-1
/// stream. (Arrow's own IPC compression starts a zstd context for every buffer of every batch,
/// and creating those contexts cost more than compressing.)
fn write_stream(mut df: DataFrame, to: impl Write) -> PolarsResult<()> {
    df.align_chunks_par();
    let mut zst = zstd::Encoder::new(to, 1)?;
    let mut w =
        ipc::write::StreamWriter::new(&mut zst, ipc::write::WriteOptions { compression: None });
    w.start(&df.schema().to_arrow(CompatLevel::newest()), None)?;
    for batch in df.iter_chunks(CompatLevel::newest(), false) {
        w.write(&batch, None)?;
    }
    w.finish()?;
    zst.finish()?.flush()?;
    Ok(())
}

/// Reads back what [`write_stream`] wrote.
fn read_stream(file: File) -> PolarsResult<DataFrame> {
    let zst = zstd::Decoder::new(file)?;
    IpcStreamReader::new(Forward { inner: zst, pos: 0 })
        .set_rechunk(false)
        .finish()
}

/// A reader that knows its position and can only seek forward (by reading), which is all the
/// IPC stream reader asks of it.
struct Forward<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Forward<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for Forward<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match pos {
            SeekFrom::Current(n) if n >= 0 => {
                let skipped =
                    std::io::copy(&mut (&mut self.inner).take(n as u64), &mut std::io::sink())?;
                self.pos += skipped;
                Ok(self.pos)
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "a zstd stream only seeks forward",
            )),
        }
    }
}

/// Stacks frames of one schema, each column's chunks side by side.
pub(crate) fn stack(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut it = frames.into_iter();
    let mut out = it.next().unwrap_or_default();
    for df in it {
        out.vstack_mut_owned(df)?;
    }
    Ok(out)
}

/// Stacks frames of one schema into one chunk per column.
pub(crate) fn concat(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut out = stack(frames)?;
    out.rechunk_mut_par();
    Ok(out)
}

/// A hasher with fixed keys: the same key lands in the same bucket in every worker.
fn hasher() -> impl Hasher {
    std::hash::DefaultHasher::new()
}

/// The hash of a text key, as the buckets and the duplicate index use it.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h = hasher();
    s.hash(&mut h);
    h.finish()
}

/// Per row, the bucket (of `n`) of the first of `keys` that is not null (null when all are).
pub(crate) fn by_first_key(df: &DataFrame, keys: &[&str], n: usize) -> PolarsResult<Vec<u32>> {
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

/// A 32-bit id of the partition (account_id, date); a leg without an account goes where the
/// unassigned account's partition does.
pub(crate) fn partition_id(account: Option<&str>, date: Option<i32>) -> u32 {
    let mut h = hasher();
    (account.unwrap_or(UNASSIGNED_ACCOUNT), date).hash(&mut h);
    h.finish() as u32
}

/// Per row, its partition: (account_id, date as days).
pub(crate) fn partition_keys(
    df: &DataFrame,
) -> PolarsResult<impl Iterator<Item = (Option<&str>, Option<i32>)> + '_> {
    let acct = df.column(ACCOUNT_ID)?.str()?;
    let date = df.column(DATE)?.date()?.physical();
    Ok(acct.iter().zip(date.iter()))
}

/// Per row, [`partition_id`].
pub(crate) fn partition_ids(df: &DataFrame) -> PolarsResult<Vec<u32>> {
    Ok(partition_keys(df)?
        .map(|(a, d)| partition_id(a, d))
        .collect())
}

/// Which of `n` buckets each (account_id, date) partition goes to.
///
/// A partition goes, when first met, to the bucket with the fewest legs so far, then the fewest
/// partitions (then the lowest number), and stays there. Hashing partitions into buckets left
/// them uneven: with 5.4 partitions a bucket on average (5M legs, 65 buckets), the largest got
/// 11, and a bucket is read and deduplicated whole, so the largest set the run's peak memory.
/// Which bucket a partition lands in depends on the order the parse tasks meet them, but no
/// output does: each partition is still written whole from one bucket, and copies of a call
/// in different buckets are found by the call_id index either way.
#[derive(Debug)]
pub struct Partitions {
    n: usize,
    state: Mutex<Assignment>,
}

#[derive(Debug, Default)]
struct Assignment {
    bucket_of: PartitionMap,
    legs: Vec<u64>,
    partitions: Vec<u64>,
}

/// Partition -> bucket, looked up without allocating: by account, then among its few dates.
#[derive(Debug, Default)]
pub struct PartitionMap(std::collections::HashMap<Box<str>, Vec<(Option<i32>, u32)>>);

impl PartitionMap {
    pub fn get(&self, account: &str, date: Option<i32>) -> Option<u32> {
        let dates = self.0.get(account)?;
        dates.iter().find(|(d, _)| *d == date).map(|&(_, b)| b)
    }

    /// Every partition: (account, date, bucket).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<i32>, u32)> {
        self.0
            .iter()
            .flat_map(|(a, dates)| dates.iter().map(move |&(d, b)| (&**a, d, b)))
    }

    pub fn insert(&mut self, account: &str, date: Option<i32>, b: u32) {
        match self.0.get_mut(account) {
            Some(dates) => dates.push((date, b)),
            None => {
                self.0.insert(Box::from(account), vec![(date, b)]);
            }
        }
    }
}

impl Partitions {
    /// `n` buckets (at least one).
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Partitions {
            n,
            state: Mutex::new(Assignment {
                legs: vec![0; n],
                partitions: vec![0; n],
                ..Default::default()
            }),
        }
    }

    /// How many buckets.
    pub fn count(&self) -> usize {
        self.n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Assignment> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bucket of the partition (`account`, `date`), chosen now if it is new.
    pub fn bucket(&self, account: Option<&str>, date: Option<i32>) -> u32 {
        if self.n == 1 {
            return 0;
        }
        let account = account.unwrap_or(UNASSIGNED_ACCOUNT);
        let mut s = self.lock();
        if let Some(b) = s.bucket_of.get(account, date) {
            return b;
        }
        let b = (0..self.n)
            .min_by_key(|&b| (s.legs[b], s.partitions[b], b))
            .unwrap_or(0);
        s.partitions[b] += 1;
        s.bucket_of.insert(account, date, b as u32);
        b as u32
    }

    /// [`Partitions::bucket`], asked of `cache` first: a parse task keeps its own, so that it
    /// takes the shared lock once per partition, not once per leg.
    pub fn bucket_cached(
        &self,
        cache: &mut PartitionMap,
        account: Option<&str>,
        date: Option<i32>,
    ) -> u32 {
        if self.n == 1 {
            return 0;
        }
        let key = account.unwrap_or(UNASSIGNED_ACCOUNT);
        if let Some(b) = cache.get(key, date) {
            return b;
        }
        let b = self.bucket(account, date);
        cache.insert(key, date, b);
        b
    }

    /// Counts `legs` more legs in bucket `b`, which the next new partitions are weighed by.
    pub fn add_legs(&self, b: u32, legs: usize) {
        if let Some(l) = self.lock().legs.get_mut(b as usize) {
            *l += legs as u64;
        }
    }

    /// Per row of `df`, the bucket of its partition.
    pub fn of_rows(&self, df: &DataFrame) -> PolarsResult<Vec<u32>> {
        let mut cache = PartitionMap::default();
        Ok(partition_keys(df)?
            .map(|(a, d)| self.bucket_cached(&mut cache, a, d))
            .collect())
    }
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
        let b = Buckets::new(dir.path(), "t", 3, 1, SpillFormat::File);
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
    fn a_frame_without_rows_keeps_its_columns() -> PolarsResult<()> {
        let dir = tempfile::tempdir()?;
        let b = Buckets::new(dir.path(), "t", 3, 1 << 30, SpillFormat::File);
        b.push_split(&frame(&[]), &[])?;
        let all = b.scan()?.collect()?;
        assert_eq!(all.height(), 0);
        assert_eq!(all.get_column_names(), ["call_id", "n"]);
        Ok(())
    }

    #[test]
    fn partitions_go_to_the_least_loaded_bucket_and_stay_there() {
        let p = Partitions::new(3);
        // Three new partitions: one to each bucket, in order.
        assert_eq!(p.bucket(Some("a"), Some(1)), 0);
        assert_eq!(p.bucket(Some("a"), Some(2)), 1);
        assert_eq!(p.bucket(None, Some(1)), 2);
        // Known ones keep their bucket; no account is the unassigned account.
        assert_eq!(p.bucket(Some("a"), Some(2)), 1);
        assert_eq!(p.bucket(Some(UNASSIGNED_ACCOUNT), Some(1)), 2);
        // Bucket 0 has the most legs, bucket 2 the fewest: the next partition goes to 2, then
        // to 1 (fewer legs than 0, though as many partitions).
        p.add_legs(0, 100);
        p.add_legs(1, 50);
        p.add_legs(2, 10);
        assert_eq!(p.bucket(Some("b"), None), 2);
        p.add_legs(2, 60);
        assert_eq!(p.bucket(Some("c"), Some(1)), 1);
        let mut cache = PartitionMap::default();
        assert_eq!(p.bucket_cached(&mut cache, Some("c"), Some(1)), 1);
        assert_eq!(cache.get("c", Some(1)), Some(1));
        // One bucket: everything in it.
        assert_eq!(Partitions::new(1).bucket(Some("z"), Some(9)), 0);
    }

    #[test]
    fn under_budget_nothing_touches_the_disk() -> PolarsResult<()> {
        let dir = tempfile::tempdir()?;
        let b = Buckets::new(
            &dir.path().join("spill"),
            "t",
            1,
            1 << 30,
            SpillFormat::File,
        );
        b.push_split(&frame(&["a", "b"]), &[0, 0])?;
        assert!(!b.spilled());
        assert!(!dir.path().join("spill").exists());
        assert_eq!(b.scan()?.collect()?.height(), 2);
        Ok(())
    }
}
