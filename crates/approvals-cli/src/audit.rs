//! `approvals audit ...` and `approvals keygen`.

use std::path::{Path, PathBuf};

use approvals_backends::file::{read_checkpoints, write_new_signer};
use approvals_backends::sql::{Database, ExportedLog};
use approvals_core::AuditRecord;
use approvals_core::log::note::{Checkpoint, NoteVerifier};
use approvals_core::log::verify::{read_records, verify_log};
use approvals_core::log::{ProofBundle, ProofError, Proven};
use clap::Subcommand;
use serde_json::json;

use crate::output::{Failure, Output};

/// Where a log is read from: a JSONL file, or the database of a running deployment.
#[derive(clap::Args)]
pub(crate) struct Source {
    /// The JSONL log (its checkpoints are read from FILE.checkpoints).
    #[arg(required_unless_present = "db")]
    file: Option<PathBuf>,
    /// Read the log from a database instead: `sqlite:PATH` or
    /// `postgres://USER@HOST/DB[?schema=NAME]` (opened read-only; nothing is migrated).
    #[arg(long, conflicts_with = "file")]
    db: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify a whole log against its signed checkpoints.
    Verify {
        #[command(flatten)]
        source: Source,
        /// The verifier key, or a file holding it.
        #[arg(long)]
        vkey: String,
        /// The origin the operator published with the key: every checkpoint must name it.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Show a readable timeline of one request, or of all; or, with --shadow, what the
    /// rules in shadow mode would have done.
    Show {
        #[command(flatten)]
        source: Source,
        /// Only this request.
        #[arg(long, conflicts_with = "shadow")]
        request: Option<String>,
        /// Summarise the shadow records instead: per policy and rule, what it would have
        /// done, and what was done.
        #[arg(long)]
        shadow: bool,
        /// Only records from then on: an RFC 3339 time, or a duration back from now (`7d`).
        #[arg(long)]
        since: Option<String>,
        /// Only records before then: an RFC 3339 time, or a duration back from now.
        #[arg(long)]
        until: Option<String>,
    },
    /// Write a proof bundle for one record: the record, its inclusion proof and the signed
    /// checkpoint it is proven against. It verifies offline, without the log.
    Prove {
        #[command(flatten)]
        source: Source,
        /// The record's sequence number.
        #[arg(long)]
        seq: u64,
        /// Where to write the bundle (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a database's audit log as JSONL (to standard output, or `--out FILE` with its
    /// checkpoints in FILE.checkpoints), byte for byte the records its Merkle tree covers.
    Export {
        /// `sqlite:PATH` or `postgres://USER@HOST/DB[?schema=NAME]`.
        #[arg(long)]
        db: String,
        /// Write the log here, and its checkpoints beside it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the checkpoints here (with the log on standard output).
        #[arg(long, conflicts_with = "out")]
        checkpoints: Option<PathBuf>,
    },
    /// Verify a proof bundle offline.
    CheckProof {
        /// The bundle written by `approvals audit prove`.
        bundle: PathBuf,
        /// The verifier key, or a file holding it.
        #[arg(long)]
        vkey: String,
    },
}

/// A log's records (JSONL bytes) and its signed checkpoints.
struct Log {
    bytes: Vec<u8>,
    checkpoints: Vec<String>,
}

impl Source {
    fn load(&self) -> Result<Log, Failure> {
        match (&self.file, &self.db) {
            (_, Some(url)) => {
                let log = export(url)?;
                Ok(Log {
                    bytes: log.jsonl().into_bytes(),
                    checkpoints: log.checkpoints,
                })
            }
            (Some(file), None) => Ok(Log {
                bytes: read_file(file)?,
                checkpoints: read_checkpoints(file)?,
            }),
            (None, None) => Err("give a JSONL file or --db".into()),
        }
    }
}

/// Reads a database's whole log, opening it read-only.
fn export(url: &str) -> Result<ExportedLog, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let db = Database::open_existing(url)
            .await
            .map_err(|e| e.to_string())?;
        let log = db.export_audit().await.map_err(|e| e.to_string());
        db.close().await;
        Ok(log?)
    })
}

fn read_vkey(arg: &str) -> Result<NoteVerifier, Failure> {
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|e| format!("{arg}: {e}"))?
    } else {
        arg.to_owned()
    };
    Ok(NoteVerifier::from_vkey(&text).map_err(|e| format!("--vkey: {e}"))?)
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    Ok(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)
}

pub(crate) fn keygen(
    out: &Output,
    name: &str,
    path: &Path,
    vkey_out: Option<&Path>,
) -> Result<(), Failure> {
    let signer = write_new_signer(path, name)?;
    let vkey = signer.verifier().to_vkey();
    if let Some(v) = vkey_out {
        std::fs::write(v, format!("{vkey}\n")).map_err(|e| format!("{}: {e}", v.display()))?;
    }
    if out.json() {
        out.ok("", json!({ "ok": true, "key_file": path, "vkey": vkey }));
    } else {
        out.line(&vkey);
    }
    Ok(())
}

pub(crate) fn run(out: &Output, cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Verify {
            source,
            vkey,
            origin,
        } => verify(out, &source.load()?, &vkey, origin.as_deref()),
        AuditCommand::Show {
            source,
            request,
            shadow,
            since,
            until,
        } => {
            let period = Period::read(since.as_deref(), until.as_deref())?;
            let log = source.load()?;
            if shadow {
                show_shadow(out, &log, &period)
            } else {
                show(out, &log, request.as_deref(), &period)
            }
        }
        AuditCommand::Prove {
            source,
            seq,
            out: to,
        } => prove(out, &source.load()?, seq, to.as_deref()),
        AuditCommand::Export {
            db,
            out: to,
            checkpoints,
        } => export_to(out, &db, to.as_deref(), checkpoints.as_deref()),
        AuditCommand::CheckProof { bundle, vkey } => check_proof(out, &bundle, &vkey),
    }
}

fn export_to(
    out: &Output,
    url: &str,
    to: Option<&Path>,
    checkpoints: Option<&Path>,
) -> Result<(), Failure> {
    let log = export(url)?;
    let write = |p: &Path, text: String| {
        std::fs::write(p, text).map_err(|e| Failure::from(format!("{}: {e}", p.display())))
    };
    match to {
        Some(p) => {
            write(p, log.jsonl())?;
            let cps = approvals_backends::file::checkpoints_path(p);
            write(&cps, log.checkpoints_file())?;
            out.ok(
                &format!(
                    "{} records and {} checkpoints written to {} and {}",
                    log.records.len(),
                    log.checkpoints.len(),
                    p.display(),
                    cps.display()
                ),
                json!({ "ok": true, "records": log.records.len(), "checkpoints": log.checkpoints.len(), "log": p, "checkpoints_file": cps }),
            );
        }
        None => {
            if let Some(c) = checkpoints {
                write(c, log.checkpoints_file())?;
            }
            // The JSONL itself, whatever the output format: it is the export.
            use std::io::Write;
            std::io::stdout()
                .write_all(log.jsonl().as_bytes())
                .map_err(|e| format!("standard output: {e}"))?;
        }
    }
    Ok(())
}

fn verify(out: &Output, log: &Log, vkey: &str, origin: Option<&str>) -> Result<(), Failure> {
    let verifier = read_vkey(vkey)?;
    let report = verify_log(&log.bytes, &log.checkpoints, &verifier).map_err(|e| Failure {
        seq: e.seq(),
        message: e.to_string(),
    })?;
    // Every checkpoint names the same origin (verify_log checks); that it is the published
    // one is checked here.
    if let (Some(want), Some(cp)) = (origin, &report.checkpoint)
        && cp.origin != want
    {
        return Err(format!(
            "the checkpoints name the origin {:?}, not {want:?}: this is not the log you asked for",
            cp.origin
        )
        .into());
    }
    let size = report.checkpoint.as_ref().map_or(0, |c| c.size);
    let mut text = format!(
        "{} records, checkpoint at size {size} verified",
        report.records
    );
    if report.unsigned_tail > 0 {
        text.push_str(&format!(
            " ({} later records not yet covered by a checkpoint)",
            report.unsigned_tail
        ));
    }
    out.ok(
        &text,
        json!({ "ok": true, "records": report.records, "checkpoint_size": size, "unsigned_tail": report.unsigned_tail }),
    );
    Ok(())
}

/// `--since` and `--until`, read.
struct Period {
    since: Option<approvals_core::Timestamp>,
    until: Option<approvals_core::Timestamp>,
}

impl Period {
    fn read(since: Option<&str>, until: Option<&str>) -> Result<Self, Failure> {
        let now = approvals_core::Timestamp::now();
        let at = |s: &str, flag: &str| -> Result<approvals_core::Timestamp, Failure> {
            if let Ok(t) = s.parse() {
                return Ok(t);
            }
            let back = humantime::parse_duration(s).map_err(|_| {
                format!(
                    "{flag} takes an RFC 3339 time or a duration back from now (`7d`), not `{s}`"
                )
            })?;
            let micros = i64::try_from(back.as_micros()).unwrap_or(i64::MAX);
            Ok(approvals_core::Timestamp::from_unix_micros(
                now.unix_micros().saturating_sub(micros),
            ))
        };
        Ok(Self {
            since: since.map(|s| at(s, "--since")).transpose()?,
            until: until.map(|s| at(s, "--until")).transpose()?,
        })
    }

    fn holds(&self, r: &AuditRecord) -> bool {
        self.since.is_none_or(|s| r.event.at >= s) && self.until.is_none_or(|u| r.event.at < u)
    }
}

/// `audit show --shadow`: per policy and shadow rule, what it would have done and what the
/// enforced rules did with the same call (the next record of that call).
fn show_shadow(out: &Output, log: &Log, period: &Period) -> Result<(), Failure> {
    use approvals_core::EventKind;
    use std::collections::BTreeMap;
    let (records, _) = read_records(&log.bytes).map_err(|e| Failure {
        seq: e.seq(),
        message: e.to_string(),
    })?;
    // (policy, rule, would) -> (times, what was done -> times)
    type Key = (String, String, String);
    let mut summary: BTreeMap<Key, (u64, BTreeMap<&'static str, u64>)> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let EventKind::Shadow { rule, would, .. } = &r.event.kind else {
            continue;
        };
        if !period.holds(r) {
            continue;
        }
        // The gate writes the enforced verdict's record right after; other calls' records
        // may come between.
        let done = records[i + 1..]
            .iter()
            .take(256)
            .find(|n| {
                n.event.action.digest == r.event.action.digest
                    && n.event.actor == r.event.actor
                    && matches!(
                        n.event.kind,
                        EventKind::Allowed { .. }
                            | EventKind::PolicyDenied { .. }
                            | EventKind::Requested { .. }
                            | EventKind::Attached
                            | EventKind::GrantUsed { .. }
                    )
            })
            .map_or("unknown", |n| n.event.name());
        let entry = summary
            .entry((
                r.event.action.policy.to_string(),
                rule.clone(),
                would.clone(),
            ))
            .or_default();
        entry.0 += 1;
        *entry.1.entry(done).or_default() += 1;
    }
    if out.json() {
        for ((policy, rule, would), (times, done)) in &summary {
            out.line(
                &serde_json::json!({
                    "policy": policy, "rule": rule, "would": would, "times": times, "done": done,
                })
                .to_string(),
            );
        }
        return Ok(());
    }
    let total: u64 = summary.values().map(|(n, _)| n).sum();
    out.line(&format!(
        "rules in shadow mode decided {total} call{} in this period (recorded, not enforced)",
        if total == 1 { "" } else { "s" }
    ));
    for ((policy, rule, would), (times, done)) in &summary {
        let would = match would.as_str() {
            "allow" => "would have allowed",
            "deny" => "would have denied",
            _ => "would have required approval",
        };
        let done: Vec<String> = done.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out.line(&format!(
            "  policy {policy}, rule {rule}: {would} {times}× (done instead: {})",
            done.join(", ")
        ));
    }
    Ok(())
}

fn show(out: &Output, log: &Log, request: Option<&str>, period: &Period) -> Result<(), Failure> {
    let (records, _) = read_records(&log.bytes).map_err(|e| Failure {
        seq: e.seq(),
        message: e.to_string(),
    })?;
    let wanted = |r: &AuditRecord| {
        period.holds(r)
            && match request {
                None => true,
                Some(id) => r.event.request_id.is_some_and(|rid| rid.to_string() == id),
            }
    };
    let chosen: Vec<&AuditRecord> = records.iter().filter(|r| wanted(r)).collect();
    if request.is_some() && chosen.is_empty() {
        return Err(format!("no records for request {}", request.unwrap_or_default()).into());
    }
    if out.json() {
        for r in chosen {
            out.line(&serde_json::to_string(r)?);
        }
        return Ok(());
    }
    let mut current = None;
    let doubtful = in_doubt(&records);
    let shown: std::collections::BTreeSet<_> =
        chosen.iter().filter_map(|r| r.event.request_id).collect();
    for r in chosen {
        let e = &r.event;
        if e.request_id != current {
            current = e.request_id;
            let head = match e.request_id {
                Some(id) => format!(
                    "request {id}  {}  (policy {})",
                    e.action.name, e.action.policy
                ),
                None => format!("{}  (policy {})", e.action.name, e.action.policy),
            };
            out.line(&format!("\n{head}"));
        }
        let who = e
            .actor
            .as_ref()
            .map_or_else(|| "gate".to_owned(), ToString::to_string);
        out.line(&format!(
            "  {} {}  {:<16} {:<16} {}",
            out.dim(&format!("#{:<4}", r.seq)),
            e.at,
            e.name(),
            who,
            e.kind.summary()
        ));
    }
    for (id, at) in doubtful.iter().filter(|(id, _)| shown.contains(id)) {
        out.line(&format!(
            "\nrequest {id} is IN DOUBT: its approved body started at {at} and no finish is recorded; it is still running, or its process died mid-call. It is not run again automatically."
        ));
    }
    Ok(())
}

/// Requests whose approved body started and never recorded its end, with when it started.
fn in_doubt(
    records: &[AuditRecord],
) -> std::collections::BTreeMap<approvals_core::RequestId, approvals_core::Timestamp> {
    use approvals_core::EventKind;
    let mut started = std::collections::BTreeMap::new();
    for r in records {
        let Some(id) = r.event.request_id else {
            continue;
        };
        match r.event.kind {
            EventKind::Started => {
                started.insert(id, r.event.at);
            }
            EventKind::Finished { .. } => {
                started.remove(&id);
            }
            _ => {}
        }
    }
    started
}

fn prove(out: &Output, log: &Log, seq: u64, to: Option<&Path>) -> Result<(), Failure> {
    let bytes = &log.bytes;
    let (_, leaves) = read_records(bytes).map_err(|e| Failure {
        seq: e.seq(),
        message: e.to_string(),
    })?;
    let line = String::from_utf8_lossy(bytes)
        .lines()
        .nth(usize::try_from(seq).unwrap_or(usize::MAX))
        .map(str::to_owned)
        .ok_or_else(|| format!("the log has no record {seq}"))?;
    // Against the latest checkpoint, as the API proves (its signature is for the reader to
    // check, with check-proof).
    let bundle = ProofBundle::prove(
        &leaves,
        seq,
        &line,
        log.checkpoints.last().map(String::as_str),
    )
    .map_err(|e| Failure {
        seq: match e {
            ProofError::Truncated { records, .. } => Some(records),
            _ => Some(seq),
        },
        message: e.to_string(),
    })?;
    let Some(size) = bundle
        .checkpoint
        .as_deref()
        .and_then(|n| Checkpoint::parse(n).ok())
        .map(|c| c.size)
    else {
        return Err(ProofError::NotCovered { seq }.to_string().into());
    };
    let text = serde_json::to_string_pretty(&bundle)?;
    match to {
        Some(p) => {
            std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
            out.ok(
                &format!(
                    "proof of record {seq} against the checkpoint at size {size} written to {}",
                    p.display()
                ),
                json!({ "ok": true, "seq": seq, "checkpoint_size": size, "bundle": p }),
            );
        }
        None => out.line(&text),
    }
    Ok(())
}

fn check_proof(out: &Output, path: &Path, vkey: &str) -> Result<(), Failure> {
    let verifier = read_vkey(vkey)?;
    let bundle: ProofBundle = serde_json::from_slice(&read_file(path)?)
        .map_err(|e| format!("{}: not a proof bundle: {e}", path.display()))?;
    let Proven {
        record,
        checkpoint: cp,
    } = bundle.check(&verifier).map_err(|e| Failure {
        seq: match e {
            ProofError::Record { seq, .. } => Some(seq),
            _ => None,
        },
        message: e.to_string(),
    })?;
    out.ok(
        &format!(
            "record {} ({} of {}) is in {} at size {}, signed by {}",
            bundle.seq,
            record.event.name(),
            record.event.action.name,
            cp.origin,
            cp.size,
            verifier.name()
        ),
        json!({ "ok": true, "seq": bundle.seq, "origin": cp.origin, "checkpoint_size": cp.size }),
    );
    Ok(())
}
