//! What the audit trail costs, against baselines run in the same process:
//! - appends: memory; file with fsync per record; file with group commit (16 concurrent
//!   appenders), against a raw `write` + `fdatasync` loop of the same bytes;
//! - verification of a whole log, against raw SHA-256 of the same bytes.
//!
//! `cargo bench --bench audit` prints each figure and the ratios.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use approvals::file::{Durability, FileAudit, FileAuditOptions, read_checkpoints};
use approvals::memory::MemoryAudit;
use approvals::note::NoteSigner;
use approvals::verify::verify_log;
use approvals::{
    Action, ActionRef, AuditEvent, AuditSink, EventKind, Principal, RequestId, Timestamp,
};
use criterion::{Criterion, criterion_group, criterion_main};
use sha2_free::sha256;

/// A typical record: a review accepted on a request.
fn event() -> AuditEvent {
    let action = Action::builder("billing::export_customers", "export")
        .arg("limit", &500)
        .build()
        .expect("action");
    AuditEvent {
        at: Timestamp::now(),
        request_id: Some(RequestId::generate()),
        action: ActionRef::from(&action),
        actor: Some(Principal::human("alice")),
        policy_version: "code".into(),
        kind: EventKind::Started,
    }
}

fn file_audit(dir: &std::path::Path, durability: Durability) -> FileAudit {
    let signer = NoteSigner::generate("bench").expect("key");
    let options = FileAuditOptions::new("bench/audit", signer);
    FileAudit::open_with(
        dir.join(format!("audit-{}.jsonl", RequestId::generate())),
        options,
        durability,
    )
    .expect("open")
}

/// Appends `n` events from `tasks` concurrent tasks; returns the time per append.
fn appends(
    rt: &tokio::runtime::Runtime,
    sink: Arc<dyn AuditSink>,
    n: usize,
    tasks: usize,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    for _ in 0..n / tasks {
                        black_box(sink.append(event()).await.expect("append"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
        start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
    })
}

/// The same bytes written by hand: one `write` and one `fdatasync` per record.
fn raw_fsync(dir: &std::path::Path, line: &[u8], n: usize) -> Duration {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.jsonl"))
        .expect("raw file");
    let start = Instant::now();
    for _ in 0..n {
        f.write_all(line).expect("write");
        f.sync_data().expect("fdatasync");
    }
    start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let line = {
        let mut l = approvals::AuditRecord {
            seq: 1000,
            prev: None,
            event: event(),
        }
        .to_canonical_json();
        l.push('\n');
        l.into_bytes()
    };

    let mut group = c.benchmark_group("audit_append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("memory", |b| {
        let sink = MemoryAudit::new();
        b.to_async(&rt)
            .iter(|| async { black_box(sink.append(event()).await.expect("append")) })
    });
    group.bench_function("file_fsync_each", |b| {
        let sink = file_audit(dir.path(), Durability::EveryRecord);
        b.to_async(&rt)
            .iter(|| async { black_box(sink.append(event()).await.expect("append")) })
    });
    group.bench_function("raw_write_fdatasync", |b| {
        b.iter_custom(|iters| raw_fsync(dir.path(), &line, iters as usize) * iters as u32)
    });
    group.finish();

    // The ratios, from one run of each in this process.
    let n = 2000;
    let memory = appends(&rt, Arc::new(MemoryAudit::new()), 20_000, 1);
    let each = appends(
        &rt,
        Arc::new(file_audit(dir.path(), Durability::EveryRecord)),
        n,
        1,
    );
    let group_commit = appends(
        &rt,
        Arc::new(file_audit(
            dir.path(),
            Durability::Group {
                max_delay: Duration::ZERO,
            },
        )),
        n * 4,
        16,
    );
    let raw = raw_fsync(dir.path(), &line, n);
    println!(
        "audit append: memory {:.2} µs, file fsync-per-record {:.1} µs, file group commit (16 appenders) {:.1} µs; raw write+fdatasync {:.1} µs",
        us(memory),
        us(each),
        us(group_commit),
        us(raw)
    );
    println!(
        "  ratios to raw write+fdatasync: fsync-per-record {:.2}x, group commit {:.3}x",
        us(each) / us(raw),
        us(group_commit) / us(raw)
    );

    // Verification of a 20 000-record log against raw SHA-256 of the same bytes.
    let path = dir.path().join("verify.jsonl");
    let signer = NoteSigner::generate("bench").expect("key");
    let mut options = FileAuditOptions::new("bench/audit", signer.clone());
    options.checkpoint_every = 1000;
    let grouped = Durability::Group {
        max_delay: Duration::ZERO,
    };
    let sink: Arc<dyn AuditSink> =
        Arc::new(FileAudit::open_with(&path, options, grouped).expect("open"));
    appends(&rt, sink.clone(), 20_000, 16);
    rt.block_on(sink.flush()).expect("flush");
    let bytes = std::fs::read(&path).expect("log");
    let cps = read_checkpoints(&path).expect("checkpoints");
    let mut group = c.benchmark_group("audit_verify_20k");
    group.sample_size(10);
    group.bench_function("verify_log", |b| {
        b.iter(|| black_box(verify_log(&bytes, &cps, &signer.verifier()).expect("verifies")))
    });
    group.bench_function("raw_sha256", |b| b.iter(|| black_box(sha256(&bytes))));
    group.finish();
    // Interleaved, so both see the same machine.
    let (mut verify, mut raw) = (Duration::ZERO, Duration::ZERO);
    // And the fastest of each, which the machine's noise can only slow.
    let (mut verify_min, mut raw_min) = (Duration::MAX, Duration::MAX);
    for _ in 0..10 {
        let t = Instant::now();
        black_box(verify_log(&bytes, &cps, &signer.verifier()).expect("verifies"));
        let took = t.elapsed();
        (verify, verify_min) = (verify + took, verify_min.min(took));
        let t = Instant::now();
        black_box(sha256(&bytes));
        let took = t.elapsed();
        (raw, raw_min) = (raw + took, raw_min.min(took));
    }
    let (verify, raw) = (verify / 10, raw / 10);
    let mb = bytes.len() as f64 / 1e6;
    println!(
        "audit verify: {} records ({mb:.1} MB, {} checkpoints) in {:.1} ms ({:.0} MB/s); raw SHA-256 of the same bytes {:.2} ms ({:.0} MB/s); verification at {:.0}% of SHA-256's speed (ratio {:.2}x)",
        20_000,
        cps.len(),
        verify.as_secs_f64() * 1e3,
        mb / verify.as_secs_f64(),
        raw.as_secs_f64() * 1e3,
        mb / raw.as_secs_f64(),
        100.0 * raw.as_secs_f64() / verify.as_secs_f64(),
        verify.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "  the fastest of the 10 runs of each: verifying {:.1} ms, raw SHA-256 {:.2} ms; verification at {:.0}%",
        verify_min.as_secs_f64() * 1e3,
        raw_min.as_secs_f64() * 1e3,
        100.0 * raw_min.as_secs_f64() / verify_min.as_secs_f64()
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Raw SHA-256 through the `sha2` crate the library itself uses.
mod sha2_free {
    pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
        approvals::Digest::of(bytes).0
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
