//! Hostile input: a corpus of bad files (tests/corpus) and large random inputs to the CSV
//! reader, row validation and the checkpoint reader. No panic, no hang, bounded memory, and a
//! clear error where the file itself is unusable.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use simbulk::input::{self as reader, Defaults};

use crate::support::*;

fn defaults() -> Defaults {
    Defaults {
        action: Some("activate".into()),
        ..Defaults::default()
    }
}

/// Reads a whole file; returns (file error?, rows, invalid rows).
fn read_all(p: &Path) -> (Option<String>, usize, usize) {
    match reader::open(p, None, &defaults()) {
        Err(e) => (Some(e.to_string()), 0, 0),
        Ok((_, rows)) => {
            let (mut n, mut bad) = (0, 0);
            for r in rows {
                match r {
                    Ok(item) => {
                        n += 1;
                        bad += usize::from(item.parsed.is_err());
                    }
                    Err(e) => return (Some(e.to_string()), n, bad),
                }
            }
            (None, n, bad)
        }
    }
}

#[test]
fn every_corpus_file_reads_without_panic_in_bounded_time() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let t = Instant::now();
        let (err, rows, bad) = read_all(&p);
        assert!(t.elapsed() < Duration::from_secs(5), "{}", p.display());
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        match name.as_str() {
            "utf16le.csv" | "utf16-no-bom.csv" => {
                assert!(err.unwrap().contains("UTF-16"), "{name}")
            }
            "duplicate-headers.csv" => assert!(
                err.is_none() && rows == 1,
                "{name}: other duplicate columns are carried"
            ),
            "header-only.csv" => assert_eq!((err, rows), (None, 0)),
            "invalid-utf8.csv" => assert_eq!((rows, bad), (1, 1), "{name}"),
            "nul-bytes.csv" => assert!(bad >= 1, "{name}"),
            "wide-10000-columns.csv" => assert_eq!((rows, bad), (1, 0), "{name}"),
            "formula-values.csv" => assert_eq!((rows, bad), (2, 1), "{name}"),
            "crlf-and-blank-lines.csv" => assert_eq!((rows, bad), (1, 0), "{name}"),
            "ragged-rows.csv" => assert_eq!((rows, bad), (2, 1), "{name}"),
            _ => {}
        }
        seen += 1;
    }
    assert!(seen >= 12);
}

#[test]
fn a_huge_line_becomes_an_invalid_row_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.csv");
    let a = "8944500990000012342";
    let mut body = format!("iccid,action,note\n{a},activate,").into_bytes();
    body.extend(std::iter::repeat_n(b'z', 3 << 20));
    body.extend_from_slice(format!("\n{a},suspend,ok\n").as_bytes());
    std::fs::write(&p, body).unwrap();
    let (_, rows) = reader::open(&p, None, &defaults()).unwrap();
    let items: Vec<_> = rows.map(Result::unwrap).collect();
    assert_eq!(items.len(), 2);
    assert!(
        items[0]
            .parsed
            .as_ref()
            .unwrap_err()
            .message
            .contains("longer than")
    );
    assert!(items[1].parsed.is_ok());
    assert_eq!(items[1].line, 3);
}

#[test]
fn an_unbalanced_quote_that_swallows_the_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("quote.csv");
    let a = "8944500990000012342";
    let mut body = format!("iccid,action,note\n{a},activate,\"open\n").into_bytes();
    for _ in 0..400_000 {
        body.extend_from_slice(format!("{a},suspend,x\n").as_bytes());
    }
    std::fs::write(&p, body).unwrap();
    let (err, _, _) = read_all(&p);
    assert!(err.unwrap().contains("unbalanced quote"));
}

#[test]
fn the_binary_on_a_utf16_file_exits_2_before_any_call() {
    let s = TestSim::unlimited(10);
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/utf16le.csv");
    let o = run_file(&p, &s);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("CSV UTF-8"));
    assert_eq!(s.stats().requests, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..8192), header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.csv");
        let mut b = if header { b"iccid,action,value,attribute\n".to_vec() } else { Vec::new() };
        b.extend(bytes);
        std::fs::write(&p, b).unwrap();
        let _ = read_all(&p);
    }

    #[test]
    fn random_csv_shaped_text_never_panics(cells in proptest::collection::vec(proptest::collection::vec("[0-9a-z\"=;,\t \r\n-]{0,25}", 0..8), 0..40)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.csv");
        let mut s = String::from("iccid,action,value,attribute\n");
        for r in cells { s += &r.join(","); s.push('\n'); }
        std::fs::write(&p, s).unwrap();
        let _ = read_all(&p);
    }

    #[test]
    fn random_checkpoints_never_panic_the_journal_reader(bytes in proptest::collection::vec(any::<u8>(), 0..4096), valid_header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp");
        let mut b = if valid_header {
            br#"SIMBULK-CHECKPOINT 1 {"job":{"input_sha256":"x","input_bytes":1,"action":null,"value":null,"attribute":null},"results":"r","failures":"f","created":"c"}
"#.to_vec()
        } else { Vec::new() };
        b.extend(bytes);
        std::fs::write(&p, b).unwrap();
        let _ = simbulk::checkpoint::replay(&p, simbulk::checkpoint::Bounds::unlimited());
    }
}
