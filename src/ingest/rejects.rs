//! Rejects streamed to disk as they are found, so that memory does not grow with their number.
//!
//! Each window's rejects are written at once to a log file in the staging folder, as the lines
//! `rejects.ndjson` will hold; memory keeps only where each line is and its sort key (about
//! 50 bytes a reject, whatever its `raw` text), the counts by code, and the few rejects that say
//! a file was read only in part. [`RejectLog::finish`] then copies the lines into
//! `rejects.ndjson` in file, line and record order.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Reject, PARTIAL_CODES};
use crate::write::{io_err, WriteError};

/// Where a logged reject's line is, and what it sorts by.
#[derive(Debug)]
struct Entry {
    source: Arc<str>,
    line: u64,
    record: Option<u64>,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct State {
    out: BufWriter<File>,
    written: u64,
    entries: Vec<Entry>,
    by_code: BTreeMap<&'static str, u64>,
    partial: Vec<Reject>,
}

/// The run's rejects, on disk.
#[derive(Debug)]
pub struct RejectLog {
    path: PathBuf,
    state: Mutex<State>,
}

/// What the rejects said, once written.
#[derive(Debug, Default)]
pub struct RejectSummary {
    pub by_code: BTreeMap<&'static str, u64>,
    /// The rejects of [`PARTIAL_CODES`]: a file read only in part.
    pub partial: Vec<Reject>,
}

impl RejectLog {
    /// A new log at `path` (a scratch file: the staging folder's).
    pub fn create(path: PathBuf) -> Result<Self, WriteError> {
        let f = File::create(&path).map_err(io_err(&path))?;
        Ok(RejectLog {
            state: Mutex::new(State {
                out: BufWriter::new(f),
                written: 0,
                entries: Vec::new(),
                by_code: BTreeMap::new(),
                partial: Vec::new(),
            }),
            path,
        })
    }

    /// Writes `rejects` to the log and empties it.
    pub fn push(&self, rejects: &mut Vec<Reject>) -> Result<(), WriteError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for r in rejects.drain(..) {
            let mut line = serde_json::to_vec(&r).map_err(|e| io_err(&self.path)(e.into()))?;
            line.push(b'\n');
            s.out.write_all(&line).map_err(io_err(&self.path))?;
            let offset = s.written;
            s.written += line.len() as u64;
            *s.by_code.entry(r.code).or_insert(0) += 1;
            s.entries.push(Entry {
                source: r.source.clone(),
                line: r.line,
                record: r.record,
                offset,
                len: line.len() as u32,
            });
            if PARTIAL_CODES.contains(&r.code) {
                s.partial.push(r);
            }
        }
        Ok(())
    }

    /// Writes `out/rejects.ndjson`: every logged reject, by file, line and record (ties in the
    /// order of their text), and removes the log.
    pub fn finish(self, to: &Path) -> Result<RejectSummary, WriteError> {
        let mut s = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        s.out.flush().map_err(io_err(&self.path))?;
        drop(s.out);
        let log = File::open(&self.path).map_err(io_err(&self.path))?;
        let read = |e: &Entry| -> Result<Vec<u8>, WriteError> {
            let mut buf = vec![0; e.len as usize];
            log.read_exact_at(&mut buf, e.offset)
                .map_err(io_err(&self.path))?;
            Ok(buf)
        };
        s.entries.sort_by(|a, b| {
            (a.source.as_ref(), a.line, a.record).cmp(&(b.source.as_ref(), b.line, b.record))
        });
        let file = File::create(to).map_err(io_err(to))?;
        let mut w = BufWriter::new(file);
        for group in s
            .entries
            .chunk_by(|a, b| (&a.source, a.line, a.record) == (&b.source, b.line, b.record))
        {
            let mut lines = group.iter().map(read).collect::<Result<Vec<_>, _>>()?;
            lines.sort();
            for l in lines {
                w.write_all(&l).map_err(io_err(to))?;
            }
        }
        w.flush().map_err(io_err(to))?;
        std::fs::remove_file(&self.path).map_err(io_err(&self.path))?;
        s.partial
            .sort_by(|a, b| (a.source.as_ref(), a.line).cmp(&(b.source.as_ref(), b.line)));
        Ok(RejectSummary {
            by_code: s.by_code,
            partial: s.partial,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(source: &str, line: u64, record: Option<u64>, code: &'static str) -> Reject {
        Reject {
            source: Arc::from(source),
            location: format!("line {line}"),
            line,
            record,
            code,
            reason: "why".into(),
            raw: "x".repeat(line as usize),
        }
    }

    #[test]
    fn rejects_come_out_sorted_and_counted() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = RejectLog::create(dir.path().join("log"))?;
        log.push(&mut vec![
            reject("b", 1, None, "invalid_json"),
            reject("a", 3, Some(1), "invalid_json"),
        ])?;
        let mut more = vec![
            reject("a", 3, Some(0), "not_an_object"),
            reject("a", 9, None, "unreadable_input"),
        ];
        log.push(&mut more)?;
        assert!(more.is_empty());
        let to = dir.path().join("rejects.ndjson");
        let s = log.finish(&to)?;
        let order: Vec<(String, u64)> = std::fs::read_to_string(&to)?
            .lines()
            .map(serde_json::from_str::<serde_json::Value>)
            .map(|v| {
                v.map(|v| {
                    (
                        v["source"].as_str().unwrap_or("").to_owned(),
                        v["line"].as_u64().unwrap_or(0),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        assert_eq!(
            order,
            [
                ("a".into(), 3),
                ("a".into(), 3),
                ("a".into(), 9),
                ("b".into(), 1)
            ]
        );
        assert_eq!(s.by_code["invalid_json"], 2);
        assert_eq!(s.partial.len(), 1);
        assert!(!dir.path().join("log").exists());
        Ok(())
    }
}
