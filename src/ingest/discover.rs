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
    /// When the file was last modified, as discovery saw it: a file whose size or modification
    /// time differs once it has been read changed while it was read ([`InputFile::changed`]).
    #[serde(skip)]
    pub modified: Option<std::time::SystemTime>,
    pub compression: Compression,
    pub format: InputFormat,
}

impl InputFile {
    /// How the file changed since discovery (its size or modification time), if it did: a
    /// writer still at work, or a file replaced or truncated while the run read it.
    pub fn changed(&self) -> Option<String> {
        let meta = std::fs::metadata(&self.path).ok()?;
        if meta.len() != self.bytes {
            return Some(format!(
                "its size went from {} to {} bytes while it was read",
                self.bytes,
                meta.len()
            ));
        }
        let now = meta.modified().ok();
        (self.modified.is_some() && now != self.modified)
            .then(|| "it was modified while it was read (same size)".to_owned())
    }
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

/// The skipped paths for an error message: the first ten, then how many more.
pub(crate) fn list_skipped(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let mut s = String::from("; skipped:");
    for k in skipped.iter().take(10) {
        s += &format!("\n  {}: {}", k.path, k.reason);
    }
    if skipped.len() > 10 {
        s += &format!("\n  and {} more", skipped.len() - 10);
    }
    s
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

/// What discovery must never read, besides hidden files and folders.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exclude {
    /// The run's `--out` folder (it need not exist yet).
    pub out: Option<PathBuf>,
}

/// Why a folder found under an input is not walked, if it is not.
fn excluded_dir(dir: &Path, out: Option<&Path>) -> Option<String> {
    if out.is_some_and(|out| same_path(dir, out)) {
        return Some("the --out folder of this run: rerate never reads its own output".into());
    }
    if is_rerate_output(dir) {
        return Some(
            "holds a rerate manifest.json (the output of another run): rerate never reads its own output"
                .into(),
        );
    }
    None
}

/// A folder a rerate run wrote, or is writing: its `manifest.json` names `rerate_version`, or
/// it holds a run's lock or staging folder.
pub(crate) fn is_rerate_output(dir: &Path) -> bool {
    if dir.join(".rerate.lock").exists() || dir.join(".rerate-staging").is_dir() {
        return true;
    }
    let Ok(text) = std::fs::read(dir.join("manifest.json")) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&text)
        .is_ok_and(|m| m.get("rerate_version").is_some())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A name starting with `.`: hidden on Unix, by the convention `ls` and Git tools follow.
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with('.') && n != "." && n != "..")
}

const NOT_DATA: &str = "not a .json/.ndjson/.jsonl/.csv file (optionally .gz/.zst)";
const NOT_REGULAR: &str =
    "not a regular file (a FIFO, socket or device): never opened, so a run cannot hang on it";
const LINK_LOOP: &str = "a symbolic link to a folder that holds it (a loop): not followed";
const DANGLING: &str = "a symbolic link to nothing";

/// Whether a walk error is a symbolic link whose target does not exist.
fn is_dangling(e: &walkdir::Error) -> bool {
    e.io_error()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
        && e.path().is_some_and(|p| p.symlink_metadata().is_ok())
}
const HIDDEN: &str = "hidden (its name starts with a dot); name it directly to read it";

/// Expands the inputs. Files named directly are always read, whatever their name, unless they
/// lie in the `--out` folder; files found by walking a directory or matching a glob are read
/// when their name says JSON or CSV. Walking never enters hidden files and folders, the
/// `--out` folder, or any folder holding a rerate manifest; each is listed as skipped with its
/// reason. No file to read at all is [`IngestError::NoCdrInput`].
pub(crate) fn discover(
    inputs: &[String],
    exclude: &Exclude,
) -> Result<(Vec<InputFile>, Vec<Skipped>), IngestError> {
    // path -> (display name, named directly on the command line)
    let mut found: BTreeMap<PathBuf, (String, bool)> = BTreeMap::new();
    let mut skipped = Vec::new();
    if inputs.is_empty() {
        return Err(IngestError::NoInputs);
    }
    let out = exclude.out.as_deref();
    for input in inputs {
        let path = Path::new(input);
        if path.is_file() {
            if out.is_some_and(|out| path.ancestors().skip(1).any(|a| same_path(a, out))) {
                skipped.push(Skipped {
                    path: input.clone(),
                    reason:
                        "inside the --out folder of this run: rerate never reads its own output"
                            .into(),
                });
            } else {
                add(&mut found, path, true);
            }
        } else if path.is_dir() {
            walk(path, out, &mut found, &mut skipped)?;
        } else if is_glob(input) {
            let options = glob::MatchOptions {
                // `*` does not match a leading dot: hidden files and folders stay hidden.
                require_literal_leading_dot: true,
                ..Default::default()
            };
            let paths = glob::glob_with(input, options).map_err(|e| IngestError::BadGlob {
                pattern: input.clone(),
                message: e.to_string(),
            })?;
            let prefix = literal_prefix(input);
            let mut any = false;
            for entry in paths {
                let p = entry.map_err(|e| IngestError::Unreadable {
                    path: e.path().display().to_string(),
                    message: e.error().to_string(),
                })?;
                any = true;
                // A match inside an excluded folder below the pattern's literal part (say
                // `exports/**/*.csv` meeting `exports/reports/legs/...`) is not read either.
                let walled = p
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a.components().count() > prefix.components().count())
                    .find_map(|a| excluded_dir(a, out).map(|why| (a.to_path_buf(), why)));
                if let Some((dir, reason)) = walled {
                    if !skipped.iter().any(|s: &Skipped| Path::new(&s.path) == dir) {
                        skipped.push(Skipped {
                            path: dir.display().to_string(),
                            reason,
                        });
                    }
                } else if p.is_dir() {
                    walk(&p, out, &mut found, &mut skipped)?;
                } else if !p.is_file() {
                    skipped.push(Skipped {
                        path: p.display().to_string(),
                        reason: if p.symlink_metadata().is_ok() && p.metadata().is_err() {
                            DANGLING.into()
                        } else {
                            NOT_REGULAR.into()
                        },
                    });
                } else if has_data_extension(&p) {
                    add(&mut found, &p, false);
                } else {
                    skipped.push(Skipped {
                        path: p.display().to_string(),
                        reason: NOT_DATA.into(),
                    });
                }
            }
            if !any {
                skipped.push(Skipped {
                    path: input.clone(),
                    reason: "the pattern matches no file".into(),
                });
            }
        } else {
            return Err(IngestError::NotFound(input.clone()));
        }
    }
    let mut files = Vec::with_capacity(found.len());
    for (path, (display, explicit)) in found {
        match check(path, display.clone())? {
            Checked::Input(f) => files.push(f),
            Checked::NotCdrCsv if explicit => return Err(IngestError::NotCdrCsv(display)),
            Checked::NotCdrCsv => skipped.push(Skipped {
                path: display,
                reason: "a CSV file without a call_id column: not a crossbar CDR export (a rate deck goes to --rates)".into(),
            }),
            // Named or found, a table rerate wrote is never read back as KAZOO's export.
            Checked::OwnOutput => skipped.push(Skipped {
                path: display,
                reason: OWN_CSV.into(),
            }),
        }
    }
    if files.is_empty() {
        return Err(IngestError::NoCdrInput {
            inputs: inputs.join(" "),
            skipped,
        });
    }
    Ok((files, skipped))
}

/// The leading path components of a glob pattern that hold no wildcard.
fn literal_prefix(pattern: &str) -> PathBuf {
    Path::new(pattern)
        .components()
        .take_while(|c| !is_glob(&c.as_os_str().to_string_lossy()))
        .collect()
}

fn add(found: &mut BTreeMap<PathBuf, (String, bool)>, path: &Path, explicit: bool) {
    // The same file named twice (or reached twice) is read once.
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let e = found
        .entry(key)
        .or_insert_with(|| (path.display().to_string(), explicit));
    e.1 |= explicit;
}

/// Walks `dir` with walkdir, pruning what must not be read. walkdir rather than the `ignore`
/// crate: `ignore` also obeys `.gitignore` files, and CDR exports are exactly what people keep
/// out of Git, so a walk that honoured them would drop real input without a word; walkdir's
/// `skip_current_dir` prunes a folder and lets us say why.
fn walk(
    dir: &Path,
    out: Option<&Path>,
    found: &mut BTreeMap<PathBuf, (String, bool)>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), IngestError> {
    // A folder named directly is walked unless it is an output itself.
    if let Some(reason) = excluded_dir(dir, out) {
        skipped.push(Skipped {
            path: dir.display().to_string(),
            reason,
        });
        return Ok(());
    }
    // Symbolic links are followed (an export folder of links to the real files is common);
    // walkdir finds loops, and a loop or a link to nothing is listed as skipped.
    let mut it = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.loop_ancestor().is_some() || is_dangling(&e) => {
                skipped.push(Skipped {
                    path: e
                        .path()
                        .map_or_else(String::new, |p| p.display().to_string()),
                    reason: if e.loop_ancestor().is_some() {
                        LINK_LOOP.into()
                    } else {
                        DANGLING.into()
                    },
                });
                continue;
            }
            Err(e) => {
                return Err(IngestError::Unreadable {
                    path: e
                        .path()
                        .map_or_else(|| dir.display().to_string(), |p| p.display().to_string()),
                    message: e.to_string(),
                })
            }
        };
        let p = entry.path();
        if entry.depth() == 0 {
            continue;
        }
        let is_dir = entry.file_type().is_dir();
        let reason = if is_hidden(entry.file_name()) {
            Some(HIDDEN.to_owned())
        } else if is_dir {
            excluded_dir(p, out)
        } else {
            None
        };
        if let Some(reason) = reason {
            skipped.push(Skipped {
                path: p.display().to_string(),
                reason,
            });
            if is_dir {
                it.skip_current_dir();
            }
            continue;
        }
        if is_dir {
            // Walked into: its files are listed on their own.
            continue;
        }
        if !entry.file_type().is_file() {
            skipped.push(Skipped {
                path: p.display().to_string(),
                reason: NOT_REGULAR.into(),
            });
            continue;
        }
        if has_data_extension(p) {
            add(found, p, false);
        } else {
            skipped.push(Skipped {
                path: p.display().to_string(),
                reason: NOT_DATA.into(),
            });
        }
    }
    Ok(())
}

/// Why a CSV file written by rerate (a `query --output` or a copied table) is not read.
const OWN_CSV: &str = "rerate's own output: a CSV whose header holds rerate's money columns (cost_units, derived_cost_units, ...), not a crossbar CDR export";

/// What [`check`] found a file to be.
enum Checked {
    Input(InputFile),
    /// A `.csv` file that is not a CDR export (no call_id column).
    NotCdrCsv,
    /// A CSV written by rerate: its header names rerate's `*_cost_units` columns.
    OwnOutput,
}

/// Opens the file, picks its decoder from its magic bytes, and sniffs its format.
fn check(path: PathBuf, display: String) -> Result<Checked, IngestError> {
    let unreadable = |e: std::io::Error| IngestError::Unreadable {
        path: display.clone(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(&path).map_err(unreadable)?;
    let magic = decompress::head(&path, Compression::None, 4).map_err(unreadable)?;
    let compression = Compression::from_magic(&magic);
    let head = decompress::head(&path, compression, 4096).map_err(unreadable)?;
    let format = if looks_like_csv(&head) {
        if is_rerate_csv(&head) {
            return Ok(Checked::OwnOutput);
        }
        InputFormat::Csv
    } else if display.to_ascii_lowercase().contains(".csv") && !starts_like_json(&head) {
        return Ok(Checked::NotCdrCsv);
    } else {
        InputFormat::Json
    };
    Ok(Checked::Input(InputFile {
        display,
        path,
        bytes: meta.len(),
        modified: meta.modified().ok(),
        compression,
        format,
    }))
}

/// A CSV rerate wrote: its header (after an optional BOM) names one of rerate's money columns.
/// KAZOO's crossbar export names its money `cost` and `reseller_cost`, never `*_cost_units`.
fn is_rerate_csv(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    String::from_utf8_lossy(&head[..line_end])
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
        .any(|c| {
            matches!(
                c.as_str(),
                "cost_units" | "derived_cost_units" | "recorded_cost_units" | "rated_cost_units"
            )
        })
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

    #[cfg(unix)]
    #[test]
    fn links_are_followed_loops_fifos_and_dangling_links_skipped_and_changes_seen(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir()?;
        let real = dir.path().join("real");
        std::fs::create_dir(&real)?;
        std::fs::write(real.join("night.ndjson"), "{\"call_id\":\"a\"}\n")?;
        let exports = dir.path().join("exports");
        std::fs::create_dir(&exports)?;
        // A plain subfolder is walked, never listed as skipped.
        std::fs::create_dir(exports.join("empty-month"))?;
        symlink(real.join("night.ndjson"), exports.join("linked.ndjson"))?;
        symlink(&exports, exports.join("loop"))?;
        symlink(
            dir.path().join("gone.ndjson"),
            exports.join("dangling.ndjson"),
        )?;
        let fifo = exports.join("pipe.ndjson");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success());
        let (files, skipped) = discover(&[exports.display().to_string()], &Exclude { out: None })?;
        let read: Vec<&str> = files.iter().map(|f| f.display.as_str()).collect();
        assert_eq!(read, [exports.join("linked.ndjson").display().to_string()]);
        let why = |name: &str| {
            skipped
                .iter()
                .find(|s| s.path.ends_with(name))
                .map(|s| s.reason.clone())
        };
        assert_eq!(why("loop").as_deref(), Some(LINK_LOOP));
        assert_eq!(why("dangling.ndjson").as_deref(), Some(DANGLING));
        assert_eq!(why("pipe.ndjson").as_deref(), Some(NOT_REGULAR));
        assert_eq!(why("empty-month"), None, "{skipped:?}");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        // A glob meeting the FIFO skips it too (opening it would wait for a writer).
        match discover(
            &[format!("{}/p*.ndjson", exports.display())],
            &Exclude { out: None },
        ) {
            Err(IngestError::NoCdrInput { skipped, .. }) => {
                assert!(
                    skipped.iter().any(|s| s.reason == NOT_REGULAR),
                    "{skipped:?}"
                )
            }
            other => panic!("the FIFO alone is no input: {other:?}"),
        }

        // A file that grows after discovery has changed.
        let (files, _) = discover(
            &[real.join("night.ndjson").display().to_string()],
            &Exclude { out: None },
        )?;
        assert_eq!(files[0].changed(), None);
        std::fs::write(
            real.join("night.ndjson"),
            "{\"call_id\":\"a\"}\n{\"call_id\":\"b\"}\n",
        )?;
        assert!(files[0]
            .changed()
            .is_some_and(|c| c.contains("size went from 16 to 32")));
        Ok(())
    }

    #[test]
    fn csv_headers_are_recognised() {
        assert!(looks_like_csv(b"id,call_id,caller_id_number\n1,2,3"));
        assert!(looks_like_csv(b"\xEF\xBB\xBF\"id\",\"call_id\"\n"));
        assert!(!looks_like_csv(b"  {\"call_id\": \"a,b\"}"));
        assert!(!looks_like_csv(b""));
    }

    #[test]
    fn rerate_own_csv_is_told_from_a_crossbar_export() {
        assert!(is_rerate_csv(
            b"\xEF\xBB\xBFcall_id,account_id,cost_units,cost\nx,acc,2262,0.2262\n"
        ));
        assert!(is_rerate_csv(b"\"call_id\",\"derived_cost_units\"\n"));
        assert!(!is_rerate_csv(
            b"call_type,rate,rate_name,cost,id,call_id,billing_seconds\n"
        ));
    }
}
