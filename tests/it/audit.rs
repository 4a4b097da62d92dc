//! The audit chain (docs/guardrails.md): the vectors in `tests/data/`, an independent
//! re-computation from the export, tampering with a real redb file, paging, validation,
//! and the HTTP routes.

use crate::common::{self, independent_canonical, independent_hash};

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde_json::{Map, Value, json};
use sluice::audit::{
    self, AUDIT, AuditRecord, NewAuditEvent, Verify, ZERO_HASH, decode_record, encode_record,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/audit-chain.jsonl");

fn vectors() -> Vec<AuditRecord> {
    let text = std::fs::read_to_string(VECTORS).expect("tests/data/audit-chain.jsonl readable");
    let v: Vec<AuditRecord> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("vector parses"))
        .collect();
    assert_eq!(v.len(), 3, "the vectors hold three events");
    v
}

fn ms_of(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn db_at(path: &Path) -> Database {
    Database::create(path).unwrap()
}

/// Appends in one write transaction each, committing, like the writer thread would.
fn append_all(db: &Database, evs: &[NewAuditEvent]) -> Vec<AuditRecord> {
    evs.iter()
        .map(|ev| {
            let txn = db.begin_write().unwrap();
            let rec = audit::append(&txn, ev).unwrap();
            txn.commit().unwrap();
            rec
        })
        .collect()
}

fn verify(db: &Database) -> Verify {
    audit::verify(&db.begin_read().unwrap()).unwrap()
}

fn pause_event(dest: &str, at_ms: i64, note: Value) -> NewAuditEvent {
    NewAuditEvent::new(
        "destination_pause",
        dest,
        "system_worker",
        obj(json!({
            "destination_id": dest, "merchant_id": "northfield", "platform": "tiktok",
            "reason": "rate_threshold_exceeded", "error_rate": "0.312", "note": note,
        })),
        at_ms,
    )
    .unwrap()
}

/// Five varied events: a non-ASCII note, controls and quotes, an integer, a boolean.
fn five() -> Vec<NewAuditEvent> {
    let t = 1_776_952_918_123;
    vec![
        pause_event("tiktok_abc123", t, Value::Null),
        NewAuditEvent::new(
            "alert_sent",
            "tiktok_abc123",
            "system_worker",
            obj(json!({"channel": "slack", "attempts": 3, "final": true})),
            t + 1,
        )
        .unwrap(),
        pause_event("meta_x", t + 2, json!("naïve café — \"quoted\" \\ tab\there \u{1f} 😀")),
        NewAuditEvent::new(
            "destination_resume",
            "meta_x",
            "api_user",
            obj(json!({"reason": "ops_intervention", "error_rate": null, "big": -9_007_199_254_740_992i64})),
            t + 3_600_000,
        )
        .unwrap(),
        NewAuditEvent::new(
            "config_reloaded",
            "config",
            "cli",
            obj(json!({"config_sha256": "ab".repeat(32)})),
            t + 7_200_000,
        )
        .unwrap(),
    ]
}

// ---------------------------------------------------------------------------------------
// Vectors

#[test]
fn vectors_hashes_are_reproduced_from_their_six_fields() {
    let mut prev = ZERO_HASH.to_string();
    for v in vectors() {
        assert_eq!(v.prev_hash, prev, "{} links to the one before", v.event_id);
        assert_eq!(v.expected_hash().unwrap(), v.hash, "{}", v.event_id);
        prev = v.hash.clone();
    }
}

#[test]
fn vectors_hashes_are_reproduced_through_append() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("a.redb"));
    let vs = vectors();
    for v in &vs {
        let ev = NewAuditEvent::new(
            v.event_type.clone(),
            v.resource_id.clone(),
            v.actor.clone(),
            obj(v.details.clone()),
            ms_of(&v.created_at),
        )
        .unwrap();
        let txn = db.begin_write().unwrap();
        let rec = audit::append_with_id(&txn, &v.event_id, &ev).unwrap();
        txn.commit().unwrap();
        assert_eq!(&rec, v, "the appended record equals the vector");
    }
    let r = db.begin_read().unwrap();
    assert_eq!(
        audit::head(&r).unwrap(),
        (3, vs[2].hash.clone()),
        "head = length and last hash"
    );
    assert_eq!(
        audit::verify(&r).unwrap(),
        Verify::Ok {
            length: 3,
            head: vs[2].hash.clone()
        }
    );
    // The export is the vectors, line for line.
    let mut out = Vec::new();
    assert_eq!(audit::export(&r, &mut out).unwrap(), 3);
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<Value> = std::fs::read_to_string(VECTORS)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, want);
}

// ---------------------------------------------------------------------------------------
// Independent re-computation

#[test]
fn export_recomputes_independently() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("a.redb"));
    let recs = append_all(&db, &five());
    let mut out = Vec::new();
    audit::export(&db.begin_read().unwrap(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("naïve café — "), "non-ASCII kept as UTF-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let mut prev = ZERO_HASH.to_string();
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(std::string::String::as_str)
            .collect();
        let mut sorted_fields = fields.clone();
        sorted_fields.sort_unstable();
        assert_eq!(
            sorted_fields,
            [
                "actor",
                "created_at",
                "details",
                "event_id",
                "event_type",
                "hash",
                "prev_hash",
                "resource_id"
            ],
            "every field, nothing else"
        );
        assert_eq!(line["prev_hash"], prev.as_str(), "line {i} links");
        let material = independent_canonical(&json!({
            "actor": line["actor"], "created_at": line["created_at"], "details": line["details"],
            "event_id": line["event_id"], "event_type": line["event_type"],
            "resource_id": line["resource_id"],
        }));
        let h = independent_hash(&prev, &material);
        assert_eq!(line["hash"], h.as_str(), "line {i} hash");
        assert_eq!(recs[i].hash, h);
        // ae_ + 12-digit sequence + 8 hex; oldest first.
        let id = line["event_id"].as_str().unwrap();
        assert_eq!(id.len(), 3 + 12 + 8, "{id}");
        assert!(id.starts_with(&format!("ae_{:012}", i + 1)), "{id}");
        assert!(id[15..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        prev = h;
    }
    assert_eq!(lines[0]["created_at"], "2026-04-23T14:01:58.123Z");
    assert_eq!(lines[4]["actor"], "cli");
    assert_eq!(lines[3]["details"]["big"], -9_007_199_254_740_992i64);
    assert_eq!(
        verify(&db),
        Verify::Ok {
            length: 5,
            head: prev
        }
    );
}

// ---------------------------------------------------------------------------------------
// Tampering with a real file

/// Five records committed to a file, closed; reopened for the tampering.
fn five_on_disk(path: &Path) -> Vec<AuditRecord> {
    let db = db_at(path);
    let recs = append_all(&db, &five());
    drop(db);
    recs
}

fn rewrite(path: &Path, f: impl FnOnce(&mut redb::Table<u64, &[u8]>)) -> Database {
    let db = db_at(path);
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(AUDIT).unwrap();
        f(&mut t);
    }
    txn.commit().unwrap();
    drop(db);
    db_at(path)
}

fn read_row(t: &redb::Table<u64, &[u8]>, seq: u64) -> AuditRecord {
    decode_record(t.get(seq).unwrap().unwrap().value()).unwrap()
}

#[test]
fn intact_file_verifies_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let recs = five_on_disk(&path);
    let db = db_at(&path);
    assert_eq!(
        verify(&db),
        Verify::Ok {
            length: 5,
            head: recs[4].hash.clone()
        }
    );
}

#[test]
fn edited_details_break_the_chain_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let recs = five_on_disk(&path);
    let db = rewrite(&path, |t| {
        let mut r = read_row(t, 3);
        r.details["error_rate"] = json!("0.100");
        t.insert(3, encode_record(&r).unwrap().as_slice()).unwrap();
    });
    let v = verify(&db);
    assert_eq!(
        v,
        Verify::Broken {
            length: 5,
            broken_at: recs[2].event_id.clone(),
            reason: "hash mismatch".into()
        }
    );
    assert_eq!(
        v.to_json(),
        json!({"ok": false, "length": 5, "broken_at": recs[2].event_id, "reason": "hash mismatch"})
    );
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let recs = five_on_disk(&path);
    let db = rewrite(&path, |t| {
        let mut r = read_row(t, 2);
        r.actor = "api_user".into();
        r.hash = r.expected_hash().unwrap();
        t.insert(2, encode_record(&r).unwrap().as_slice()).unwrap();
    });
    match verify(&db) {
        Verify::Broken {
            broken_at, reason, ..
        } => {
            assert_eq!(broken_at, recs[2].event_id);
            assert_eq!(reason, "prev_hash does not match the previous event");
        }
        ok => panic!("tampering not detected: {ok:?}"),
    }
}

#[test]
fn a_deleted_middle_record_is_a_gap_reported_at_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let recs = five_on_disk(&path);
    let db = rewrite(&path, |t| {
        t.remove(3).unwrap();
    });
    assert_eq!(
        verify(&db),
        Verify::Broken {
            length: 4,
            broken_at: recs[3].event_id.clone(),
            reason: format!("sequence gap after {}", recs[1].event_id),
        }
    );
    // Renumbering to hide the gap still breaks the link.
    let db = {
        drop(db);
        rewrite(&path, |t| {
            for seq in [4u64, 5] {
                let row = t.remove(seq).unwrap().unwrap().value().to_vec();
                t.insert(seq - 1, row.as_slice()).unwrap();
            }
        })
    };
    assert_eq!(
        verify(&db),
        Verify::Broken {
            length: 4,
            broken_at: recs[3].event_id.clone(),
            reason: "prev_hash does not match the previous event".into(),
        }
    );
}

#[test]
fn a_deleted_first_record_is_a_gap_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let recs = five_on_disk(&path);
    let db = rewrite(&path, |t| {
        t.remove(1).unwrap();
    });
    assert_eq!(
        verify(&db),
        Verify::Broken {
            length: 4,
            broken_at: recs[1].event_id.clone(),
            reason: "sequence gap at the start of the chain".into(),
        }
    );
}

#[test]
fn a_truncated_tail_verifies_but_the_head_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let recs = five_on_disk(&path);
    let logged = audit::head(&db_at(&path).begin_read().unwrap()).unwrap();
    assert_eq!(logged, (5, recs[4].hash.clone()));
    let db = rewrite(&path, |t| {
        t.remove(5).unwrap();
        t.remove(4).unwrap();
    });
    // Not detectable by verify: that is what the logged head is for.
    assert_eq!(
        verify(&db),
        Verify::Ok {
            length: 3,
            head: recs[2].hash.clone()
        }
    );
    let now = audit::head(&db.begin_read().unwrap()).unwrap();
    assert!(now.0 < logged.0, "the length drops: {now:?} vs {logged:?}");
    assert_ne!(now.1, logged.1);
    // Appending again continues from the truncated head.
    let r = append_all(&db, &five()[..1]);
    assert_eq!(r[0].prev_hash, recs[2].hash);
    assert!(r[0].event_id.starts_with("ae_000000000004"));
}

#[test]
fn an_unreadable_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let recs = five_on_disk(&path);
    let db = rewrite(&path, |t| {
        let mut bytes = t.get(2).unwrap().unwrap().value().to_vec();
        bytes[0] = 99; // unknown version
        t.insert(2, bytes.as_slice()).unwrap();
    });
    assert_eq!(
        verify(&db),
        Verify::Broken {
            length: 5,
            broken_at: recs[1].event_id.clone(),
            reason: "unreadable record".into(),
        }
    );
    let db = {
        drop(db);
        rewrite(&path, |t| {
            t.insert(2, b"\x01not json".as_slice()).unwrap();
        })
    };
    assert_eq!(
        verify(&db),
        Verify::Broken {
            length: 5,
            broken_at: "seq:2".into(),
            reason: "unreadable record".into(),
        }
    );
    // Export and list refuse rather than skip it silently; a page above it still lists.
    let r = db.begin_read().unwrap();
    assert!(audit::export(&r, &mut Vec::new()).is_err());
    assert!(audit::list(&r, None, None, 10, None).is_err());
    assert_eq!(audit::list(&r, None, None, 2, None).unwrap().0.len(), 2);
}

#[test]
fn an_empty_or_absent_chain_is_ok_with_a_zero_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("a.redb"));
    let want = Verify::Ok {
        length: 0,
        head: ZERO_HASH.into(),
    };
    assert_eq!(verify(&db), want, "no table yet");
    assert_eq!(
        audit::head(&db.begin_read().unwrap()).unwrap(),
        (0, ZERO_HASH.to_string())
    );
    let txn = db.begin_write().unwrap();
    txn.open_table(AUDIT).unwrap();
    txn.commit().unwrap();
    assert_eq!(verify(&db), want, "empty table");
    assert_eq!(
        want.to_json(),
        json!({"ok": true, "length": 0, "head": ZERO_HASH})
    );
}

#[test]
fn an_append_rolls_back_with_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("a.redb"));
    let txn = db.begin_write().unwrap();
    audit::append(&txn, &five()[0]).unwrap();
    txn.abort().unwrap();
    assert_eq!(verify(&db).to_json()["length"], 0);
    // Two appends in one transaction chain to each other.
    let txn = db.begin_write().unwrap();
    let a = audit::append(&txn, &five()[0]).unwrap();
    let b = audit::append(&txn, &five()[1]).unwrap();
    txn.commit().unwrap();
    assert_eq!(b.prev_hash, a.hash);
    assert_eq!(a.prev_hash, ZERO_HASH);
    assert!(verify(&db).is_ok());
}

// ---------------------------------------------------------------------------------------
// Listing

#[test]
fn list_is_newest_first_with_filters_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("a.redb"));
    let recs = append_all(&db, &five());
    let r = db.begin_read().unwrap();
    let ids = |v: &[AuditRecord]| v.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>();

    let (all, next) = audit::list(&r, None, None, 100, None).unwrap();
    assert_eq!(
        ids(&all),
        ids(&recs.iter().rev().cloned().collect::<Vec<_>>())
    );
    assert_eq!(next, None);

    let (p1, c1) = audit::list(&r, None, None, 2, None).unwrap();
    assert_eq!(
        ids(&p1),
        [recs[4].event_id.clone(), recs[3].event_id.clone()]
    );
    let c1 = c1.expect("more pages");
    let (p2, c2) = audit::list(&r, None, None, 2, Some(c1.parse().unwrap())).unwrap();
    assert_eq!(
        ids(&p2),
        [recs[2].event_id.clone(), recs[1].event_id.clone()]
    );
    let (p3, c3) = audit::list(&r, None, None, 2, Some(c2.unwrap().parse().unwrap())).unwrap();
    assert_eq!(ids(&p3), [recs[0].event_id.clone()]);
    assert_eq!(c3, None);

    let (pauses, next) = audit::list(&r, Some("destination_pause"), None, 100, None).unwrap();
    assert_eq!(
        ids(&pauses),
        [recs[2].event_id.clone(), recs[0].event_id.clone()]
    );
    assert_eq!(next, None);
    let (first, next) = audit::list(&r, Some("destination_pause"), None, 1, None).unwrap();
    assert_eq!(ids(&first), [recs[2].event_id.clone()]);
    assert!(next.is_some(), "an older pause exists");

    let (meta, _) = audit::list(&r, None, Some("meta_x"), 100, None).unwrap();
    assert_eq!(
        ids(&meta),
        [recs[3].event_id.clone(), recs[2].event_id.clone()]
    );
    let (both, _) = audit::list(&r, Some("destination_resume"), Some("meta_x"), 100, None).unwrap();
    assert_eq!(ids(&both), [recs[3].event_id.clone()]);
    let (none, next) = audit::list(&r, Some("dlq_replay"), None, 100, None).unwrap();
    assert!(none.is_empty() && next.is_none());
    assert_eq!(
        all[0].to_json()["details"],
        json!({"config_sha256": "ab".repeat(32)})
    );
}

// ---------------------------------------------------------------------------------------
// Validation

#[test]
fn floats_out_of_range_integers_and_nesting_are_refused() {
    let new = |details: Value| {
        NewAuditEvent::new(
            "destination_pause",
            "d",
            "system_worker",
            obj(details),
            1_776_952_918_123,
        )
    };
    let e = new(json!({"error_rate": 0.312})).unwrap_err();
    assert!(e.0.contains("details.error_rate"), "{e}");
    assert!(e.0.contains("string"), "{e}");
    assert!(new(json!({"n": 1.0})).is_err());
    assert!(new(json!({"n": 9_007_199_254_740_993u64})).is_err());
    assert!(new(json!({"n": -9_007_199_254_740_993i64})).is_err());
    assert!(new(json!({"n": 9_007_199_254_740_992u64})).is_ok());
    assert!(new(json!({"n": [1]})).is_err());
    assert!(new(json!({"n": {"a": 1}})).is_err());
    assert!(new(json!({"s": "0.312", "b": false, "z": null, "i": -3})).is_ok());

    let ok = obj(json!({}));
    assert!(NewAuditEvent::new("destination_pause", "d", "root", ok.clone(), 0).is_err());
    assert!(NewAuditEvent::new("destination_paused", "d", "cli", ok.clone(), 0).is_err());
    assert!(NewAuditEvent::new("destination_pause", "d", "cli", ok.clone(), -1).is_err());

    // Every way to build an event is checked: `new` refuses the invalid ones above, and
    // `record` (the daemon's own events) takes only typed values, so an invalid event
    // cannot reach `append`. The typed one clamps its time and keeps its details exact.
    let rec = NewAuditEvent::record(
        audit::AuditType::DestinationPause,
        "d",
        audit::Actor::Api,
        audit::Details::new()
            .str("reason", "x")
            .opt_str("note", None::<String>)
            .int("n", i64::MAX),
        -5,
    );
    assert_eq!(rec.event_type(), "destination_pause");
    assert_eq!(rec.actor(), "api_user");
    assert_eq!(rec.created_at_ms(), 0);
    assert_eq!(
        Value::Object(rec.details().clone()),
        json!({"reason": "x", "note": null, "n": 9_007_199_254_740_992u64})
    );
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("a.redb"));
    let txn = db.begin_write().unwrap();
    audit::append(&txn, &rec).unwrap();
    txn.commit().unwrap();
    assert_eq!(verify(&db).to_json()["length"], 1);
}

#[test]
fn canonical_json_is_rfc8785_for_the_allowed_values() {
    let v = json!({
        "z": {"b": null, "a": [1, -2, true]},
        "a": "naïve café — \"q\" \\ \n\t\u{1}\u{1f}\u{7f}",
        "A": 9_007_199_254_740_992u64,
    });
    assert_eq!(
        audit::canonical_json(&v).unwrap(),
        "{\"A\":9007199254740992,\"a\":\"naïve café — \\\"q\\\" \\\\ \\n\\t\\u0001\\u001f\u{7f}\",\"z\":{\"a\":[1,-2,true],\"b\":null}}"
    );
    assert!(audit::canonical_json(&json!({"x": [0.5]})).is_err());
}

// ---------------------------------------------------------------------------------------
// HTTP routes

const ADMIN: &str = "adm_test_token";

fn config_with_admin(dir: &Path) -> String {
    common::config_text(dir, "", "").replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\""),
        1,
    )
}

async fn get(
    td: &common::TestDaemon,
    path: &str,
    token: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut req = td.http.get(format!("{}{path}", td.url));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn routes_answer_for_an_empty_chain_and_need_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let td = common::TestDaemon::start(dir.path(), &config_with_admin(dir.path())).await;

    let (s, ct, body) = get(&td, "/v1/audit/verify", Some(ADMIN)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ok": true, "length": 0, "head": ZERO_HASH})
    );

    let (s, _, body) = get(&td, "/v1/audit?type=destination_pause&limit=5", Some(ADMIN)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"events": [], "next_cursor": null})
    );

    let (s, ct, body) = get(&td, "/v1/audit/export", Some(ADMIN)).await;
    assert_eq!(s, 200);
    assert_eq!(ct.as_deref(), Some("application/x-ndjson"));
    assert_eq!(body, "");

    for bad in [
        "/v1/audit?limit=0",
        "/v1/audit?limit=1001",
        "/v1/audit?cursor=abc",
    ] {
        let (s, _, body) = get(&td, bad, Some(ADMIN)).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "invalid_request"
        );
    }

    for path in ["/v1/audit", "/v1/audit/export", "/v1/audit/verify"] {
        for token in [None, Some("wrong")] {
            let (s, _, body) = get(&td, path, token).await;
            assert_eq!(s, 401, "{path} {token:?}: {body}");
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap()["error"],
                "unauthorized"
            );
        }
    }
    td.shutdown().await;
}

#[tokio::test]
async fn routes_are_disabled_without_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let td = common::TestDaemon::start(dir.path(), &common::config_text(dir.path(), "", "")).await;
    for path in ["/v1/audit", "/v1/audit/export", "/v1/audit/verify"] {
        let (s, _, body) = get(&td, path, Some("anything")).await;
        assert_eq!(s, 403, "{path}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "admin_disabled"
        );
    }
    td.shutdown().await;
}

#[test]
fn the_daemon_store_file_holds_no_audit_table_until_an_append() {
    // The writer does not create the table; readers treat its absence as an empty chain.
    let dir = tempfile::tempdir().unwrap();
    let db = db_at(&dir.path().join("a.redb"));
    let r = db.begin_read().unwrap();
    assert!(r.open_table(AUDIT).is_err());
    assert_eq!(audit::list(&r, None, None, 10, None).unwrap().0.len(), 0);
    let mut out = Vec::new();
    assert_eq!(audit::export(&r, &mut out).unwrap(), 0);
    assert!(out.is_empty());
}
