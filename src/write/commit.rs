//! Atomic, nightly-safe output.
//!
//! A run writes everything into `DIR/.rerate-staging/data/`, laid out as the final folder. When
//! all of it is written, one `syncfs` makes it durable (on Linux; elsewhere, or where the file
//! system refuses it, each file is synced), and the run writes a journal
//! (`.rerate-staging/COMMIT`: what to move into place, then the files to remove) and renames it
//! into place: that rename is the commit point. The journal is then carried out: a staged folder
//! whose final path does not exist yet (a new table, account or day) is renamed into place whole,
//! any other staged file is renamed over its final path (a reader sees the old file or the new
//! one, never half of one), the files it replaces are removed, and `manifest.json` moves last. A run killed before the commit point leaves the
//! previous output untouched, and the next run deletes its staging folder; a run killed after
//! it is finished by the next run, which carries out the journal before anything else (both
//! steps are idempotent). `DIR/.rerate.lock` keeps two runs from writing the same folder.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{io_err, WriteError};

/// The staging folder, inside the output folder.
pub(crate) const STAGING: &str = ".rerate-staging";
/// The lock file, inside the output folder.
pub(crate) const LOCK: &str = ".rerate.lock";
const JOURNAL: &str = "COMMIT";
const MANIFEST: &str = crate::schema::MANIFEST_FILE;

/// What a run does to an output folder that already holds a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Each (account, day) partition the run touches becomes the union of what it held and the
    /// run's legs, one leg per call_id (README, Deduplication); the others are kept.
    Merge,
    /// Replace the (account, day) partitions present in this run's input with its legs alone;
    /// keep the others. Loses the legs of those days that are not in this input.
    OverwritePartitions,
    /// Replace the whole dataset with this run's. Loses every leg not in this input.
    ReplaceAll,
}

impl Mode {
    /// Whether partitions this run does not write stay.
    pub fn keeps_other_partitions(self) -> bool {
        self != Mode::ReplaceAll
    }
}

/// The commit journal: relative paths under the staging `data/` and the output folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// Staged files, or folders whose final path did not exist, to rename into place, in order;
    /// `manifest.json` is not among them.
    pub moves: Vec<String>,
    /// Files of the previous output to remove once the moves are done.
    pub deletes: Vec<String>,
}

/// A run's claim on its output folder: the lock, and the staging folder it writes into.
pub(crate) struct Staging {
    out: PathBuf,
    root: PathBuf,
    data: PathBuf,
    _lock: File,
    committed: bool,
    /// Whether opening finished a previous run's interrupted commit.
    pub recovered: bool,
}

impl Staging {
    /// Locks `out` (creating it), finishes or discards what an interrupted run left, and makes
    /// an empty staging folder. A non-empty folder that is not a rerate output is refused.
    pub(crate) fn open(out: &Path) -> Result<Self, WriteError> {
        if out.exists() {
            let mut entries = fs::read_dir(out).map_err(io_err(out))?;
            let foreign = entries.any(|e| {
                e.ok().is_some_and(|e| {
                    let n = e.file_name();
                    n != STAGING && n != LOCK
                })
            });
            if foreign
                && !out.join(MANIFEST).is_file()
                && !out.join(STAGING).join(JOURNAL).is_file()
            {
                return Err(WriteError::NotAnOutputFolder(out.display().to_string()));
            }
        }
        fs::create_dir_all(out).map_err(io_err(out))?;
        let lock_path = out.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(WriteError::Busy(out.display().to_string()))
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let root = out.join(STAGING);
        let recovered = recover(out, &root)?;
        let data = root.join("data");
        fs::create_dir_all(&data).map_err(io_err(&data))?;
        Ok(Staging {
            out: out.to_owned(),
            root,
            data,
            _lock: lock,
            committed: false,
            recovered,
        })
    }

    /// Where this run writes: the final layout, under the staging folder.
    pub(crate) fn data(&self) -> &Path {
        &self.data
    }

    /// A scratch file of this run, removed with the staging folder.
    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where this run spills what does not fit in memory: beside the staged data, removed
    /// with the staging folder.
    pub(crate) fn spill(&self) -> PathBuf {
        self.root.join("spill")
    }

    /// Every staged file, as a path relative to [`Staging::data`], sorted.
    pub(crate) fn staged_files(&self) -> Result<Vec<String>, WriteError> {
        let mut files = Vec::new();
        list_files(&self.data, &self.data, &mut files)?;
        files.sort();
        Ok(files)
    }

    /// Makes the staged output the output: syncs it, writes the journal (the commit point),
    /// carries it out, and removes the staging folder. `manifest.json` must be staged.
    pub(crate) fn commit(mut self, journal: Journal) -> Result<(), WriteError> {
        make_durable(&self.root, &self.data)?;
        let tmp = self.root.join("COMMIT.tmp");
        let text = serde_json::to_vec(&journal).map_err(|e| io_err(&tmp)(e.into()))?;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&text).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        let path = self.root.join(JOURNAL);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.root);
        self.committed = true;
        apply(&self.out, &self.root, &journal).map_err(|e| WriteError::AfterCommit(Box::new(e)))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // A failed run leaves the previous output as it was, and no staging behind.
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Finishes an interrupted commit, or discards an uncommitted staging folder. Returns whether
/// a commit was finished.
fn recover(out: &Path, root: &Path) -> Result<bool, WriteError> {
    if !root.exists() {
        return Ok(false);
    }
    let journal_path = root.join(JOURNAL);
    let journal = fs::read(&journal_path)
        .ok()
        .and_then(|t| serde_json::from_slice::<Journal>(&t).ok());
    match journal {
        Some(j) => {
            apply(out, root, &j)?;
            Ok(true)
        }
        None => {
            fs::remove_dir_all(root).map_err(io_err(root))?;
            Ok(false)
        }
    }
}

/// Test hook: `RERATE_CRASH_AFTER_MOVES=N` aborts the process after N moves of a commit, to
/// test that the next run finishes it.
fn crash_after() -> Option<usize> {
    std::env::var("RERATE_CRASH_AFTER_MOVES").ok()?.parse().ok()
}

/// Test hook: `RERATE_FAIL_AFTER_MOVES=N` makes the move after N moves of a commit fail (as a
/// folder turned read-only mid-commit would), to test exit status 6 and the next run's repair.
fn fail_after() -> Option<usize> {
    std::env::var("RERATE_FAIL_AFTER_MOVES").ok()?.parse().ok()
}

/// Checks every path a commit writes or deletes (`rels`, relative to `out`, `/`-separated):
/// each names a path plainly inside `out` (not empty, no `..`, `.`, root or prefix component,
/// and no folder on the way an existing symbolic link; the last component may be one, as
/// removing a link removes the link). A journal is rerate's own, but one on disk may have been
/// planted or damaged. With `writable` (before the commit point), also that this run may write
/// in the folder each path lands in: its existing parent, or where that does not exist yet the
/// nearest existing folder above it, where it will be created. Linux's `access(2)` answers for
/// an immutable folder and a read-only mount too, even for root. Each folder is looked at once,
/// however many paths share it.
fn check_paths<'r>(
    out: &Path,
    rels: impl IntoIterator<Item = &'r String>,
    writable: bool,
) -> Result<(), WriteError> {
    use std::collections::{HashMap, HashSet};
    use std::path::Component;
    // Folders looked at: whether each exists (a symbolic link stops the check).
    let mut exists: HashMap<PathBuf, bool> = HashMap::new();
    let mut may_write: HashSet<PathBuf> = HashSet::new();
    for rel in rels {
        let unsafe_path = |why: &str| WriteError::UnsafePath {
            path: out.join(rel).display().to_string(),
            why: why.to_owned(),
        };
        let path = Path::new(rel);
        if rel.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(unsafe_path("not a plain relative path"));
        }
        // The folders on the way, from `out` down: `nearest` is the deepest that exists.
        let (mut at, mut nearest) = (out.to_path_buf(), out.to_path_buf());
        let mut parts = path.components().peekable();
        while let Some(c) = parts.next() {
            if parts.peek().is_none() {
                break;
            }
            at.push(c);
            let there = match exists.get(&at) {
                Some(&e) => e,
                None => {
                    let e = match at.symlink_metadata() {
                        Ok(m) if m.file_type().is_symlink() => {
                            return Err(unsafe_path(&format!(
                                "{} is a symbolic link",
                                at.display()
                            )))
                        }
                        Ok(_) => true,
                        Err(_) => false,
                    };
                    exists.insert(at.clone(), e);
                    e
                }
            };
            // Not there yet: nothing below it is either.
            if !there {
                break;
            }
            nearest.clone_from(&at);
        }
        if writable && may_write.insert(nearest.clone()) {
            let access = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
            if let Err(e) = rustix::fs::access(&nearest, access) {
                return Err(WriteError::NotWritable(
                    nearest.display().to_string(),
                    std::io::Error::from(e).to_string(),
                ));
            }
        }
    }
    Ok(())
}

/// Carries out a journal; every step may already have been done. Every path is checked first
/// ([`check_paths`]): a journal naming one outside `out` is refused with nothing done.
fn apply(out: &Path, root: &Path, journal: &Journal) -> Result<(), WriteError> {
    check_paths(out, journal.moves.iter().chain(&journal.deletes), false)?;
    let data = root.join("data");
    let (crash, fail) = (crash_after(), fail_after());
    for (i, rel) in journal.moves.iter().enumerate() {
        if crash == Some(i) {
            std::process::abort();
        }
        if fail == Some(i) {
            return Err(io_err(&out.join(rel))(std::io::Error::other(
                "RERATE_FAIL_AFTER_MOVES: a move made to fail",
            )));
        }
        move_into_place(&data, out, rel)?;
    }
    let mut emptied = BTreeSet::new();
    for rel in &journal.deletes {
        let p = out.join(rel);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
        if let Some(parent) = p.parent() {
            emptied.insert(parent.to_owned());
        }
    }
    // Partition folders left empty go too (deepest first), never the output folder itself.
    for dir in emptied.iter().rev() {
        let mut d = dir.as_path();
        while d != out && d.starts_with(out) && fs::remove_dir(d).is_ok() {
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
    }
    move_into_place(&data, out, MANIFEST)?;
    sync_dir(out);
    fs::remove_dir_all(root).map_err(io_err(root))
}

/// What a commit does to the output folder. `staged` are the staged files (relative paths);
/// `entries` the top-level names earlier runs may have written; `keys` the partition folders
/// (`account_id=..`, `date=..`) this run wrote. Replacing all removes every earlier file this
/// run does not replace; merging or overwriting partitions removes the earlier files inside those
/// partitions, in every partitioned table (one this run did not write too, so nothing stale is
/// left beside the new days), and earlier top-level files (whole-run reports, rejects).
/// `superseded`: files of the previous output a run replaces by others (relative paths: an
/// older catalog's files), removed too.
pub(crate) fn plan(
    out: &Path,
    staged: &[String],
    mode: Mode,
    entries: &BTreeSet<String>,
    keys: &BTreeSet<(String, String)>,
    superseded: &[String],
) -> Result<Journal, WriteError> {
    let moves: Vec<String> = staged.iter().filter(|f| *f != MANIFEST).cloned().collect();
    let new: BTreeSet<&String> = moves.iter().collect();
    let mut old = Vec::new();
    for f in superseded {
        list_files(&out.join(f), out, &mut old)?;
    }
    for name in entries.iter().filter(|n| *n != MANIFEST) {
        let p = out.join(name);
        match mode {
            Mode::ReplaceAll => list_files(&p, out, &mut old)?,
            _ if p.is_file() => list_files(&p, out, &mut old)?,
            Mode::Merge | Mode::OverwritePartitions => {
                for (a, d) in keys {
                    list_files(&p.join(a).join(d), out, &mut old)?;
                }
                // A file right in a table's folder is the empty table's one part: it goes
                // whenever this run does not stage it again (the table now has partitions).
                for f in fs::read_dir(&p).into_iter().flatten().flatten() {
                    if f.file_type().is_ok_and(|t| t.is_file()) {
                        list_files(&f.path(), out, &mut old)?;
                    }
                }
            }
        }
    }
    old.sort();
    old.dedup();
    let deletes: Vec<String> = old.into_iter().filter(|f| !new.contains(f)).collect();
    let moves = fewest_moves(out, &moves);
    // Before the commit point: a symbolic link where the commit writes or deletes, or a
    // folder it may not write in, stops the run with nothing changed.
    check_paths(out, moves.iter().chain(&deletes), true)?;
    Ok(Journal { moves, deletes })
}

/// The renames that put `files` (sorted relative paths) into place under `out`: the topmost
/// folder of a file whose final path does not exist yet moves whole, with every file under it
/// (a first run is one rename per table; a night of new days one per partition folder), and a
/// file whose folders all exist moves on its own, over what it replaces. Nothing of the
/// previous output is under a folder that moves whole, so the deletes never reach into one.
fn fewest_moves(out: &Path, files: &[String]) -> Vec<String> {
    let mut exists: std::collections::HashMap<String, bool> = Default::default();
    let mut moves: Vec<String> = Vec::new();
    for f in files {
        let mut chosen = f.as_str();
        for (i, _) in f.match_indices('/') {
            let dir = &f[..i];
            let there = *exists
                .entry(dir.to_owned())
                .or_insert_with(|| out.join(dir).symlink_metadata().is_ok());
            if !there {
                chosen = dir;
                break;
            }
        }
        // The files are sorted, so those under one folder are next to each other.
        if moves.last().map(String::as_str) != Some(chosen) {
            moves.push(chosen.to_owned());
        }
    }
    moves
}

fn move_into_place(data: &Path, out: &Path, rel: &str) -> Result<(), WriteError> {
    let src = data.join(rel);
    if !src.exists() {
        return Ok(());
    }
    let dst = out.join(rel);
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    fs::rename(&src, &dst).map_err(io_err(&dst))
}

/// Makes everything staged under `root` durable before the commit point. On Linux one
/// `syncfs` writes out the whole file system's dirty data and metadata at once: the 12,600
/// files of a run over 2,100 partitions took about 4 s to sync one by one. Elsewhere, or where
/// the file system does not implement it, each file under `data` is synced. A write-back error
/// (`syncfs` reports those since Linux 5.8) fails the run before the commit point.
fn make_durable(root: &Path, data: &Path) -> Result<(), WriteError> {
    #[cfg(target_os = "linux")]
    {
        let dir = File::open(root).map_err(io_err(root))?;
        match rustix::fs::syncfs(&dir) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(io_err(root)(e.into())),
        }
    }
    let mut files = Vec::new();
    list_files(data, data, &mut files)?;
    files
        .par_iter()
        .try_for_each(|rel| sync_file(&data.join(rel)))
}

fn sync_file(path: &Path) -> Result<(), WriteError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

fn sync_dir(path: &Path) {
    // Best effort: not every file system syncs directories.
    let _ = File::open(path).and_then(|f| f.sync_all());
}

/// Appends the files under `dir`, as paths relative to `base` with `/` separators. A symbolic
/// link is listed as itself, never followed (so deleting what is listed deletes the link, not
/// what it points to).
pub(crate) fn list_files(
    dir: &Path,
    base: &Path,
    files: &mut Vec<String>,
) -> Result<(), WriteError> {
    let Ok(meta) = dir.symlink_metadata() else {
        return Ok(());
    };
    if !meta.is_dir() {
        if let Ok(rel) = dir.strip_prefix(base) {
            files.push(rel_str(rel));
        }
        return Ok(());
    }
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        list_files(&e.path(), base, files)?;
    }
    Ok(())
}

fn rel_str(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn write(p: &Path, s: &str) -> std::io::Result<()> {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(p, s)
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn commit_moves_staged_files_removes_replaced_ones_and_manifest_goes_last() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        write(&out.join("manifest.json"), "old")?;
        write(&out.join("t/a=1/part-0.parquet"), "old1")?;
        write(&out.join("t/a=2/part-0.csv"), "old2")?;
        let st = Staging::open(&out)?;
        write(&st.data().join("t/a=1/part-0.parquet"), "new1")?;
        write(&st.data().join("manifest.json"), "new")?;
        let j = Journal {
            moves: vec!["t/a=1/part-0.parquet".into()],
            deletes: vec!["t/a=2/part-0.csv".into()],
        };
        st.commit(j)?;
        assert_eq!(read(&out.join("t/a=1/part-0.parquet")), "new1");
        assert_eq!(read(&out.join("manifest.json")), "new");
        assert!(
            !out.join("t/a=2").exists(),
            "an emptied partition folder is removed"
        );
        assert!(out.join("t").exists());
        assert!(!out.join(STAGING).exists());
        Ok(())
    }

    #[test]
    fn an_uncommitted_staging_is_discarded_and_a_journal_is_finished() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        write(&out.join("manifest.json"), "old")?;
        // A run that died before its commit point.
        write(&out.join(STAGING).join("data/t/x.parquet"), "half")?;
        drop(Staging::open(&out)?);
        assert!(!out.join("t").exists());
        assert_eq!(read(&out.join("manifest.json")), "old");
        // A run that died after it, one move done.
        write(&out.join("t/a.parquet"), "new-a")?;
        write(&out.join(STAGING).join("data/t/b.parquet"), "new-b")?;
        write(&out.join(STAGING).join("data/manifest.json"), "new")?;
        write(&out.join("t/old.parquet"), "old")?;
        let j = Journal {
            moves: vec!["t/a.parquet".into(), "t/b.parquet".into()],
            deletes: vec!["t/old.parquet".into()],
        };
        write(
            &out.join(STAGING).join(JOURNAL),
            &serde_json::to_string(&j)?,
        )?;
        let st = Staging::open(&out)?;
        assert!(st.recovered);
        assert_eq!(read(&out.join("t/b.parquet")), "new-b");
        assert_eq!(read(&out.join("manifest.json")), "new");
        assert!(!out.join("t/old.parquet").exists());
        Ok(())
    }

    #[test]
    fn a_folder_new_to_the_output_moves_whole_and_others_file_by_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        write(&out.join("manifest.json"), "old")?;
        write(&out.join("t/a=1/d=1/part-0.parquet"), "old")?;
        let files: Vec<String> = [
            "rejects.ndjson",
            "t/a=1/d=1/part-0.csv",
            "t/a=1/d=1/part-0.parquet",
            "t/a=1/d=2/part-0.parquet",
            "t/a=2/d=1/part-0.parquet",
            "t/a=2/d=2/part-0.parquet",
            "u/a=1/d=1/part-0.parquet",
            "u/a=1/d=2/part-0.parquet",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            fewest_moves(&out, &files),
            [
                "rejects.ndjson",
                "t/a=1/d=1/part-0.csv",
                "t/a=1/d=1/part-0.parquet",
                "t/a=1/d=2",
                "t/a=2",
                "u",
            ]
        );
        // Carried out: the new folders arrive with every file in them.
        let st = Staging::open(&out)?;
        for f in &files {
            write(&st.data().join(f), f)?;
        }
        write(&st.data().join("manifest.json"), "new")?;
        st.commit(Journal {
            moves: fewest_moves(&out, &files),
            deletes: vec![],
        })?;
        for f in &files {
            assert_eq!(read(&out.join(f)), *f);
        }
        assert!(!out.join(STAGING).exists());
        Ok(())
    }

    #[test]
    fn a_second_run_on_the_same_folder_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        let _first = Staging::open(&out)?;
        assert!(matches!(Staging::open(&out), Err(WriteError::Busy(_))));
        Ok(())
    }
}
