//! Micro-benchmarks of the pure-CPU hot paths: reading and validating rows, writing result
//! rows, appending checkpoint records, and replaying a large checkpoint.
//! Run by hand: `cargo bench --bench hot_paths`.

use std::hint::black_box;
use std::io::Write;
use std::time::SystemTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use simbulk::checkpoint::{Header, JobIdentity, Journal, replay};
use simbulk::input::{self as reader, Defaults};
use simbulk::output::ResultsFile;
use simbulk::output::{RowResult, Verdict};

const ROWS: u64 = 100_000;

fn input_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("in.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    writeln!(f, "iccid,action,value,order").unwrap();
    for i in 0..ROWS {
        let icc = simbulk::sim::seed::iccid(1, i as usize);
        writeln!(f, "{icc},set-package,20533,PO-{i}").unwrap();
    }
    f.flush().unwrap();
    p
}

fn read_and_validate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let p = input_file(dir.path());
    let mut g = c.benchmark_group("input");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    g.bench_function("read_and_validate_100k_rows", |b| {
        b.iter(|| {
            let (_, rows) = reader::open(&p, None, &Defaults::default()).unwrap();
            black_box(
                rows.filter(|r| r.as_ref().is_ok_and(|i| i.parsed.is_ok()))
                    .count(),
            )
        })
    });
    g.finish();
}

fn row(i: u64) -> RowResult {
    RowResult {
        line: i,
        iccid: simbulk::sim::seed::iccid(1, i as usize),
        action: "set-package".into(),
        kind: Some(simbulk::input::ActionKind::SetPackage),
        value: "20533".into(),
        attribute: String::new(),
        verdict: Verdict::Ok,
        http_status: Some(200),
        error_code: None,
        message: String::new(),
        reason: None,
        attempts: 1,
        sim_status: Some("available".into()),
        before: Some(simbulk::output::Before::Value("active".into())),
        finished_at: SystemTime::now(),
        fields: vec![
            "x".into(),
            "set-package".into(),
            "20533".into(),
            format!("PO-{i}"),
        ],
        raw: format!("x,set-package,20533,PO-{i}\n").into_bytes(),
        retries: 0,
        throttled: 0,
        elapsed: std::time::Duration::from_millis(3),
    }
}

fn write_results_and_checkpoint(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let p = input_file(dir.path());
    let (layout, _) = reader::open(&p, None, &Defaults::default()).unwrap();
    let rows: Vec<RowResult> = (0..10_000).map(row).collect();
    let mut g = c.benchmark_group("output");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("write_10k_result_rows", |b| {
        b.iter(|| {
            let mut r = ResultsFile::open(
                &dir.path().join("r.csv"),
                simbulk::files::OpenMode::Truncate,
                &layout,
            )
            .unwrap();
            for x in &rows {
                r.write(x).unwrap();
            }
            r.flush().unwrap();
        })
    });
    let header = Header {
        job: JobIdentity {
            input_sha256: "x".into(),
            input_bytes: 1,
            action: None,
            value: None,
            attribute: None,
            preview: false,
        },
        results: "r".into(),
        failures: "f".into(),
        created: "now".into(),
        input: None,
        change_ref: None,
        operator: None,
        version: None,
        apply_again: None,
    };
    g.bench_function("append_10k_checkpoint_records", |b| {
        b.iter(|| {
            let mut j = Journal::create(&dir.path().join("j"), &header).unwrap();
            for i in 0..10_000u64 {
                j.row(i + 2, Verdict::Ok, i * 100, 0);
            }
            j.flush().unwrap();
        })
    });
    g.finish();

    let big = dir.path().join("big");
    let mut j = Journal::create(&big, &header).unwrap();
    j.start(0, 0);
    for i in 0..1_000_000u64 {
        j.row(i + 2, Verdict::Ok, i * 100, 0);
    }
    j.flush().unwrap();
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("replay_1m_records", |b| {
        b.iter(|| {
            black_box(
                replay(&big, simbulk::checkpoint::Bounds::unlimited())
                    .unwrap()
                    .tally,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, read_and_validate, write_results_and_checkpoint);
criterion_main!(benches);
