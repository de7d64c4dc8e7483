//! Local files simbulk reads or must not overwrite: bounded reads of regular files, file
//! identities (device and inode), and outputs replaced atomically.
//!
//! Guarantees: a file read through [`read_regular`] or opened through [`open_regular`] is a
//! regular file of bounded size, opened without waiting (a FIFO is refused, never blocked
//! on) and, where asked, without following a symbolic link; an output written through
//! [`Replace`] appears whole or not at all, and never through a symlink or over a file it
//! was told to spare.

mod append;

pub(crate) use append::AppendFile;
pub use append::OpenMode;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a file cannot be read or written as asked. `what` names it as the user knows it (a
/// flag, usually), so every message says which option to change.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {} is {kind}, not a regular file", path.display())]
    NotRegular {
        what: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{what} {} is a symbolic link; simbulk never follows one: give the file's own path", path.display())]
    Symlink { what: String, path: PathBuf },
    #[error("{what} {} is {size} bytes, more than the {max} it can be", path.display())]
    TooLarge {
        what: String,
        path: PathBuf,
        size: u64,
        max: u64,
    },
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {what} {}: {reason}; give a path in a writable folder with {what}", path.display())]
    Folder {
        what: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot write {what} {}: it is read-only; give another path with {what}", path.display())]
    ReadOnly { what: String, path: PathBuf },
    #[error("{what} {} is {kind}, not a file; give a file path with {what}", path.display())]
    NotAFile {
        what: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{what} {} is the same file as one simbulk reads or writes in this run; give it a path of its own", path.display())]
    SameFile { what: String, path: PathBuf },
    #[error("cannot write {what} {}: {source}", path.display())]
    Write {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file's identity: two paths name the same file exactly when these are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Self { dev: 0, ino: 0 }
        }
    }
}

/// What kind of file a non-regular one is, for messages.
pub(crate) fn kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a pipe or FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// Opens `path` to read: it must be a regular file of at most `max` bytes. `what` names it in
/// messages (a flag, usually). With `follow: false` a symbolic link is refused.
pub(crate) fn open_regular(path: &Path, what: &str, max: u64, follow: bool) -> Result<File, Error> {
    let named = || (what.to_owned(), path.to_owned());
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        o.custom_flags(libc::O_NONBLOCK | nofollow);
    }
    let read = |source| {
        let (what, path) = named();
        Error::Read { what, path, source }
    };
    let f = o.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            let (what, path) = named();
            Error::Symlink { what, path }
        } else {
            read(e)
        }
    })?;
    let meta = f.metadata().map_err(read)?;
    let (what, path) = named();
    if !meta.is_file() {
        return Err(Error::NotRegular {
            what,
            path,
            kind: kind(meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(Error::TooLarge {
            what,
            path,
            size: meta.len(),
            max,
        });
    }
    Ok(f)
}

/// Reads a regular file of at most `max` bytes (see [`open_regular`]).
pub(crate) fn read_regular(path: &Path, what: &str, max: u64) -> Result<Vec<u8>, Error> {
    let f = open_regular(path, what, max, true)?;
    let mut out = Vec::new();
    // The size was checked; the file may still grow while it is read.
    f.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|source| Error::Read {
            what: what.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    if out.len() as u64 > max {
        return Err(Error::TooLarge {
            what: what.to_owned(),
            path: path.to_owned(),
            size: out.len() as u64,
            max,
        });
    }
    Ok(out)
}

/// Whether group or others may read the file (for secrets).
pub(crate) fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// The absolute form of a path that may not exist yet.
pub(crate) fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let name = p.file_name().map(PathBuf::from).unwrap_or_default();
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(parent)
        .unwrap_or_else(|_| parent.to_owned())
        .join(name)
}

/// Where an output will be written, for comparing it with the input and the other outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// An existing regular file.
    File(FileId),
    /// A path that does not exist yet, resolved.
    New(PathBuf),
    /// A device (`/dev/null`): writing to it overwrites nothing.
    Device,
}

/// Checks that an output path can be written: not a symbolic link, not a folder or a FIFO
/// (a device only when `devices` allows), in a folder that exists and takes new files.
/// Returns where it points.
pub(crate) fn output_place(path: &Path, what: &str, devices: bool) -> Result<Place, Error> {
    let (w, p) = (what.to_owned(), path.to_owned());
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Symlink { what: w, path: p }),
        Ok(m) if m.is_file() => {
            if m.permissions().readonly() {
                return Err(Error::ReadOnly { what: w, path: p });
            }
            Ok(Place::File(FileId::of(&m)))
        }
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt;
                if devices && m.file_type().is_char_device() {
                    return Ok(Place::Device);
                }
            }
            Err(Error::NotAFile {
                what: w,
                path: p,
                kind: kind(m.file_type()),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            // Creating (and dropping) a file there is the one test that ACLs and read-only
            // mounts cannot fool.
            tempfile::Builder::new()
                .prefix(".simbulk-check-")
                .tempfile_in(dir)
                .map_err(|e| Error::Folder {
                    what: w,
                    path: p,
                    reason: if e.kind() == std::io::ErrorKind::NotFound {
                        format!("the folder {} does not exist", dir.display())
                    } else {
                        format!("the folder {} takes no new file ({e})", dir.display())
                    },
                })?;
            Ok(Place::New(resolve(path)))
        }
        Err(source) => Err(Error::Write {
            what: w,
            path: p,
            source,
        }),
    }
}

/// An output file written whole: to a temporary file beside it, then renamed over it (a
/// rename replaces a symbolic link rather than following it, and never writes into a file
/// that another name shares).
pub(crate) struct Replace {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl Replace {
    /// Prepares to write `path` (checked with [`output_place`]); `spare` lists files it must
    /// not be (the input, the other outputs).
    pub(crate) fn prepare(path: &Path, what: &str, spare: &[Place]) -> Result<Self, Error> {
        let place = output_place(path, what, false)?;
        if spare.contains(&place) {
            return Err(Error::SameFile {
                what: what.to_owned(),
                path: path.to_owned(),
            });
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".simbulk-")
            .tempfile_in(dir)
            .map_err(|source| Error::Write {
                what: what.to_owned(),
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
        })
    }

    /// Where the content goes until [`Replace::commit`].
    pub(crate) fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Puts the written content in place; until then the old file (if any) is untouched.
    pub(crate) fn commit(self) -> std::io::Result<()> {
        use std::io::Write;
        let mut tmp = self.tmp;
        tmp.as_file_mut().flush()?;
        tmp.as_file().sync_data()?;
        tmp.persist(&self.path).map(drop).map_err(|e| e.error)
    }
}

/// A reader that refuses a line longer than `max` bytes instead of buffering it (for CSV
/// files read back, whose records the `csv` crate would otherwise grow without bound).
pub(crate) struct LineCap<R> {
    inner: R,
    run: usize,
    max: usize,
}

impl<R> LineCap<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        Self { inner, run: 0, max }
    }
}

impl<R: std::io::Read> std::io::Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            self.run = if b == b'\n' { 0 } else { self.run + 1 };
            if self.run > self.max {
                return Err(std::io::Error::other(format!(
                    "a line is longer than {} bytes",
                    self.max
                )));
            }
        }
        Ok(n)
    }
}

impl<R: std::io::Seek> std::io::Seek for LineCap<R> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.run = 0;
        self.inner.seek(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_folders_and_large_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular(Path::new("/dev/zero"), "--checkpoint", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a device"), "{e}");
        let e = read_regular(dir.path(), "--checkpoint", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a folder"), "{e}");
        #[cfg(unix)]
        {
            let fifo = dir.path().join("f");
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo reads the C string we pass.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let e = read_regular(&fifo, "--checkpoint", 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(e.contains("FIFO"), "{e}");
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 4096]).unwrap();
        let e = read_regular(&big, "--client-secret-file", 1024)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4096 bytes"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn outputs_name_symlinks_hard_links_and_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let e = output_place(&link, "--summary-json", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let hard = dir.path().join("hard");
        std::fs::hard_link(&a, &hard).unwrap();
        assert_eq!(
            output_place(&hard, "--results", false).unwrap(),
            output_place(&a, "--results", false).unwrap()
        );
        let e = output_place(&dir.path().join("no/such/x"), "--results", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not exist") && e.contains("--results"),
            "{e}"
        );
        assert_eq!(
            output_place(Path::new("/dev/null"), "--results", true).unwrap(),
            Place::Device
        );
        assert!(output_place(Path::new("/dev/null"), "--checkpoint", false).is_err());
    }

    #[test]
    fn a_replaced_output_appears_whole_and_spares_what_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "keep").unwrap();
        let spare = [output_place(&input, "the input", false).unwrap()];
        assert!(Replace::prepare(&input, "--summary-json", &spare).is_err());
        let out = dir.path().join("s.json");
        let mut r = Replace::prepare(&out, "--summary-json", &spare).unwrap();
        use std::io::Write;
        r.file().write_all(b"{}").unwrap();
        assert!(!out.exists(), "nothing before the commit");
        r.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"{}");
        assert_eq!(std::fs::read(&input).unwrap(), b"keep");
    }
}
