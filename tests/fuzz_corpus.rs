//! The fuzz corpus (fuzz/corpus/<target>/: the seeds and what fuzzing found interesting) and any
//! crash fuzzing ever saved (fuzz/regressions/<target>/) replayed through the same invariant
//! checks as the fuzz targets, so a fix stays fixed without nightly Rust.

use std::path::Path;

use rerate::internals::ingest::fuzzing;

use crate::util::*;

fn replay(target: &str, check: fn(&[u8])) -> TestResult {
    let mut n = 0;
    for dir in ["fuzz/corpus", "fuzz/regressions"] {
        let d = root().join(dir).join(target);
        if !d.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&d)?.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f)?;
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                return Err(format!("{target}: {name:?}: {msg}").into());
            }
            n += 1;
        }
    }
    assert!(
        n >= 2,
        "{target}: only {n} corpus files under {}",
        Path::new("fuzz").display()
    );
    Ok(())
}

#[test]
fn json_stream_corpus_keeps_every_record_and_ignores_task_size() -> TestResult {
    replay("json_stream", fuzzing::json_stream)
}

#[test]
fn csv_export_corpus_keeps_every_row() -> TestResult {
    replay("csv_export", fuzzing::csv_export)
}

#[test]
fn bus_event_corpus_normalizes_to_an_object_in_linear_size() -> TestResult {
    replay("bus_event", fuzzing::bus_event)
}

#[test]
fn csv_align_corpus_gives_a_cell_per_column_that_are_the_row() -> TestResult {
    replay("csv_align", fuzzing::csv_align)
}
