//! Reading an input file's bytes through the right decoder: gzip (every member of a multi-member
//! file) or zstd, chosen by magic bytes, so a misnamed file is still read right.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of a file.
    pub fn from_magic(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// What the file name promises, to warn when the content disagrees.
    pub fn from_extension(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz" | "gzip") => Compression::Gzip,
            Some("zst" | "zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Opens a file with its decoder.
pub(crate) fn open(path: &Path, compression: Compression) -> io::Result<Box<dyn Read + Send>> {
    Ok(open_counted(path, compression)?.0)
}

/// Opens a file with its decoder, and a counter of the file's own (compressed) bytes read so
/// far, for progress.
pub(crate) fn open_counted(
    path: &Path,
    compression: Compression,
) -> io::Result<(Box<dyn Read + Send>, Arc<AtomicU64>)> {
    let counter = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: File::open(path)?,
        n: counter.clone(),
    };
    Ok((
        decoder(BufReader::with_capacity(1 << 20, counted), compression)?,
        counter,
    ))
}

/// A reader that counts the bytes it hands out.
struct Counted<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

fn decoder<R: io::BufRead + Send + 'static>(
    file: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

/// The first `n` decoded bytes (fewer if the file is shorter).
pub(crate) fn head(path: &Path, compression: Compression, n: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    open(path, compression)?
        .take(n as u64)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// How a [`fill`] ended.
#[derive(Debug)]
pub(crate) enum Filled {
    /// `out` reached the wanted length; there may be more.
    More,
    /// The stream ended.
    End,
}

/// Reads into `out` until it holds at least `want` bytes or the stream ends. A decoding error
/// keeps what was read before it.
pub(crate) fn fill(reader: &mut dyn Read, out: &mut Vec<u8>, want: usize) -> io::Result<Filled> {
    let mut buf = vec![0u8; 1 << 20];
    while out.len() < want {
        let room = (want - out.len()).min(buf.len());
        match reader.read(&mut buf[..room]) {
            Ok(0) => return Ok(Filled::End),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Filled::More)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(Compression::from_magic(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::from_magic(b"{\"a\""), Compression::None);
    }

    /// Every decoded byte of a gzip file, and the decoding error that stopped it, if any.
    fn read_all(path: &Path) -> io::Result<(Vec<u8>, Option<io::Error>)> {
        let mut out = Vec::new();
        let ended = fill(
            open(path, Compression::Gzip)?.as_mut(),
            &mut out,
            usize::MAX,
        );
        Ok((out, ended.err()))
    }

    #[test]
    fn multi_member_gzip_and_truncation() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.gz");
        let mut bytes = Vec::new();
        for part in [b"{\"a\":1}\n".as_slice(), b"{\"a\":2}\n".as_slice()] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(part)?;
            bytes.extend(enc.finish()?);
        }
        std::fs::write(&path, &bytes)?;
        let (all, err) = read_all(&path)?;
        assert_eq!(all, b"{\"a\":1}\n{\"a\":2}\n");
        assert!(err.is_none());

        std::fs::write(&path, &bytes[..bytes.len() - 5])?;
        let (part, err) = read_all(&path)?;
        assert!(err.is_some(), "a truncated stream must report an error");
        assert!(part.starts_with(b"{\"a\":1}\n"));
        Ok(())
    }
}
