//! Issue 14, the backup and configuration findings of the adversarial run: concurrent
//! backups with one name.

use std::path::Path;

use crate::common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin_hardening_token";

/// `config_text` with an admin token.
fn with_admin(dir: &Path) -> String {
    config_text(dir, "", "").replace(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n"),
    )
}

// ------------------------------------------------------------------ 1. backups

/// Eight backups with one name at once: exactly one is written, the others answer
/// `409 exists`; the folder holds that one file and no partial file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_backups_with_one_name_write_one_file_and_answer_409() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(dir.path(), &with_admin(dir.path())).await;
    let events: Vec<String> = (0..200).map(|i| format!("b{i}")).collect();
    assert_eq!(d.post(&batch(events, T0_MS)).await.0, 202);
    for round in 0..3 {
        let name = format!("same-{round}.redb");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, name) = (d.http.clone(), d.url.clone(), name.clone());
                tokio::spawn(async move {
                    let r = http
                        .post(format!("{url}/v1/admin/backup"))
                        .bearer_auth(ADMIN)
                        .json(&json!({ "name": name }))
                        .send()
                        .await
                        .unwrap();
                    let s = r.status().as_u16();
                    (s, r.json::<Value>().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let ok = answers.iter().filter(|(s, _)| *s == 200).count();
        let exists = answers
            .iter()
            .filter(|(s, v)| *s == 409 && v["error"] == "exists")
            .count();
        assert_eq!((ok, exists), (1, 7), "round {round}: {answers:?}");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("partial")),
            "round {round}: a partial file is left: {names:?}"
        );
        assert_eq!(names.iter().filter(|n| **n == name).count(), 1, "{names:?}");
        assert_eq!(names.len(), round + 1, "{names:?}");
    }
    d.shutdown().await;
}
