//! Turning the command line's INPUT arguments into a sorted list of files: plain paths,
//! directories walked recursively, and glob patterns. Every file is opened and its first bytes
//! sniffed here, so an unreadable or unsupported input stops the run before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::decompress::{self, Compression};
use super::IngestError;

/// One input file, checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputFile {
    #[serde(rename = "path")]
    pub display: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub bytes: u64,
    pub compression: Compression,
    pub format: InputFormat,
}

/// What a file holds, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// A stream of JSON values (NDJSON, documents, arrays, crossbar pages).
    Json,
    /// KAZOO's crossbar CSV export.
    Csv,
}

/// A file found under a directory that rerate does not read, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// The names rerate reads when it walks a directory (after a .gz/.zst suffix is removed).
const DATA_EXTENSIONS: &[&str] = &["json", "ndjson", "jsonl", "csv"];

fn has_data_extension(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let stem = ["gz", "gzip", "zst", "zstd"]
        .iter()
        .find_map(|ext| name.strip_suffix(&format!(".{ext}")))
        .unwrap_or(&name);
    DATA_EXTENSIONS
        .iter()
        .any(|ext| stem.ends_with(&format!(".{ext}")))
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands the inputs. Files named directly are always read, whatever their name; files found
/// by walking a directory or matching a glob are read when their name says JSON or CSV.
pub fn discover(inputs: &[String]) -> Result<(Vec<InputFile>, Vec<Skipped>), IngestError> {
    // path -> (display name, named directly on the command line)
    let mut found: BTreeMap<PathBuf, (String, bool)> = BTreeMap::new();
    let mut skipped = Vec::new();
    if inputs.is_empty() {
        return Err(IngestError::NoInputs);
    }
    for input in inputs {
        let path = Path::new(input);
        if path.is_file() {
            add(&mut found, path, true);
        } else if path.is_dir() {
            walk(path, &mut found, &mut skipped)?;
        } else if is_glob(input) {
            let paths = glob::glob(input).map_err(|e| IngestError::BadGlob {
                pattern: input.clone(),
                message: e.to_string(),
            })?;
            let mut any = false;
            for entry in paths {
                let p = entry.map_err(|e| IngestError::Unreadable {
                    path: e.path().display().to_string(),
                    message: e.error().to_string(),
                })?;
                any = true;
                if p.is_dir() {
                    walk(&p, &mut found, &mut skipped)?;
                } else if has_data_extension(&p) {
                    add(&mut found, &p, false);
                } else {
                    skipped.push(Skipped {
                        path: p.display().to_string(),
                        reason: "not a .json/.ndjson/.jsonl/.csv file (optionally .gz/.zst)".into(),
                    });
                }
            }
            if !any {
                return Err(IngestError::NoMatch(input.clone()));
            }
        } else {
            return Err(IngestError::NotFound(input.clone()));
        }
    }
    let mut files = Vec::with_capacity(found.len());
    for (path, (display, explicit)) in found {
        match check(path, display.clone())? {
            Some(f) => files.push(f),
            None if explicit => return Err(IngestError::NotCdrCsv(display)),
            None => skipped.push(Skipped {
                path: display,
                reason: "a CSV file without a call_id column: not a crossbar CDR export (a rate deck goes to --rates)".into(),
            }),
        }
    }
    Ok((files, skipped))
}

fn add(found: &mut BTreeMap<PathBuf, (String, bool)>, path: &Path, explicit: bool) {
    // The same file named twice (or reached twice) is read once.
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let e = found
        .entry(key)
        .or_insert_with(|| (path.display().to_string(), explicit));
    e.1 |= explicit;
}

fn walk(
    dir: &Path,
    found: &mut BTreeMap<PathBuf, (String, bool)>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), IngestError> {
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| IngestError::Unreadable {
            path: e
                .path()
                .map_or_else(|| dir.display().to_string(), |p| p.display().to_string()),
            message: e.to_string(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let p = entry.path();
        if has_data_extension(p) {
            add(found, p, false);
        } else {
            skipped.push(Skipped {
                path: p.display().to_string(),
                reason: "not a .json/.ndjson/.jsonl/.csv file (optionally .gz/.zst)".into(),
            });
        }
    }
    Ok(())
}

/// Opens the file, picks its decoder from its magic bytes, and sniffs its format. `None` for a
/// `.csv` file that is not a CDR export (no call_id column).
fn check(path: PathBuf, display: String) -> Result<Option<InputFile>, IngestError> {
    let unreadable = |e: std::io::Error| IngestError::Unreadable {
        path: display.clone(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(&path).map_err(unreadable)?;
    let magic = decompress::head(&path, Compression::None, 4).map_err(unreadable)?;
    let compression = Compression::from_magic(&magic);
    let head = decompress::head(&path, compression, 4096).map_err(unreadable)?;
    let format = if looks_like_csv(&head) {
        InputFormat::Csv
    } else if display.to_ascii_lowercase().contains(".csv") && !starts_like_json(&head) {
        return Ok(None);
    } else {
        InputFormat::Json
    };
    Ok(Some(InputFile {
        display,
        path,
        bytes: meta.len(),
        compression,
        format,
    }))
}

fn starts_like_json(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    matches!(
        head.iter().copied().find(|c| !c.is_ascii_whitespace()),
        Some(b'{' | b'[') | None
    )
}

/// A crossbar CSV export starts with a header naming call_id, not with `{` or `[`.
fn looks_like_csv(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let first = head.iter().copied().find(|c| !c.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[') | None) {
        return false;
    }
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]).to_ascii_lowercase();
    line.contains(',') && line.contains("call_id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_extensions_include_compressed_forms() {
        for ok in [
            "a.json",
            "a.ndjson.gz",
            "A.JSONL",
            "x.csv.zst",
            "p.json.zstd",
        ] {
            assert!(has_data_extension(Path::new(ok)), "{ok}");
        }
        for no in ["README.md", "a.json.bak", "gz", "expected.tsv"] {
            assert!(!has_data_extension(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn csv_headers_are_recognised() {
        assert!(looks_like_csv(b"id,call_id,caller_id_number\n1,2,3"));
        assert!(looks_like_csv(b"\xEF\xBB\xBF\"id\",\"call_id\"\n"));
        assert!(!looks_like_csv(b"  {\"call_id\": \"a,b\"}"));
        assert!(!looks_like_csv(b""));
    }
}
