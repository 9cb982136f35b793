use std::sync::OnceLock;

use approvals_core::text::{Packed, Packer};
use approvals_core::{
    ActionRef, AuditError, AuditEvent, AuditReceipt, AuditRecord, AuditSink, Digest, EventKind,
    Principal, SmolStr, Timestamp,
};
use async_trait::async_trait;
use tokio::sync::watch;

/// An [`AuditSink`] that keeps records in memory, in order, numbered from 0.
///
/// [`MemoryAudit::wait_for`] lets a test wait for a condition on the log instead of sleeping.
///
/// ```
/// use approvals_backends::memory::MemoryAudit;
/// let audit = MemoryAudit::new();
/// assert!(audit.records().is_empty());
/// ```
#[derive(Debug)]
pub struct MemoryAudit {
    records: watch::Sender<MemoryRecords>,
    packer: Packer,
}

impl Default for MemoryAudit {
    fn default() -> Self {
        Self {
            records: watch::Sender::new(MemoryRecords::default()),
            packer: Packer::default(),
        }
    }
}

/// The records a [`MemoryAudit`] holds, in order, as [`MemoryAudit::wait_for`] shows them.
///
/// Kept in chunks of a fixed size rather than one vector: a vector that doubles as it grows
/// keeps up to as much again spare and copies every record each time it moves (an
/// append paid for that copy on the gate's allowed path), while a full chunk is never
/// touched again.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use approvals_backends::memory::MemoryAudit;
/// let audit = MemoryAudit::new();
/// audit.wait_for(|r| r.is_empty() && r.last().is_none()).await;
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryRecords {
    /// Every chunk but the last is full.
    chunks: Vec<Chunk>,
    /// What allowed records share, kept once for each run of allowed records that share
    /// it, in the order of the runs: an allowed record's slot names its run's by place.
    allowings: Vec<Allowing>,
}

/// Records a chunk holds (each chunk is one allocation of this many).
const CHUNK: usize = 256;

/// Up to [`CHUNK`] records, each in its slot.
///
/// A slot that keeps less than the whole record (`Written`, `Allowed`) has it built once,
/// when it is first read, into the chunk's table of records read. That table is made for
/// the whole chunk when one of its records is first read, so that a log never read (a
/// service's, whose readers read the durable log) costs its slots alone: the table's place
/// in each slot made every slot, a waiting call's too, 16 bytes larger.
#[derive(Debug)]
struct Chunk {
    slots: Vec<Kept>,
    read: OnceLock<Box<[OnceLock<Box<AuditRecord>>]>>,
}

/// How one record is kept.
///
/// A `requested` record is most of what a waiting call keeps here, and the largest: as a
/// value (its arguments, context and requirement, each string its own allocation) it took
/// about 1.7 KB, as its event's JSON text a third of that, and that text packed against the
/// records before it ([`Packer`]) about 160 bytes. So it is kept packed until it is first
/// read, then read from the value decoded then.
///
/// An `allowed` record is what an allowed call leaves here, one a call: boxed as a record it
/// took 336 bytes of fresh memory, and the kernel's zeroing of fresh pages for them was a
/// fifth of an allowed call's time. What differs from one allowed call to the next is its
/// time and digest; the names, the requester, the policy's version and the rule are shared
/// with the allowed record before it ([`Allowing`]), kept once in the log's list of them,
/// so a slot holds the record whole with that list (48 bytes: a place in the list, not a
/// shared pointer, which every allowed record counted up and kept 8 bytes for).
///
/// Every other record is kept as appended, boxed, so that a chunk's slots stay small. A
/// record's number is its place in the log, not kept in it.
#[derive(Debug)]
enum Kept {
    Event(Box<AuditRecord>),
    Written(Packed),
    Allowed {
        at: Timestamp,
        digest: Digest,
        /// Its place in [`MemoryRecords::allowings`].
        allowing: u32,
    },
}

/// What allowed records in a row share: everything but their time and digest.
#[derive(Debug)]
struct Allowing {
    name: SmolStr,
    policy: SmolStr,
    actor: Option<Principal>,
    policy_version: SmolStr,
    rule: SmolStr,
}

/// Compared on every allowed record, mostly with names that are the very same text (a
/// gated function's static name and policy, a rule's shared name): those are equal without
/// reading them.
impl PartialEq for Allowing {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &SmolStr, b: &SmolStr| {
            let (a, b) = (a.as_bytes(), b.as_bytes());
            a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
        };
        // Whole, so that a field added to either is compared here too, or does not compile.
        let Allowing {
            name,
            policy,
            actor,
            policy_version,
            rule,
        } = self;
        same(name, &other.name)
            && same(policy, &other.policy)
            && same(policy_version, &other.policy_version)
            && same(rule, &other.rule)
            && match (actor, &other.actor) {
                (Some(Principal { id, kind }), Some(b)) => *kind == b.kind && same(id, &b.id),
                (a, b) => a.is_none() && b.is_none(),
            }
    }
}

impl Allowing {
    /// The allowed event at `at` of the call with `digest` that shares this.
    fn event(&self, at: Timestamp, digest: Digest) -> AuditEvent {
        let Allowing {
            name,
            policy,
            actor,
            policy_version,
            rule,
        } = self;
        AuditEvent {
            at,
            request_id: None,
            action: ActionRef {
                name: name.clone(),
                policy: policy.clone(),
                digest,
            },
            actor: actor.clone(),
            policy_version: policy_version.clone(),
            kind: EventKind::Allowed { rule: rule.clone() },
        }
    }
}

/// A record on its way into the log: what [`MemoryRecords::push`] keeps, worked out before
/// the log's lock is taken but for what an allowed record shares with the one before it.
enum Appending {
    Allowed {
        at: Timestamp,
        digest: Digest,
        allowing: Allowing,
    },
    Kept(Kept),
}

impl Appending {
    fn new(event: AuditEvent, packer: &Packer) -> Self {
        match event {
            AuditEvent {
                at,
                request_id: None,
                action:
                    ActionRef {
                        name,
                        policy,
                        digest,
                    },
                actor,
                policy_version,
                kind: EventKind::Allowed { rule },
            } => Appending::Allowed {
                at,
                digest,
                allowing: Allowing {
                    name,
                    policy,
                    actor,
                    policy_version,
                    rule,
                },
            },
            event => {
                if let EventKind::Requested { .. } = event.kind {
                    // Kept as it is if it does not read back as the same event.
                    if let Some(text) = packer.written(&event) {
                        return Appending::Kept(Kept::Written(text));
                    }
                }
                Appending::Kept(Kept::Event(Box::new(AuditRecord {
                    seq: 0,
                    prev: None,
                    event,
                })))
            }
        }
    }
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            slots: Vec::with_capacity(CHUNK),
            read: OnceLock::new(),
        }
    }

    /// The record in slot `i`, numbered `seq`; `allowings` is the log's
    /// ([`MemoryRecords::allowings`]).
    fn record<'a>(
        &'a self,
        i: usize,
        seq: usize,
        allowings: &[Allowing],
    ) -> Option<&'a AuditRecord> {
        let seq = seq as u64;
        Some(match self.slots.get(i)? {
            Kept::Event(record) => record,
            Kept::Written(text) => self.read(i, || {
                let event = text.read().unwrap_or_else(|e| {
                    unreachable!("an event is kept as text only once it reads back: {e}")
                });
                AuditRecord {
                    seq,
                    prev: None,
                    event,
                }
            }),
            Kept::Allowed {
                at,
                digest,
                allowing,
            } => self.read(i, || {
                let allowing = allowings.get(*allowing as usize).unwrap_or_else(|| {
                    unreachable!("an allowed record's shared part is kept before the record")
                });
                AuditRecord {
                    seq,
                    prev: None,
                    event: allowing.event(*at, *digest),
                }
            }),
        })
    }

    /// The record in slot `i` as first read, built by `build` then.
    fn read(&self, i: usize, build: impl FnOnce() -> AuditRecord) -> &AuditRecord {
        let read = self
            .read
            .get_or_init(|| std::iter::repeat_with(OnceLock::new).take(CHUNK).collect());
        // `i` is a slot's place, below `CHUNK`.
        read[i].get_or_init(|| Box::new(build()))
    }
}

impl MemoryRecords {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.slots.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The records, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &AuditRecord> + '_ {
        let allowings = &self.allowings;
        self.chunks.iter().enumerate().flat_map(move |(c, chunk)| {
            (0..chunk.slots.len()).filter_map(move |i| chunk.record(i, c * CHUNK + i, allowings))
        })
    }

    /// The record numbered `seq`.
    pub fn get(&self, seq: usize) -> Option<&AuditRecord> {
        self.chunks
            .get(seq / CHUNK)?
            .record(seq % CHUNK, seq, &self.allowings)
    }

    /// The newest record.
    pub fn last(&self) -> Option<&AuditRecord> {
        let seq = self.len().checked_sub(1)?;
        self.get(seq)
    }

    /// Numbers the record and keeps it. An `allowed` record shares what it can with the
    /// allowed record before it.
    fn push(&mut self, appending: Appending) -> u64 {
        let seq = self.len() as u64;
        let kept = match appending {
            Appending::Allowed {
                at,
                digest,
                allowing,
            } => {
                // Its run's place: the last one's if the allowed record before shares it,
                // else a new last one's.
                let same = self.allowings.last() == Some(&allowing);
                match u32::try_from(self.allowings.len() - usize::from(same)) {
                    Ok(place) => {
                        if !same {
                            self.allowings.push(allowing);
                        }
                        Kept::Allowed {
                            at,
                            digest,
                            allowing: place,
                        }
                    }
                    // Past four billion runs: kept whole.
                    Err(_) => Kept::Event(Box::new(AuditRecord {
                        seq,
                        prev: None,
                        event: allowing.event(at, digest),
                    })),
                }
            }
            Appending::Kept(Kept::Event(mut record)) => {
                record.seq = seq;
                Kept::Event(record)
            }
            Appending::Kept(kept) => kept,
        };
        match self.chunks.last_mut() {
            Some(chunk) if chunk.slots.len() < CHUNK => chunk.slots.push(kept),
            _ => {
                let mut chunk = Chunk::new();
                chunk.slots.push(kept);
                self.chunks.push(chunk);
            }
        }
        seq
    }
}

impl MemoryAudit {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record so far, in order, each linked to the one before (`prev`).
    ///
    /// The links are computed here, on reading, so that appending stays cheap.
    pub fn records(&self) -> Vec<AuditRecord> {
        let stored = self.records.borrow();
        let mut records = Vec::with_capacity(stored.len());
        let mut prev = None;
        for r in stored.iter() {
            let mut r = r.clone();
            r.prev = prev;
            prev = Some(r.leaf_hash());
            records.push(r);
        }
        records
    }

    /// Resolves once `condition` holds for the log (at once if it already does). The
    /// condition sees the records as appended, before [`MemoryAudit::records`] links them.
    pub async fn wait_for(&self, condition: impl Fn(&MemoryRecords) -> bool) {
        let mut rx = self.records.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|records| condition(records)).await;
    }

    /// Appends at once: nothing here awaits.
    fn push(&self, event: AuditEvent) -> AuditReceipt {
        let kept = Appending::new(event, &self.packer);
        let mut seq = 0;
        // Waiters are woken only if there are any ([`MemoryAudit::wait_for`]): waking the
        // channel's every slot cost more than the rest of an append. The record is pushed
        // under the channel's lock, so a waiter that subscribes too late to be woken reads
        // it when it first looks.
        self.records.send_if_modified(|records| {
            seq = records.push(kept);
            self.records.receiver_count() > 0
        });
        AuditReceipt { seq }
    }
}

#[async_trait]
impl AuditSink for MemoryAudit {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        Ok(self.push(event))
    }

    fn append_now(
        &self,
        event: AuditEvent,
    ) -> Result<Result<AuditReceipt, AuditError>, AuditEvent> {
        Ok(Ok(self.push(event)))
    }
}

#[async_trait]
impl approvals_core::log::AuditLog for MemoryAudit {
    async fn read_log(&self) -> Result<approvals_core::log::StoredLog, approvals_core::StoreError> {
        Ok(approvals_core::log::StoredLog {
            records: self
                .records()
                .iter()
                .map(AuditRecord::to_canonical_json)
                .collect(),
            checkpoints: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approvals_core::{
        Action, ActionRef, Context, EventKind, Factor, Principal, RequestId, Requirement, Timestamp,
    };

    #[tokio::test]
    async fn records_read_back_in_order_across_chunks() {
        // Past two whole chunks and into a third: numbered, ordered and found by number
        // the same way on each side of a chunk's edge.
        let audit = MemoryAudit::new();
        let n = 2 * CHUNK + 3;
        for i in 0..n {
            let action = Action::builder("f", "p").arg("i", &i).build().unwrap();
            let receipt = audit
                .append(AuditEvent {
                    at: Timestamp::now(),
                    request_id: None,
                    action: ActionRef::from(&action),
                    actor: Some(Principal::agent("bot")),
                    policy_version: "code".into(),
                    kind: EventKind::Allowed {
                        rule: i.to_string().into(),
                    },
                })
                .await
                .unwrap();
            assert_eq!(receipt.seq, i as u64);
        }
        let rule = |r: &AuditRecord| match &r.event.kind {
            EventKind::Allowed { rule } => rule.to_string(),
            other => panic!("{other:?}"),
        };
        audit
            .wait_for(|r| {
                assert_eq!(r.len(), n);
                let rules: Vec<String> = r.iter().map(rule).collect();
                let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                assert_eq!(rules, expected);
                for i in [0, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, n - 1] {
                    assert_eq!(r.get(i).map(rule), Some(i.to_string()), "record {i}");
                }
                assert!(r.get(n).is_none());
                assert_eq!(r.last().map(rule), Some((n - 1).to_string()));
                assert_eq!(r.iter().next_back().map(rule), Some((n - 1).to_string()));
                true
            })
            .await;
        // Read back linked: each record's `prev` is the leaf hash of the one before.
        let linked = audit.records();
        assert_eq!(linked.len(), n);
        assert!(linked[0].prev.is_none());
        for pair in linked.windows(2) {
            assert_eq!(pair[1].prev, Some(pair[0].leaf_hash()));
        }
    }

    #[tokio::test]
    async fn an_allowed_record_kept_in_its_slot_reads_back_as_appended() {
        let action = |name: &str| Action::builder(name, "p").arg("n", &1).build().unwrap();
        let allowed = |name: &str, actor: &str, rule: &str| AuditEvent {
            at: Timestamp::from_unix_micros(1_700_000_000_123_456),
            request_id: None,
            action: ActionRef::from(&action(name)),
            actor: Some(Principal::agent(actor)),
            policy_version: "a-policy-version-longer-than-a-short-string".into(),
            kind: EventKind::Allowed { rule: rule.into() },
        };
        let appended = [
            allowed("deploy", "bot", "ok"),
            allowed("deploy", "bot", "ok"),
            // Each shared part differing from the record before, in turn.
            allowed("deploy", "other-bot", "ok"),
            allowed("deploy", "other-bot", "another-rule"),
            allowed("scale", "other-bot", "another-rule"),
            AuditEvent {
                actor: None,
                ..allowed("scale", "other-bot", "another-rule")
            },
            // With a request (a grant's use): kept as appended.
            AuditEvent {
                request_id: Some(RequestId::generate()),
                ..allowed("scale", "bot", "ok")
            },
            allowed("scale", "bot", "ok"),
        ];
        let audit = MemoryAudit::new();
        for (i, event) in appended.iter().enumerate() {
            assert_eq!(audit.append(event.clone()).await.unwrap().seq, i as u64);
        }
        audit
            .wait_for(|r| {
                let shared: Vec<Option<u32>> = r.chunks[0]
                    .slots
                    .iter()
                    .map(|k| match k {
                        Kept::Allowed { allowing, .. } => Some(*allowing),
                        _ => None,
                    })
                    .collect();
                assert!(shared[..6].iter().all(Option::is_some), "{shared:?}");
                assert_eq!(shared[0], shared[1], "the same shared part, kept once");
                for i in 2..6 {
                    assert_ne!(
                        shared[i],
                        shared[i - 1],
                        "record {i} differs from the one before"
                    );
                }
                assert_eq!(shared[6], None);
                assert_eq!(shared[7], Some(5), "a new run after the record kept whole");
                assert_eq!(
                    r.allowings.len(),
                    6,
                    "each shared part kept once for its run"
                );
                let read: Vec<(u64, &AuditEvent)> = r.iter().map(|r| (r.seq, &r.event)).collect();
                let expected: Vec<(u64, &AuditEvent)> = (0..).zip(appended.iter()).collect();
                assert_eq!(read, expected);
                assert_eq!(r.get(4).map(|r| (r.seq, &r.event)), Some((4, &appended[4])));
                assert_eq!(r.last().map(|r| r.seq), Some(7));
                true
            })
            .await;
        // Read back linked and written as the same canonical JSON as the event appended.
        let linked = audit.records();
        for (i, record) in linked.iter().enumerate() {
            let as_appended = AuditRecord {
                seq: i as u64,
                prev: (i > 0).then(|| linked[i - 1].leaf_hash()),
                event: appended[i].clone(),
            };
            assert_eq!(record.to_canonical_json(), as_appended.to_canonical_json());
        }
    }

    /// What decides whether an allowed record shares the one before's part: every field
    /// compared, by its text, however each string is kept (static, inline or shared).
    #[test]
    fn shared_parts_are_equal_exactly_when_every_field_is() {
        let long = "a-name-longer-than-twenty-three-bytes::f";
        let base = || Allowing {
            name: SmolStr::new_static(long),
            policy: SmolStr::new_static("p"),
            actor: Some(Principal::agent("bot")),
            policy_version: SmolStr::new("v1"),
            rule: SmolStr::new("ok"),
        };
        let same_text = Allowing {
            name: SmolStr::new(String::from(long)),
            policy: SmolStr::new(String::from("p")),
            ..base()
        };
        assert!(base() == same_text && same_text == base());
        let differing = [
            Allowing {
                name: "a-name-longer-than-twenty-three-bytes::g".into(),
                ..base()
            },
            Allowing {
                policy: "q".into(),
                ..base()
            },
            Allowing {
                actor: Some(Principal::human("bot")),
                ..base()
            },
            Allowing {
                actor: Some(Principal::agent("bob")),
                ..base()
            },
            Allowing {
                actor: None,
                ..base()
            },
            Allowing {
                policy_version: "v2".into(),
                ..base()
            },
            Allowing {
                rule: "ok2".into(),
                ..base()
            },
        ];
        for (i, other) in differing.iter().enumerate() {
            assert!(base() != *other && *other != base(), "field {i}");
        }
        let anonymous = || Allowing {
            actor: None,
            ..base()
        };
        assert!(anonymous() == anonymous());
    }

    #[test]
    fn a_slot_stays_small() {
        // An allowed call keeps one slot: its size is what a call costs in fresh memory.
        assert!(
            std::mem::size_of::<Kept>() <= 48,
            "{}",
            std::mem::size_of::<Kept>()
        );
    }

    /// A `requested` event with something in each field but `edit_of`.
    fn requested(action: &Action) -> AuditEvent {
        let context = Context::new(Principal::agent("bot"))
            .reason("quarterly export \u{2014} \"all\" rows\n")
            .label("ticket", "OPS-7");
        AuditEvent {
            at: Timestamp::now(),
            request_id: Some(RequestId::generate()),
            action: ActionRef::from(action),
            actor: Some(Principal::agent("bot")),
            policy_version: "code".into(),
            kind: EventKind::Requested {
                args: action.args.value().clone(),
                context: Box::new(context),
                requirement: Box::new(
                    Requirement::new("two-owners").factor(Factor::group("data-owners", 2)),
                ),
                expires_at: Timestamp::now(),
                editable: vec!["limit".into()],
                edit_of: None,
            },
        }
    }

    #[tokio::test]
    async fn a_request_record_kept_as_text_reads_back_as_appended() {
        // Arguments JSON has to carry exactly: a float, an integer past i64, nesting,
        // escapes and text beyond ASCII.
        let action = Action::builder("export", "p")
            .arg("ratio", &0.1)
            .arg("big", &u64::MAX)
            .arg(
                "nested",
                &serde_json::json!({"z": [1, {"a": null}], "b": "\u{e9}\t"}),
            )
            .build()
            .unwrap();
        let event = requested(&action);
        let allowed = |rule: &str| AuditEvent {
            kind: EventKind::Allowed { rule: rule.into() },
            ..event.clone()
        };
        let audit = MemoryAudit::new();
        audit.append(allowed("before")).await.unwrap();
        assert_eq!(audit.append(event.clone()).await.unwrap().seq, 1);
        audit.append(allowed("after")).await.unwrap();

        // Kept as text until read, the others as appended.
        audit
            .wait_for(|r| {
                let slots: Vec<bool> = r.chunks[0]
                    .slots
                    .iter()
                    .map(|k| matches!(k, Kept::Written(_)))
                    .collect();
                assert_eq!(slots, [false, true, false]);
                true
            })
            .await;
        audit
            .wait_for(|r| {
                let read = r.get(1).unwrap();
                assert_eq!((read.seq, &read.event), (1, &event));
                assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
                true
            })
            .await;
        let linked = audit.records();
        assert_eq!(linked[1].event, event);
        assert_eq!(linked[1].prev, Some(linked[0].leaf_hash()));
        assert_eq!(linked[2].prev, Some(linked[1].leaf_hash()));
    }
}
