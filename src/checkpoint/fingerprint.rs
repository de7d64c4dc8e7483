//! The job's identity: a digest of the input file's bytes and the options that change what
//! a row does.
//!
//! Guarantees: the input is read streaming, in fixed-size blocks, at offsets (through the
//! job's one handle, without moving its cursor; a spreadsheet as the CSV text of its sheet),
//! and a stop ends the read at the next block;
//! two inputs that differ in any byte have different fingerprints.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What binds a checkpoint to its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    /// The input's SHA-256, hex.
    pub input_sha256: String,
    /// The input's size in bytes.
    pub input_bytes: u64,
    /// `--action`, the default action of the job.
    pub action: Option<String>,
    /// `--value`, the default value.
    pub value: Option<String>,
    /// `--attribute`, the default attribute name.
    pub attribute: Option<String>,
    /// A preview's checkpoint (predictions), not a run's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preview: bool,
}

impl JobIdentity {
    /// What differs between `self` (the checkpoint's job) and `now`, in words.
    pub(crate) fn differences(&self, now: &JobIdentity) -> Vec<String> {
        let mut d = Vec::new();
        if self.preview != now.preview {
            let what = |p: bool| if p { "a preview's" } else { "a run's" };
            d.push(format!(
                "it is {} checkpoint, and this is {}",
                what(self.preview),
                what(now.preview).trim_end_matches("'s")
            ));
        }
        if self.input_sha256 != now.input_sha256 || self.input_bytes != now.input_bytes {
            d.push(format!(
                "the input file changed ({} bytes then, {} bytes now, different content)",
                self.input_bytes, now.input_bytes
            ));
        }
        for (name, a, b) in [
            ("--action", &self.action, &now.action),
            ("--value", &self.value, &now.value),
            ("--attribute", &self.attribute, &now.attribute),
        ] {
            if a != b {
                d.push(format!(
                    "{name} was {} and is now {}",
                    a.as_deref()
                        .map_or("not given".into(), |v| format!("{v:?}")),
                    b.as_deref()
                        .map_or("not given".into(), |v| format!("{v:?}"))
                ));
            }
        }
        d
    }
}

/// Digest and size of the file, plus its line count (an estimate of its rows for progress).
pub(crate) fn digest_file(path: &Path) -> std::io::Result<(String, u64, u64)> {
    let mut f = std::fs::File::open(path)?;
    digest(&mut f, &|| false).map(|d| d.unwrap_or_default())
}

/// Digest, size and line count of an input read from its start (through the job's handle, at
/// offsets); `None` when `stopped` says so between two blocks.
pub(crate) fn digest(
    source: &mut dyn Read,
    stopped: &dyn Fn() -> bool,
) -> std::io::Result<Option<(String, u64, u64)>> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut bytes, mut lines, mut last) = (0u64, 0u64, b'\n');
    loop {
        if stopped() {
            return Ok(None);
        }
        let n = match source.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some((hex, bytes, lines)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_counts_lines_and_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "a\nb\nc").unwrap();
        let (h1, n, lines) = digest_file(&p).unwrap();
        assert_eq!((n, lines), (5, 3));
        std::fs::write(&p, "a\nb\nd").unwrap();
        assert_ne!(digest_file(&p).unwrap().0, h1);
    }

    #[test]
    fn differences_name_what_changed() {
        let a = JobIdentity {
            input_sha256: "x".into(),
            input_bytes: 1,
            action: Some("activate".into()),
            value: None,
            attribute: None,
            preview: false,
        };
        let mut b = a.clone();
        assert!(a.differences(&b).is_empty());
        b.action = Some("suspend".into());
        b.input_bytes = 2;
        let d = a.differences(&b);
        assert_eq!(d.len(), 2);
        assert!(
            d[1].contains("--action was \"activate\" and is now \"suspend\""),
            "{d:?}"
        );
    }
}
