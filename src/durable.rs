//! Append-only files whose bytes reach the disk in an order the caller controls.
//!
//! Guarantees: bytes appended are held in memory until [`AppendFile::flush`], so one file
//! never reaches the operating system ahead of another that must come first (results before
//! the checkpoint record that counts them); [`AppendFile::len`] is the logical length
//! including what is still buffered; files are opened without following a symlink.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

/// An append-only file with an explicit flush.
pub struct AppendFile {
    file: File,
    buf: Vec<u8>,
    committed: u64,
    regular: bool,
}

/// How to open an output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create or empty it.
    Truncate,
    /// Keep its first `n` bytes (what the checkpoint vouches for) and append after them.
    KeepPrefix(u64),
}

impl AppendFile {
    /// Opens `path` (never through a symlink), with permissions `mode` when it is created.
    pub fn open(path: &Path, how: OpenMode, mode: u32) -> io::Result<Self> {
        let mut o = OpenOptions::new();
        o.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.custom_flags(libc::O_NOFOLLOW).mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = o.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{} is a symbolic link; refusing to write through it",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            // A device such as /dev/null: nothing to cut or seek.
            return Ok(Self {
                file,
                buf: Vec::with_capacity(64 * 1024),
                committed: 0,
                regular: false,
            });
        }
        let keep = match how {
            OpenMode::Truncate => 0,
            OpenMode::KeepPrefix(n) => {
                let len = meta.len();
                if len < n {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} is shorter ({len} bytes) than the checkpoint records ({n} bytes)",
                            path.display()
                        ),
                    ));
                }
                n
            }
        };
        file.set_len(keep)?;
        file.seek(SeekFrom::Start(keep))?;
        Ok(Self {
            file,
            buf: Vec::with_capacity(64 * 1024),
            committed: keep,
            regular: true,
        })
    }

    /// The buffer to append to.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Logical length: what is on file plus what is buffered.
    pub fn len(&self) -> u64 {
        self.committed + self.buf.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes buffered and not yet handed to the operating system.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Hands the buffered bytes to the operating system (they survive a crash of this
    /// process, not yet a power loss).
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.committed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Makes what was flushed durable.
    pub fn sync(&self) -> io::Result<()> {
        if self.regular {
            self.file.sync_data()
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_reaches_the_file_before_flush_and_prefixes_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = AppendFile::open(&p, OpenMode::Truncate, 0o644).unwrap();
        f.buf().extend_from_slice(b"hello ");
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        assert_eq!(f.len(), 6);
        f.flush().unwrap();
        f.buf().extend_from_slice(b"world");
        f.flush().unwrap();
        drop(f);
        let mut g = AppendFile::open(&p, OpenMode::KeepPrefix(6), 0o644).unwrap();
        g.buf().extend_from_slice(b"there");
        g.flush().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello there");
        assert!(AppendFile::open(&p, OpenMode::KeepPrefix(100), 0o644).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = AppendFile::open(&link, OpenMode::Truncate, 0o644)
            .err()
            .unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
