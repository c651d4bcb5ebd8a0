//! Years of retention in seconds: a simulated clock drives ingest, policy changes
//! (lengthening, shortening with and without the permission, compliance weakening
//! attempts), legal holds placed and released, and deletion passes, on a real data
//! directory. A reference model written here, independently of the engine, decides
//! what may and what must be deleted; after every step:
//!
//! - nothing held or unexpired was deleted (checked entry by entry against the policy
//!   the model has in force and the holds the model has active);
//! - every segment the model says has expired, finished its time window and is unheld
//!   was deleted by the pass;
//! - compliance policies are never weakened: the engine refuses exactly the changes the
//!   model calls weakening (including compliance → governance), and a forged early
//!   deletion is refused by the store or reported by the audit;
//! - the newest checkpoint verifies, is consistent with the previous one, and inclusion
//!   proofs of sampled entries (deleted ones included) verify against it; surviving
//!   payloads read back byte for byte and deleted ones say so;
//! - every few steps, and at the end, `verify` and the retention audit pass.
//!
//! Each run prints its seed. `STELE_SIM_SEED=<n>` replays one run;
//! `STELE_SIM_RUNS` (default 2) and `STELE_SIM_YEARS` (default 3) make it longer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stele_formats::FieldPointers;
use stele_index::Index;
use stele_retention::{
    HoldFilters, HoldRecord, Mode, Policy, ReleaseRecord, RetentionError, apply, reconcile, recorded_policies,
};
use stele_store::StoreError;
use stele_store::log::{Clock, FORMAT_STELE_RECORD, Log, LogOptions, NewEntry, init};
use stele_store::retention::{DeletionRecord, segment_summaries};
use stele_store::streams::RETENTION_STREAM;
use stele_store::verify::{VerifyOptions, verify};
use stele_tlog::checkpoint::open_checkpoint;
use stele_tlog::merkle::{verify_consistency, verify_inclusion};

const SEC: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SEC;
const DAY: u64 = 24 * HOUR;
/// 2020-01-01T00:00:00Z.
const START_NS: u64 = 1_577_836_800 * SEC;
const STREAMS: [&str; 4] = ["app", "pci", "hr", "tmp"];

/// A clock that reads the shared simulated time.
fn simulated(ns: Arc<AtomicU64>) -> Clock {
    Clock::from_fn(move || ns.load(Ordering::SeqCst))
}

/// splitmix64: a small deterministic generator, so a seed replays a run exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The model's view of a policy: its own weakening rule, written from the words
/// ("a policy can always be lengthened"; compliance cannot be shortened or relaxed).
#[derive(Clone, Debug, PartialEq)]
struct ModelPolicy {
    min_days: u64,
    max_days: Option<u64>,
    compliance: bool,
}

impl ModelPolicy {
    fn weakens(&self, old: &ModelPolicy) -> bool {
        let max_shorter = match (self.max_days, old.max_days) {
            (Some(new), Some(old)) => new < old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.min_days < old.min_days || max_shorter || (old.compliance && !self.compliance)
    }
    fn policy(&self, stream: &str) -> Policy {
        Policy {
            stream: stream.to_string(),
            min_retention: Duration::from_secs(self.min_days * 86_400),
            max_retention: self.max_days.map(|d| Duration::from_secs(d * 86_400)),
            mode: if self.compliance { Mode::Compliance } else { Mode::Governance },
        }
    }
    /// When a segment whose newest entry was received at `newest` may go.
    fn expiry(&self, newest: u64) -> Option<u64> {
        self.max_days.map(|max| newest + max.max(self.min_days) * DAY)
    }
}

#[derive(Clone, Debug)]
struct ModelHold {
    case: String,
    stream: Option<String>,
    since: Option<u64>,
    until: Option<u64>,
}

impl ModelHold {
    fn holds(&self, stream: &str, oldest: u64, newest: u64) -> bool {
        self.stream.as_deref().is_none_or(|s| s == stream)
            && self.since.is_none_or(|s| newest >= s)
            && self.until.is_none_or(|u| oldest < u)
    }
}

struct Sim {
    rng: Rng,
    clock: Arc<AtomicU64>,
    dir: tempfile::TempDir,
    log: Log,
    index: Index,
    /// Policies recorded in the log, as the model understands them.
    policies: BTreeMap<String, ModelPolicy>,
    holds: Vec<ModelHold>,
    /// User entries: index → (stream, received_ns, payload).
    entries: BTreeMap<u64, (String, u64, Vec<u8>)>,
    /// Entries the model knows are deleted.
    deleted: HashMap<u64, u64>,
    previous_checkpoint: Option<(u64, stele_tlog::hash::Hash)>,
    next_case: u64,
    counts: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        // Thousands of fsyncs: on a RAM-backed folder when there is one (the simulation
        // tests the engine's decisions; the crash tests cover the disk).
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
        init(dir.path(), "sim.example/log").unwrap();
        let clock = Arc::new(AtomicU64::new(START_NS));
        let options = LogOptions { segment_window_ns: DAY, clock: simulated(clock.clone()), ..LogOptions::default() };
        let log = Log::open(dir.path(), options).unwrap();
        let index = Index::open(dir.path(), log.reader(), &FieldPointers::default(), true).unwrap();
        Sim {
            rng: Rng(seed),
            clock,
            dir,
            log,
            index,
            policies: BTreeMap::new(),
            holds: vec![],
            entries: BTreeMap::new(),
            deleted: HashMap::new(),
            previous_checkpoint: None,
            next_case: 1,
            counts: BTreeMap::new(),
        }
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn record(&mut self, payload: &[u8]) -> u64 {
        let done =
            self.log.append(&[NewEntry { stream: RETENTION_STREAM, format: FORMAT_STELE_RECORD, payload }]).unwrap();
        self.index.catch_up().unwrap();
        done.indexes[0]
    }

    fn ingest(&mut self) {
        let n = self.rng.below(12);
        for _ in 0..n {
            let stream = *self.rng.pick(&STREAMS);
            let payload = format!(
                "{{\"actor\":\"user{}\",\"action\":\"read\",\"n\":{},\"stream\":\"{stream}\"}}",
                self.rng.below(20),
                self.entries.len()
            )
            .into_bytes();
            let done = self.log.append(&[NewEntry { stream, format: 1, payload: &payload }]).unwrap();
            let received = self.log.reader().leaf(done.indexes[0]).unwrap().received_ns;
            assert_eq!(received, self.now(), "the received time is the simulated clock's");
            self.entries.insert(done.indexes[0], (stream.to_string(), received, payload));
        }
        self.index.catch_up().unwrap();
    }

    fn configured(&self) -> Vec<Policy> {
        self.policies.iter().map(|(s, p)| p.policy(s)).collect()
    }

    /// Proposes a policy change for one stream; the engine must accept exactly what the
    /// model calls allowed.
    fn change_policy(&mut self) {
        let stream = *self.rng.pick(&["app", "pci", "tmp"]);
        let old = self.policies.get(stream).cloned();
        let min_days = *self.rng.pick(&[0, 7, 30, 90, 365]);
        let max_days = if self.rng.chance(15) { None } else { Some(min_days + *self.rng.pick(&[0, 1, 30, 200, 400])) };
        let compliance = if stream == "pci" { !self.rng.chance(20) } else { self.rng.chance(10) };
        let new = ModelPolicy { min_days, max_days, compliance };
        let allow_shorten = self.rng.chance(50);
        let mut configured = self.configured();
        configured.retain(|p| p.stream != stream);
        configured.push(new.policy(stream));
        let now = self.now();
        let recorded = recorded_policies(&self.index.snapshot(), &self.log.reader()).unwrap();
        let result = reconcile(&configured, &recorded, allow_shorten, now);
        let expect_refusal = match &old {
            Some(old) if new.weakens(old) => old.compliance || !allow_shorten,
            _ => false,
        };
        match result {
            Ok((to_append, _)) => {
                assert!(!expect_refusal, "the engine accepted {new:?} over {old:?} (allow_shorten {allow_shorten})");
                for r in to_append {
                    self.record(&r.encode());
                }
                self.policies.insert(stream.to_string(), new);
                self.count("policy changes accepted");
            }
            Err(RetentionError::ComplianceWeakening { .. }) => {
                assert!(old.as_ref().is_some_and(|o| o.compliance), "compliance refusal without compliance: {old:?}");
                assert!(expect_refusal, "the engine refused {new:?} over {old:?}");
                self.count("compliance weakenings refused");
            }
            Err(RetentionError::GovernanceShortening { .. }) => {
                assert!(expect_refusal && !allow_shorten, "the engine refused {new:?} over {old:?}");
                self.count("governance shortenings refused");
            }
            Err(e) => panic!("unexpected refusal of {new:?} over {old:?}: {e}"),
        }
        // Dropping a compliance policy from the configuration leaves it in force.
        if self.policies.get("pci").is_some_and(|p| p.compliance) {
            let without: Vec<Policy> = self.configured().into_iter().filter(|p| p.stream != "pci").collect();
            let recorded = recorded_policies(&self.index.snapshot(), &self.log.reader()).unwrap();
            let (_, in_force) = reconcile(&without, &recorded, true, now).unwrap();
            let pci = in_force.iter().find(|p| p.stream == "pci").expect("a dropped compliance policy stays in force");
            assert_eq!(pci, &self.policies["pci"].policy("pci"));
        }
    }

    fn place_hold(&mut self) {
        let now = self.now();
        let case = format!("CASE-{}", self.next_case);
        self.next_case += 1;
        let stream = if self.rng.chance(20) { None } else { Some(self.rng.pick(&STREAMS).to_string()) };
        let since = self.rng.chance(60).then(|| now.saturating_sub(self.rng.below(400) * DAY));
        let until = self.rng.chance(50).then(|| since.unwrap_or(START_NS) + (1 + self.rng.below(120)) * DAY);
        let record = HoldRecord {
            kind: "hold".into(),
            case: case.clone(),
            reason: "simulated litigation".into(),
            stream: stream.clone(),
            since_ns: since,
            until_ns: until,
            filters: HoldFilters::default(),
            placed_ns: now,
        };
        self.record(&record.encode());
        self.holds.push(ModelHold { case, stream, since, until });
        self.count("holds placed");
    }

    fn release_hold(&mut self) {
        if self.holds.is_empty() {
            return;
        }
        let i = self.rng.below(self.holds.len() as u64) as usize;
        let hold = self.holds.remove(i);
        let record = ReleaseRecord {
            kind: "hold_release".into(),
            case: hold.case,
            reason: "case closed".into(),
            released_ns: self.now(),
        };
        self.record(&record.encode());
        self.count("holds released");
    }

    fn in_force(&self) -> Vec<Policy> {
        let recorded = recorded_policies(&self.index.snapshot(), &self.log.reader()).unwrap();
        reconcile(&self.configured(), &recorded, false, self.now()).unwrap().1
    }

    /// One deletion pass, then the safety and completeness checks.
    fn pass(&mut self) {
        let now = self.now();
        self.log.sign_checkpoint().unwrap();
        let in_force = self.in_force();
        let report = apply(&mut self.log, &in_force, &self.index.snapshot(), now, false).unwrap();
        self.index.catch_up().unwrap();
        self.log.sign_checkpoint().unwrap();
        // Safety: everything deleted was allowed to go.
        for (due, _) in &report.deleted {
            let s = &due.segment;
            let policy =
                self.policies.get(&s.stream).unwrap_or_else(|| panic!("{} deleted without a policy", s.stream));
            let expiry = policy.expiry(s.newest_received_ns);
            assert!(expiry.is_some_and(|e| e <= now), "segment {} of {} deleted before expiry", s.segno, s.stream);
            for h in &self.holds {
                assert!(
                    !h.holds(&s.stream, s.oldest_received_ns, s.newest_received_ns),
                    "segment {} of {} deleted under hold {}",
                    s.segno,
                    s.stream,
                    h.case
                );
            }
            for &(first, last) in &s.ranges {
                for i in first..=last {
                    let (stream, received, _) = &self.entries[&i];
                    assert_eq!(stream, &s.stream);
                    assert!(received + policy.min_days * DAY <= now, "entry {i} deleted before its minimum");
                    self.deleted.insert(i, now);
                }
            }
            self.count("segments deleted");
        }
        // Completeness: every expired, finished, unheld segment is gone.
        for s in segment_summaries(&self.log.reader()).unwrap() {
            if s.stream.starts_with("_stele/") || s.deleted.is_some() {
                continue;
            }
            let Some(policy) = self.policies.get(&s.stream).cloned() else { continue };
            let window_end = s.oldest_received_ns - s.oldest_received_ns % DAY + DAY;
            let expired = policy.expiry(s.newest_received_ns).is_some_and(|e| e <= now);
            let held = self.holds.iter().any(|h| h.holds(&s.stream, s.oldest_received_ns, s.newest_received_ns));
            if expired && held {
                self.count("expired segments kept by holds");
            }
            assert!(
                !(expired && !held && window_end <= now),
                "segment {} of {} expired at {:?} and is unheld but was not deleted at {now}",
                s.segno,
                s.stream,
                policy.expiry(s.newest_received_ns)
            );
        }
    }

    /// Proofs against the newest checkpoint, consistency with the previous one, reads.
    fn check_proofs(&mut self) {
        let reader = self.log.reader();
        let Some(cp) = reader.newest_checkpoint() else { return };
        let verified = open_checkpoint(cp.note.as_bytes(), &reader.verifier()).unwrap();
        let (size, root) = (verified.checkpoint.tree_size, verified.checkpoint.root_hash);
        if let Some((old_size, old_root)) = self.previous_checkpoint
            && old_size > 0
        {
            assert!(size >= old_size, "checkpoint went back from {old_size} to {size}");
            let proof = reader.consistency_proof(old_size, size).unwrap();
            verify_consistency(old_size, size, &old_root, &root, &proof).unwrap();
        }
        self.previous_checkpoint = Some((size, root));
        let indexes: Vec<u64> = self.entries.keys().copied().collect();
        for _ in 0..8.min(indexes.len()) {
            let i = *self.rng.pick(&indexes);
            if i >= size {
                continue;
            }
            let proof = reader.inclusion_proof(i, size).unwrap();
            verify_inclusion(i, size, &reader.leaf_hash(i).unwrap(), &proof, &root).unwrap();
            match reader.entry(i) {
                Ok(e) => {
                    assert!(!self.deleted.contains_key(&i), "entry {i} was deleted but still reads");
                    assert_eq!(e.payload, self.entries[&i].2, "entry {i} changed");
                }
                Err(StoreError::Deleted { .. }) => {
                    assert!(self.deleted.contains_key(&i), "entry {i} reads as deleted but no pass deleted it");
                }
                Err(e) => panic!("entry {i}: {e}"),
            }
        }
    }

    fn full_verify(&mut self) {
        let reader = self.log.reader();
        let report = verify(&reader, &VerifyOptions::default()).unwrap();
        assert!(report.ok(), "verify: {:?}", report.problems);
        let deleted_by_report: u64 = report.deletions.iter().map(|d| d.record.entries).sum();
        assert_eq!(deleted_by_report, self.deleted.len() as u64, "verify's deletions differ from the model's");
        let (_, problems) = stele_retention::audit(&reader).unwrap();
        assert!(problems.is_empty(), "retention audit: {problems:?}");
    }

    /// Tries to delete a compliance segment early: honestly (the store refuses) and with
    /// a forged record claiming a weaker policy (the audit reports it).
    fn attack(&mut self) {
        let now = self.now();
        let Some(policy) = self.policies.get("pci").filter(|p| p.compliance && p.min_days > 0).cloned() else {
            return;
        };
        let target = segment_summaries(&self.log.reader()).unwrap().into_iter().find(|s| {
            s.stream == "pci" && s.deleted.is_none() && s.newest_received_ns + policy.min_days * DAY > now && {
                let window_end = s.oldest_received_ns - s.oldest_received_ns % DAY + DAY;
                window_end <= now
            }
        });
        let Some(s) = target else { return };
        self.log.sign_checkpoint().unwrap();
        let honest = DeletionRecord {
            kind: "deletion".into(),
            segment: s.segno,
            stream: s.stream.clone(),
            entries: s.entries,
            ranges: s.ranges.clone(),
            oldest_received_ns: s.oldest_received_ns,
            newest_received_ns: s.newest_received_ns,
            policy: "pci".into(),
            min_retention_seconds: policy.min_days * 86_400,
            max_retention_seconds: policy.max_days.unwrap_or(policy.min_days) * 86_400,
            mode: "compliance".into(),
            deleted_ns: now,
        };
        let refused = self.log.delete_segment(s.segno, &honest);
        assert!(
            matches!(refused, Err(StoreError::SegmentNotDeletable { .. })),
            "an early deletion of a compliance segment was not refused: {refused:?}"
        );
        // compliance → governance → delete, as a forged record: the store has no policy
        // of its own to check, so the audit must catch it from the log alone.
        let forged =
            DeletionRecord { min_retention_seconds: 0, max_retention_seconds: 0, mode: "governance".into(), ..honest };
        self.log.delete_segment(s.segno, &forged).unwrap();
        let (_, problems) = stele_retention::audit(&self.log.reader()).unwrap();
        assert!(
            problems.iter().any(|p| p.what.contains("recorded policy then was")),
            "a forged early deletion of compliance segment {} went unreported: {problems:?}",
            s.segno
        );
        self.count("forged deletions reported");
    }
}

fn run(seed: u64, years: u64) {
    eprintln!("simulated retention: seed {seed} (replay with STELE_SIM_SEED={seed}), {years} years");
    let mut sim = Sim::new(seed);
    let end = START_NS + years * 365 * DAY;
    let mut step = 0u64;
    while sim.now() < end {
        step += 1;
        let advance = HOUR + sim.rng.below(5 * DAY);
        sim.clock.fetch_add(advance, Ordering::SeqCst);
        sim.ingest();
        if sim.rng.chance(6) {
            sim.change_policy();
        }
        if sim.rng.chance(3) {
            sim.place_hold();
        }
        if sim.rng.chance(4) {
            sim.release_hold();
        }
        if sim.rng.chance(60) {
            sim.pass();
        }
        sim.check_proofs();
        if step.is_multiple_of(25) {
            sim.full_verify();
        }
    }
    sim.pass();
    sim.check_proofs();
    sim.full_verify();
    // A restart reads the same policies and holds back from the log.
    let in_force = sim.in_force();
    let (configured, now) = (sim.configured(), sim.now());
    drop(sim.index);
    drop(sim.log);
    let reopened = Log::open(
        sim.dir.path(),
        LogOptions { segment_window_ns: DAY, clock: simulated(sim.clock.clone()), ..LogOptions::default() },
    )
    .unwrap();
    let index = Index::open(sim.dir.path(), reopened.reader(), &FieldPointers::default(), true).unwrap();
    let recorded = recorded_policies(&index.snapshot(), &reopened.reader()).unwrap();
    assert_eq!(reconcile(&configured, &recorded, false, now).unwrap().1, in_force);
    sim.log = reopened;
    sim.index = index;
    sim.attack();
    eprintln!("  {step} steps, {} entries, {} deleted; {:?}", sim.entries.len(), sim.deleted.len(), sim.counts);
    assert!(sim.counts.get("segments deleted").copied().unwrap_or(0) > 0, "a run that deletes nothing tests nothing");
}

#[test]
fn years_of_retention_keep_what_they_must_and_delete_what_they_may() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let years = env("STELE_SIM_YEARS").unwrap_or(3);
    if let Some(seed) = env("STELE_SIM_SEED") {
        return run(seed, years);
    }
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for r in 0..env("STELE_SIM_RUNS").unwrap_or(2) {
        run(base.wrapping_add(r.wrapping_mul(0x9e37_79b9_7f4a_7c15)), years);
    }
}
