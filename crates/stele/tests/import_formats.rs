//! `stele import --format auto` on real files of other formats: an AWS CloudTrail
//! log file as AWS delivers it (`{"Records":[...]}`, gzip) and a Linux audit log.
//! The entries are the records byte for byte and the audit events grouped by stamp;
//! queries by producer find them. Skips without `../shared` (see `shared_data`).

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::{import, init, shared_data, stele_at};
use serde_json::Value;

#[test]
fn gzip_cloudtrail_file_and_audit_log() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    init(&dir);
    let jsonl = std::fs::read(data.join("cloudtrail/panther-analysis_AWS.CloudTrail.jsonl")).unwrap();
    let records: Vec<&[u8]> = jsonl.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut file = b"{\"Records\":[".to_vec();
    file.extend(records.join(&b','));
    file.extend_from_slice(b"]}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&file).unwrap();
    let ct = tmp.path().join("123456789012_CloudTrail_us-east-1_20240101T0000Z_abc.json.gz");
    std::fs::write(&ct, gz.finish().unwrap()).unwrap();
    let audit = data.join("auditd/go-libaudit/auparse/audit-rhel7.log");
    // The one `type=UNKNOWN[1329] msg=?` line has no stamp: skipped, not fatal.
    let r = import(&dir, &["--skip-invalid"], &[ct, audit.clone()]);
    assert!(r.stderr.contains("skipped 1 invalid"), "{}", r.all());

    let reader = stele_store::LogReader::open(&dir).unwrap();
    let entries: Vec<_> = (0..reader.tree_size()).map(|i| reader.entry(i).unwrap()).collect();
    let cloudtrail: Vec<&[u8]> =
        entries.iter().filter(|e| e.leaf.payload_format == 6).map(|e| e.payload.as_slice()).collect();
    assert_eq!(cloudtrail, records, "each record is one entry, byte for byte");
    // Audit events: one per distinct stamp, counted here by hand.
    let text = std::fs::read(&audit).unwrap();
    let stamps: BTreeSet<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let at = l.windows(10).position(|w| w == b"msg=audit(")? + 10;
            let end = l[at..].iter().position(|&b| b == b')')?;
            Some(&l[at..at + end])
        })
        .collect();
    let audit_entries: Vec<_> = entries.iter().filter(|e| e.leaf.payload_format == 8).collect();
    assert_eq!(audit_entries.len(), stamps.len());
    for e in &audit_entries {
        for line in e.payload.split(|&b| b == b'\n') {
            assert!(text.windows(line.len()).any(|w| w == line), "every line of an entry is a line of the file");
        }
    }
    // Query by producer: the index holds the normalized fields of both formats.
    let q = stele_at("query", &dir, &["--producer", "auditd"]);
    q.expect_code(0, "query auditd");
    let hits: Vec<Value> = q.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(hits.len(), stamps.len());
    assert!(hits.iter().all(|h| h["format"] == "auditd" && h["fields"]["request_id"].is_string()));
    let q = stele_at("query", &dir, &["--producer", "cloudtrail:*", "--outcome", "failure"]);
    q.expect_code(0, "query cloudtrail failures");
    let failures = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r).unwrap())
        // The producer is "cloudtrail:" + eventSource: records without one have none.
        .filter(|v| v.get("eventSource").is_some_and(Value::is_string))
        .filter(|v| {
            v.get("errorCode").and_then(Value::as_str).is_some_and(|c| !c.is_empty())
                || v.pointer("/responseElements/ConsoleLogin").is_some_and(|c| c == "Failure")
        })
        .count();
    assert!(failures > 0);
    assert_eq!(q.stdout.lines().count(), failures);
    stele_at("verify", &dir, &["--index"]).expect_code(0, "verify --index");
}
