//! Integration tests of the configuration loader through its public API.

use std::path::Path;
use std::time::Duration;

use sluice::config::{
    Config, ConfigError, Plan, Platform, Rate, RateScope, RateUnit, load, parse, summary,
};

const WORKSPACES: &str = r#"
[[workspaces]]
id = "ent"
plan = "enterprise"
ingest_keys = ["k_ent"]

[[workspaces]]
id = "gro"
plan = "growth"
ingest_keys = ["k_gro"]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "META_TOKEN" => Some("meta-token-from-env".to_string()),
        "ADMIN" => Some("admin-from-env".to_string()),
        "EMPTY" => Some(String::new()),
        "KEYS" => Some("a1, b2,,c3".to_string()),
        _ => None,
    }
}

fn try_cfg(text: &str) -> Result<Config, ConfigError> {
    parse(text, None, &env)
}

fn ok(text: &str) -> Config {
    match try_cfg(text) {
        Ok(c) => c,
        Err(e) => panic!("expected valid config, got: {e}\n---\n{text}"),
    }
}

fn err(text: &str) -> ConfigError {
    match try_cfg(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or_else(|| panic!("`{needle}` not in text"), |i| i + 1)
}

fn with_ws(rest: &str) -> String {
    format!("{WORKSPACES}\n{rest}")
}

/// A meta destination of workspace `ws` with an extra line.
fn meta(ws: &str, extra: &str) -> String {
    with_ws(&format!(
        r#"
[[destinations]]
id = "m"
workspace = "{ws}"
platform = "meta"
params = {{ pixel_id = "111" }}
credentials = {{ access_token = "tok" }}
{extra}
"#
    ))
}

fn assert_at(e: &ConfigError, path: &str, text: &str, needle: &str) {
    assert_eq!(e.key_path.as_deref(), Some(path), "{e}");
    assert_eq!(e.line, Some(line_of(text, needle)), "{e}");
}

// ------------------------------------------------------------------ defaults

#[test]
fn a_file_of_one_default_gets_every_default() {
    // An empty file is refused (tests/it/config_hardening.rs); one key set to its
    // default leaves every other at its default.
    let text = "[ingest]\ndefault_country_code = \"1\"\n";
    let c = ok(text);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8470");
    assert!(c.server.admin_token.is_none());
    assert_eq!(c.server.max_body_bytes, 1_048_576);
    assert_eq!(c.server.max_events_per_request, 1000);
    assert_eq!(c.server.log_level, "info");
    assert_eq!(c.storage.path, Path::new("/var/lib/sluice/sluice.redb"));
    assert_eq!(c.storage.backup_dir, Path::new("/var/lib/sluice/backups"));
    assert_eq!(c.storage.dedup_window, Duration::from_secs(48 * 3600));
    assert_eq!(c.storage.max_backlog_age, Duration::from_secs(30 * 86400));
    assert_eq!(c.storage.dlq_retention, Duration::from_secs(30 * 86400));
    assert_eq!(c.storage.request_log, 1000);
    assert!(c.storage.pii_key.is_none());
    assert_eq!(c.ingest.default_country_code, "1");
    assert_eq!(c.platforms.len(), Platform::ALL.len());
    assert!(c.alerts.slack.is_none() && c.alerts.pagerduty.is_none());
    assert!(c.workspaces.is_empty() && c.destinations.is_empty());
    assert_eq!(
        c.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))
    );
}

#[test]
fn platform_defaults_follow_platforms_md() {
    let c = ok(WORKSPACES);
    let p = &c.platforms;
    let m = &p[&Platform::Meta];
    assert_eq!(m.max_batch, 1000);
    assert_eq!(m.linger, Duration::from_secs(1));
    assert_eq!(m.concurrency, 4);
    assert_eq!(m.timeout, Duration::from_secs(10));
    assert_eq!(m.age_limit, Some(Duration::from_secs(7 * 86400)));
    assert_eq!(
        m.rates,
        vec![Rate {
            limit: 1000,
            per: Duration::from_secs(60),
            unit: RateUnit::Events,
            scope: RateScope::Param("pixel_id".into())
        }]
    );
    assert_eq!(m.retry.max_retries, 8);
    assert_eq!(m.retry.base, Duration::from_secs(1));
    assert_eq!(m.retry.max, Duration::from_secs(128));
    assert_eq!(m.retry.jitter, 0.0);
    let a = &m.auto_pause;
    assert_eq!(a.threshold, 0.25);
    assert_eq!(a.interval, Duration::from_secs(300));
    assert_eq!(a.window, Duration::from_secs(300));
    assert_eq!((a.sample, a.min_samples, a.probe_requests), (1000, 10, 5));
    assert_eq!(a.auto_clear, Duration::from_secs(4 * 3600));
    assert_eq!(a.reprobe, Duration::from_secs(1800));

    let k = &p[&Platform::Klaviyo];
    assert_eq!(k.max_batch, 1);
    assert_eq!(k.rates.len(), 2);
    assert!(
        k.rates
            .iter()
            .all(|r| r.scope == RateScope::Token && r.unit == RateUnit::Requests)
    );
    assert_eq!(k.age_limit, Some(Duration::from_secs(365 * 86400)));
    let w = &p[&Platform::Webhook];
    assert!(w.rates.is_empty());
    assert_eq!((w.max_batch, w.age_limit), (1, None));
    assert_eq!(p[&Platform::GoogleAds].max_batch, 2000);
    assert_eq!(p[&Platform::GoogleAds].rates[0].per, Duration::from_secs(1));
    assert_eq!(
        p[&Platform::Linkedin].rates[1].per,
        Duration::from_secs(86400)
    );
    assert_eq!(p[&Platform::Linkedin].max_batch, 5000);
    assert_eq!(p[&Platform::X].rates[0].per, Duration::from_secs(900));
    assert_eq!(p[&Platform::X].max_batch, 500);
    assert_eq!(
        p[&Platform::Pinterest].rates[0].scope,
        RateScope::Param("ad_account_id".into())
    );
    assert_eq!(
        p[&Platform::Reddit].age_limit,
        Some(Duration::from_secs(168 * 3600))
    );
    assert_eq!(p[&Platform::Snapchat].max_batch, 2000);
    assert!(p[&Platform::MicrosoftAds].rates.is_empty());
    assert_eq!(p[&Platform::Taboola].max_batch, 1000);
    assert_eq!(p[&Platform::Outbrain].max_batch, 1);
    assert_eq!(p[&Platform::Criteo].max_batch, 1);
    assert!(p[&Platform::Criteo].rates.is_empty());
}

#[test]
fn plan_defaults_and_limit_overrides() {
    let text = r#"
[[workspaces]]
id = "s"
plan = "starter"
ingest_keys = ["k1"]
[[workspaces]]
id = "g"
plan = "growth"
ingest_keys = ["k2"]
[[workspaces]]
id = "c"
plan = "scale"
ingest_keys = ["k3"]
limits = { burst = 9000 }
[[workspaces]]
id = "e"
plan = "enterprise"
ingest_keys = ["k4"]
"#;
    let c = ok(text);
    let l: Vec<(u64, u64, u64)> = c
        .workspaces
        .iter()
        .map(|w| (w.limits.rate, w.limits.burst, w.limits.monthly_cap))
        .collect();
    assert_eq!(
        l,
        vec![
            (25, 250, 2_000_000),
            (100, 1000, 10_000_000),
            (500, 9000, 100_000_000),
            (2000, 20_000, 0)
        ]
    );
    assert_eq!(c.workspaces[3].plan, Plan::Enterprise);
    let e = err(&text.replace("burst = 9000", "burst = -1"));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[2].limits.burst"));
}

// ------------------------------------------------------------------ ranges

/// (policy fragment with X, key path below `policy.`, values that fail, values that pass)
fn range_cases() -> Vec<(
    &'static str,
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
)> {
    vec![
        (
            "auto_pause = { threshold = X }",
            "auto_pause.threshold",
            vec!["0.09", "0.76", "0.9"],
            vec!["0.10", "0.75"],
        ),
        (
            "auto_pause = { interval = X }",
            "auto_pause.interval",
            vec!["\"30s\"", "\"2m\"", "\"10m\""],
            vec!["\"1m\"", "\"5m\""],
        ),
        (
            "auto_pause = { window = X }",
            "auto_pause.window",
            vec!["\"59s\"", "\"61m\""],
            vec!["\"1m\"", "\"1h\""],
        ),
        (
            "auto_pause = { sample = X }",
            "auto_pause.sample",
            vec!["9", "10001"],
            vec!["10", "10000"],
        ),
        (
            "auto_pause = { min_samples = X }",
            "auto_pause.min_samples",
            vec!["0", "1001"],
            vec!["1", "1000"],
        ),
        (
            "auto_pause = { auto_clear = X }",
            "auto_pause.auto_clear",
            vec!["\"59m\"", "\"25h\"", "\"90m\""],
            vec!["\"1h\"", "\"24h\"", "\"60m\""],
        ),
        (
            "auto_pause = { reprobe = X }",
            "auto_pause.reprobe",
            vec!["\"59s\"", "\"1441m\""],
            vec!["\"1m\"", "\"24h\""],
        ),
        (
            "auto_pause = { probe_requests = X }",
            "auto_pause.probe_requests",
            vec!["0", "101"],
            vec!["1", "100"],
        ),
        (
            "timeout = X",
            "timeout",
            vec!["\"99ms\"", "\"61s\""],
            vec!["\"100ms\"", "\"60s\""],
        ),
        (
            "concurrency = X",
            "concurrency",
            vec!["0", "257"],
            vec!["1", "256"],
        ),
        (
            "max_batch = X",
            "max_batch",
            vec!["0", "1001"],
            vec!["1", "1000"],
        ),
        (
            "linger = X",
            "linger",
            vec!["\"60001ms\"", "\"2m\""],
            vec!["\"0s\"", "\"60s\""],
        ),
        (
            "retry = { max_retries = X }",
            "retry.max_retries",
            vec!["-1", "21"],
            vec!["0", "20"],
        ),
        (
            "retry = { base = X }",
            "retry.base",
            vec!["\"99ms\"", "\"61s\""],
            vec!["\"100ms\"", "\"1m\""],
        ),
        (
            "retry = { max = X }",
            "retry.max",
            vec!["\"999ms\"", "\"61m\""],
            vec!["\"1s\"", "\"1h\""],
        ),
        (
            "retry = { jitter = X }",
            "retry.jitter",
            vec!["-0.01", "0.21"],
            vec!["0.0", "0.2"],
        ),
        (
            "age_limit = X",
            "age_limit",
            vec!["\"59m\"", "\"366d\""],
            vec!["\"1h\"", "\"365d\"", "\"none\""],
        ),
        (
            "rate = { limit = X, per = \"1m\" }",
            "rate.limit",
            vec!["-1"],
            vec!["0", "5000"],
        ),
        (
            "rate = { limit = 5, per = X }",
            "rate.per",
            vec!["\"999ms\"", "\"2d\""],
            vec!["\"1s\"", "\"1d\""],
        ),
    ]
}

#[test]
fn every_range_rejects_just_outside_and_accepts_bounds() {
    for (frag, key, bad, good) in range_cases() {
        for v in bad {
            let line = format!("policy = {{ {} }}", frag.replace('X', v));
            let text = meta("ent", &line);
            let e = err(&text);
            let path = format!("destinations[0].policy.{key}");
            assert_at(&e, &path, &text, "policy = ");
            assert!(
                e.message.starts_with("must be") || e.message.contains("must be"),
                "{key}={v}: {e}"
            );
        }
        for v in good {
            let line = format!("policy = {{ {} }}", frag.replace('X', v));
            ok(&meta("ent", &line));
        }
    }
}

#[test]
fn ranges_apply_to_platform_sections_too() {
    for (frag, key, bad, good) in range_cases() {
        for v in bad {
            let text = format!("[platforms.meta]\n{}\n", frag.replace('X', v));
            let e = err(&text);
            assert_eq!(
                e.key_path.as_deref(),
                Some(&*format!("platforms.meta.{key}")),
                "{e}"
            );
            assert_eq!(e.line, Some(2), "{e}");
        }
        for v in good {
            ok(&format!("[platforms.meta]\n{}\n", frag.replace('X', v)));
        }
    }
}

#[test]
fn error_display_names_path_line_and_value() {
    let text = meta("ent", "policy = { auto_pause = { threshold = 0.9 } }");
    let e = err(&text);
    let n = line_of(&text, "policy = ");
    assert_eq!(
        e.to_string(),
        format!(
            "destinations[0].policy.auto_pause.threshold (line {n}): must be between 0.10 and 0.75, got 0.9"
        )
    );
}

#[test]
fn max_batch_bound_is_the_platform_maximum() {
    let e = err("[platforms.klaviyo]\nmax_batch = 2\n");
    assert!(e.message.contains("between 1 and 1"), "{e}");
    ok("[platforms.google_ads]\nmax_batch = 2000\n");
    err("[platforms.google_ads]\nmax_batch = 2001\n");
    ok("[platforms.linkedin]\nmax_batch = 5000\n");
    err("[platforms.x]\nmax_batch = 501\n");
    err("[platforms.webhook]\nmax_batch = 2\n");
}

#[test]
fn min_samples_bound_follows_sample() {
    let e = err(&meta(
        "ent",
        "policy = { auto_pause = { sample = 20, min_samples = 21 } }",
    ));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].policy.auto_pause.min_samples")
    );
    assert!(e.message.contains("sample (20)"), "{e}");
    ok(&meta(
        "ent",
        "policy = { auto_pause = { sample = 20, min_samples = 20 } }",
    ));
    // A destination lowering sample below the platform's min_samples.
    let text = format!(
        "[platforms.meta]\nauto_pause = {{ min_samples = 50 }}\n{}",
        meta("ent", "policy = { auto_pause = { sample = 40 } }")
    );
    let e = err(&text);
    assert_eq!(
        e.key_path.as_deref(),
        Some("platforms.meta.auto_pause.min_samples")
    );
}

#[test]
fn retry_max_must_be_at_least_base() {
    let e = err(&meta(
        "ent",
        "policy = { retry = { base = \"30s\", max = \"20s\" } }",
    ));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].policy.retry.max")
    );
    assert!(e.message.contains("base (30s)"), "{e}");
    ok(&meta(
        "ent",
        "policy = { retry = { base = \"30s\", max = \"30s\" } }",
    ));
}

#[test]
fn server_storage_ingest_ranges() {
    let e = err("[server]\nmax_body_bytes = 0\n");
    assert_eq!(e.key_path.as_deref(), Some("server.max_body_bytes"));
    assert_eq!(e.line, Some(2));
    err("[server]\nmax_events_per_request = 0\n");
    let e = err("[server]\nlisten = \"localhost\"\n");
    assert_eq!(e.key_path.as_deref(), Some("server.listen"));
    err("[storage]\ndedup_window = \"30s\"\n");
    err("[storage]\nmax_backlog_age = \"366d\"\n");
    err("[storage]\ndlq_retention = \"0s\"\n");
    let e = err("[storage]\nrequest_log = -1\n");
    assert_eq!(e.key_path.as_deref(), Some("storage.request_log"));
    err("[storage]\nrequest_log = 100001\n");
    err("[storage]\nrequest_log = \"5\"\n");
    assert_eq!(ok("[storage]\nrequest_log = 0\n").storage.request_log, 0);
    assert_eq!(
        ok("[storage]\nrequest_log = 100000\n").storage.request_log,
        100_000
    );
    for bad in ["\"\"", "\"+1\"", "\"1234\"", "\"a\""] {
        let e = err(&format!("[ingest]\ndefault_country_code = {bad}\n"));
        assert_eq!(e.key_path.as_deref(), Some("ingest.default_country_code"));
    }
    assert_eq!(
        ok("[ingest]\ndefault_country_code = \"44\"\n")
            .ingest
            .default_country_code,
        "44"
    );
}

// ------------------------------------------------------------------ durations

#[test]
fn durations_parse_units_and_reject_the_rest() {
    let c = ok("[storage]\ndedup_window = \"1500ms\"\n"
        .replace("1500ms", "90m")
        .as_str());
    assert_eq!(c.storage.dedup_window, Duration::from_secs(5400));
    let c = ok(&meta("ent", "policy = { timeout = \"1500ms\" }"));
    assert_eq!(
        c.destinations[0].policy.timeout,
        Duration::from_millis(1500)
    );
    let c = ok("[storage]\nmax_backlog_age = \"2d\"\n");
    assert_eq!(c.storage.max_backlog_age, Duration::from_secs(2 * 86400));
    for bad in [
        "\"10\"",
        "\"10 s\"",
        "\"1.5s\"",
        "\"10sec\"",
        "\"1w\"",
        "\"\"",
        "10",
    ] {
        let text = format!("[storage]\ndedup_window = {bad}\n");
        let e = err(&text);
        assert_eq!(
            e.key_path.as_deref(),
            Some("storage.dedup_window"),
            "{bad}: {e}"
        );
        assert_eq!(e.line, Some(2), "{bad}: {e}");
    }
    let e = err("[storage]\ndedup_window = \"10sec\"\n");
    assert!(e.message.contains("invalid duration"), "{e}");
    assert!(e.message.contains("ms, s, m, h or d"), "{e}");
}

// ------------------------------------------------------------------ secrets

#[test]
fn missing_env_var_is_named() {
    let text = meta("ent", "").replace(
        "access_token = \"tok\"",
        "access_token_env = \"NOT_SET_ANYWHERE\"",
    );
    let e = err(&text);
    assert_at(
        &e,
        "destinations[0].credentials.access_token_env",
        &text,
        "NOT_SET_ANYWHERE",
    );
    assert!(e.message.contains("NOT_SET_ANYWHERE"), "{e}");
    let e = err(&text.replace("NOT_SET_ANYWHERE", "EMPTY"));
    assert!(e.message.contains("empty"), "{e}");
    // A value that is not an upper-case variable name may be a secret pasted into the
    // wrong key: it is not quoted (issue 14).
    let e = err(&text.replace("NOT_SET_ANYWHERE", "EAABsbCS1iHgBAPasted9token"));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].credentials.access_token_env")
    );
    assert!(e.message.contains("not set"), "{e}");
    assert!(
        !format!("{e} {e:?}").contains("EAABsbCS1iHgBAPasted9token"),
        "{e}"
    );
}

#[test]
fn env_and_file_secrets_resolve() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tok"), "file-token\n").expect("write");
    let text = meta("ent", "").replace("access_token = \"tok\"", "access_token_file = \"tok\"");
    let origin = dir.path().join("sluice.toml");
    let c = parse(&text, Some(&origin), &env).expect("valid");
    assert_eq!(
        c.destinations[0].credentials["access_token"].expose(),
        "file-token"
    );
    assert_eq!(c.path.as_deref(), Some(origin.as_path()));

    let c = ok(&meta("ent", "").replace(
        "access_token = \"tok\"",
        "access_token_env = \"META_TOKEN\"",
    ));
    assert_eq!(
        c.destinations[0].credentials["access_token"].expose(),
        "meta-token-from-env"
    );
}

#[test]
fn unreadable_file_is_named() {
    let text = meta("ent", "").replace(
        "access_token = \"tok\"",
        "access_token_file = \"/nonexistent/sluice/token\"",
    );
    let e = err(&text);
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].credentials.access_token_file")
    );
    assert!(e.message.contains("/nonexistent/sluice/token"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn two_forms_of_one_secret_are_an_error() {
    let text = meta("ent", "").replace(
        "access_token = \"tok\"",
        "access_token = \"tok\", access_token_env = \"META_TOKEN\"",
    );
    let e = err(&text);
    assert!(
        e.key_path
            .as_deref()
            .is_some_and(|p| p.starts_with("destinations[0].credentials.access_token"))
    );
    assert!(e.message.contains("twice"), "{e}");
    let e = err("[server]\nadmin_token = \"x\"\nadmin_token_file = \"/etc/x\"\n");
    assert_eq!(e.key_path.as_deref(), Some("server.admin_token_file"));
    assert_eq!(e.line, Some(3));
    let e = err("[storage]\npii_key_env = \"A\"\npii_key_file = \"/x\"\n");
    assert_eq!(e.key_path.as_deref(), Some("storage.pii_key_file"));
    let e = err(&WORKSPACES.replace(
        "ingest_keys = [\"k_ent\"]",
        "ingest_keys = [\"k_ent\"]\ningest_keys_env = \"KEYS\"",
    ));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[0].ingest_keys_env"));
}

#[test]
fn admin_token_env_unset_disables_admin() {
    let c = ok("[server]\nadmin_token_env = \"UNSET_ADMIN\"\n");
    assert!(c.server.admin_token.is_none());
    let c = ok("[server]\nadmin_token_env = \"ADMIN\"\n");
    assert_eq!(
        c.server
            .admin_token
            .as_ref()
            .map(sluice::config::Secret::expose),
        Some("admin-from-env")
    );
    let c = ok("[server]\nadmin_token = \"lit\"\n");
    assert_eq!(
        c.server
            .admin_token
            .as_ref()
            .map(sluice::config::Secret::expose),
        Some("lit")
    );
    // A file that is not there (yet) is no token too (`serve` creates it on a first
    // start); one that is there must be readable.
    assert!(
        ok("[server]\nadmin_token_file = \"/nonexistent/admin\"\n")
            .server
            .admin_token
            .is_none()
    );
    err("[server]\nadmin_token_file = \"/\"\n");
}

#[test]
fn ingest_keys_from_env_are_comma_separated() {
    let c = ok(&WORKSPACES.replace("ingest_keys = [\"k_ent\"]", "ingest_keys_env = \"KEYS\""));
    let keys: Vec<&str> = c.workspaces[0]
        .ingest_keys
        .iter()
        .map(sluice::config::Secret::expose)
        .collect();
    assert_eq!(keys, vec!["a1", "b2", "c3"]);
}

#[test]
fn pii_key_must_be_32_bytes_base64() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("good"),
        format!("{}\n", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="),
    )
    .expect("write");
    std::fs::write(dir.path().join("short"), "QUFBQQ==\n").expect("write");
    std::fs::write(dir.path().join("junk"), "not base64!\n").expect("write");
    let origin = dir.path().join("c.toml");
    let c = parse("[storage]\npii_key_file = \"good\"\n", Some(&origin), &env).expect("valid");
    assert_eq!(c.storage.pii_key, Some([b'A'; 32]));
    for f in ["short", "junk"] {
        let e = parse(
            &format!("[storage]\npii_key_file = \"{f}\"\n"),
            Some(&origin),
            &env,
        )
        .expect_err("bad key");
        assert_eq!(e.key_path.as_deref(), Some("storage.pii_key_file"));
        assert!(e.message.contains("32 bytes"), "{e}");
    }
}

#[test]
fn relative_paths_resolve_against_the_config_dir() {
    let origin = Path::new("/etc/sluice/sluice.toml");
    let c = parse("[storage]\npath = \"data/s.redb\"\n", Some(origin), &env).expect("valid");
    assert_eq!(c.storage.path, Path::new("/etc/sluice/data/s.redb"));
    assert_eq!(c.storage.backup_dir, Path::new("/etc/sluice/data/backups"));
    let c = parse(
        "[storage]\npath = \"/var/x.redb\"\nbackup_dir = \"bk\"\n",
        Some(origin),
        &env,
    )
    .expect("valid");
    assert_eq!(c.storage.path, Path::new("/var/x.redb"));
    assert_eq!(c.storage.backup_dir, Path::new("/etc/sluice/bk"));
}

// ------------------------------------------------------------------ plans, platforms

#[test]
fn auto_pause_override_needs_enterprise() {
    let text = meta("gro", "policy = { auto_pause = { threshold = 0.4 } }");
    let e = err(&text);
    assert_at(&e, "destinations[0].policy.auto_pause", &text, "policy = ");
    assert!(e.message.contains("enterprise"), "{e}");
    // Other policy keys are fine on any plan; auto_pause is fine on enterprise.
    ok(&meta("gro", "policy = { timeout = \"5s\" }"));
    let c = ok(&meta(
        "ent",
        "policy = { auto_pause = { threshold = 0.4 } }",
    ));
    assert_eq!(c.destinations[0].policy.auto_pause.threshold, 0.4);
}

#[test]
fn klaviyo_needs_the_pii_key() {
    let text = with_ws(
        "[[destinations]]\nid = \"k\"\nworkspace = \"gro\"\nplatform = \"klaviyo\"\ncredentials = { api_key = \"pk_x\" }\n",
    );
    let e = err(&text);
    assert_at(
        &e,
        "destinations[0].platform",
        &text,
        "platform = \"klaviyo\"",
    );
    assert!(e.message.contains("pii_key"), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pii"),
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
    )
    .expect("write");
    let with_key = format!("[storage]\npii_key_file = \"pii\"\n{text}");
    parse(&with_key, Some(&dir.path().join("c.toml")), &env).expect("valid with key");
}

fn dest(platform: &str, body: &str) -> String {
    with_ws(&format!(
        "[[destinations]]\nid = \"d\"\nworkspace = \"ent\"\nplatform = \"{platform}\"\n{body}\n"
    ))
}

#[test]
fn required_params_per_platform() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("meta", &["pixel_id"], "access_token = \"t\""),
        ("tiktok", &["pixel_code"], "access_token = \"t\""),
        (
            "google_ads",
            &["customer_id", "conversion_action_id"],
            "developer_token = \"d\", access_token = \"t\"",
        ),
        ("linkedin", &["conversion_rule_id"], "access_token = \"t\""),
        ("pinterest", &["ad_account_id"], "access_token = \"t\""),
        ("snapchat", &["pixel_id"], "access_token = \"t\""),
        ("reddit", &["ad_account_id"], "access_token = \"t\""),
        ("x", &["pixel_id", "event_id"], "access_token = \"t\""),
        ("taboola", &["account_id"], ""),
        ("criteo", &["account_id"], ""),
        (
            "microsoft_ads",
            &["customer_id", "account_id", "conversion_name"],
            "developer_token = \"d\", access_token = \"t\"",
        ),
    ];
    for (platform, params, creds) in cases {
        let events = "events = [\"Purchase\"]";
        let all: Vec<String> = params.iter().map(|p| format!("{p} = \"1\"")).collect();
        ok(&dest(
            platform,
            &format!(
                "{events}\nparams = {{ {} }}\ncredentials = {{ {creds} }}",
                all.join(", ")
            ),
        ));
        for missing in *params {
            let some: Vec<String> = params
                .iter()
                .filter(|p| *p != missing)
                .map(|p| format!("{p} = \"1\""))
                .collect();
            let text = dest(
                platform,
                &format!(
                    "{events}\nparams = {{ {} }}\ncredentials = {{ {creds} }}",
                    some.join(", ")
                ),
            );
            let e = err(&text);
            assert_eq!(
                e.key_path.as_deref(),
                Some(&*format!("destinations[0].params.{missing}")),
                "{platform}: {e}"
            );
            assert!(e.line.is_some(), "{e}");
        }
    }
    // Integers are accepted as ids.
    let c = ok(&dest(
        "meta",
        "params = { pixel_id = 123 }\ncredentials = { access_token = \"t\" }",
    ));
    assert_eq!(c.destinations[0].params["pixel_id"], "123");
    // Unknown params are errors (tests/it/test_send.rs has the full table).
    let e = err(&dest(
        "meta",
        "params = { pixel_id = 123, future_thing = \"x\" }\ncredentials = { access_token = \"t\" }",
    ));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].params.future_thing"),
        "{e}"
    );
}

#[test]
fn required_credentials_per_platform() {
    for (platform, params, events) in [
        ("meta", "pixel_id = \"1\"", ""),
        ("tiktok", "pixel_code = \"1\"", ""),
        (
            "linkedin",
            "conversion_rule_id = \"1\"",
            "events = [\"Lead\"]",
        ),
        ("pinterest", "ad_account_id = \"1\"", ""),
        ("snapchat", "pixel_id = \"1\"", ""),
        ("reddit", "ad_account_id = \"1\"", ""),
        (
            "x",
            "pixel_id = \"1\", event_id = \"e\"",
            "events = [\"Purchase\"]",
        ),
    ] {
        let e = err(&dest(
            platform,
            &format!("{events}\nparams = {{ {params} }}"),
        ));
        assert_eq!(
            e.key_path.as_deref(),
            Some("destinations[0].credentials.access_token"),
            "{platform}: {e}"
        );
    }
    let e = err(&dest("klaviyo", "credentials = { }"));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].credentials.api_key")
    );

    let g = |creds: &str| {
        dest(
            "google_ads",
            &format!(
                "events = [\"Purchase\"]\nparams = {{ customer_id = \"1\", conversion_action_id = \"2\" }}\ncredentials = {{ {creds} }}"
            ),
        )
    };
    let e = err(&g("access_token = \"t\""));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].credentials.developer_token")
    );
    let e = err(&g("developer_token = \"d\""));
    assert!(e.message.contains("refresh_token"), "{e}");
    let e = err(&g(
        "developer_token = \"d\", client_id = \"c\", refresh_token = \"r\"",
    ));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].credentials.client_secret")
    );
    ok(&g(
        "developer_token = \"d\", client_id = \"c\", client_secret = \"s\", refresh_token = \"r\"",
    ));
    ok(&g("developer_token = \"d\", access_token = \"t\""));

    // Taboola, Outbrain and Criteo are unauthenticated: no credential is required and
    // none is accepted.
    ok(&dest("taboola", "params = { account_id = \"1\" }"));
    ok(&dest("outbrain", ""));
    ok(&dest("criteo", "params = { account_id = \"1\" }"));
    for (platform, params) in [
        ("taboola", "account_id = \"1\""),
        ("outbrain", ""),
        ("criteo", "account_id = \"1\""),
    ] {
        let e = err(&dest(
            platform,
            &format!("params = {{ {params} }}\ncredentials = {{ access_token = \"t\" }}"),
        ));
        assert_eq!(
            e.key_path.as_deref(),
            Some("destinations[0].credentials.access_token"),
            "{platform}: {e}"
        );
        assert!(e.message.contains("takes no credentials"), "{e}");
    }

    // Unknown credential keys are errors.
    let e = err(&dest(
        "meta",
        "params = { pixel_id = \"1\" }\ncredentials = { access_token = \"t\", api_secret = \"x\" }",
    ));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].credentials.api_secret")
    );
    assert!(e.message.contains("unknown credential"), "{e}");
}

#[test]
fn webhook_needs_endpoint_and_whsec_secret() {
    let good = "endpoint = \"https://crm.example.com/hook\"\ncredentials = { signing_secret = \"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=\" }";
    ok(&dest("webhook", good));
    let e = err(&dest(
        "webhook",
        "credentials = { signing_secret = \"whsec_c2VjcmV0\" }",
    ));
    assert_eq!(e.key_path.as_deref(), Some("destinations[0].endpoint"));
    let e = err(&dest(
        "webhook",
        &good.replace("https://crm.example.com/hook", "ftp://x"),
    ));
    assert_eq!(e.key_path.as_deref(), Some("destinations[0].endpoint"));
    for bad in ["c2VjcmV0", "whsec_", "whsec_not*base64"] {
        let e = err(&dest(
            "webhook",
            &good.replace("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=", bad),
        ));
        assert_eq!(
            e.key_path.as_deref(),
            Some("destinations[0].credentials.signing_secret"),
            "{bad}"
        );
        assert!(!e.to_string().contains(bad) || bad == "whsec_", "{e}");
    }
    // Other platforms: endpoint optional, but must be http(s).
    let e = err(&dest(
        "meta",
        "endpoint = \"127.0.0.1:9100\"\nparams = { pixel_id = \"1\" }\ncredentials = { access_token = \"t\" }",
    ));
    assert_eq!(e.key_path.as_deref(), Some("destinations[0].endpoint"));
    ok(&dest(
        "meta",
        "endpoint = \"http://127.0.0.1:9100\"\nparams = { pixel_id = \"1\" }\ncredentials = { access_token = \"t\" }",
    ));
}

#[test]
fn events_filter_required_for_fixed_conversion_platforms() {
    for (platform, params, creds) in [
        (
            "google_ads",
            "customer_id = \"1\", conversion_action_id = \"2\"",
            "developer_token = \"d\", access_token = \"t\"",
        ),
        (
            "linkedin",
            "conversion_rule_id = \"1\"",
            "access_token = \"t\"",
        ),
        (
            "x",
            "pixel_id = \"1\", event_id = \"e\"",
            "access_token = \"t\"",
        ),
        (
            "microsoft_ads",
            "customer_id = \"1\", account_id = \"2\", conversion_name = \"c\"",
            "developer_token = \"d\", access_token = \"t\"",
        ),
    ] {
        let text = dest(
            platform,
            &format!("params = {{ {params} }}\ncredentials = {{ {creds} }}"),
        );
        let e = err(&text);
        assert_eq!(
            e.key_path.as_deref(),
            Some("destinations[0].events"),
            "{platform}: {e}"
        );
        assert!(e.message.contains("events"), "{e}");
        let e = err(&text.replace("params =", "events = []\nparams ="));
        assert_eq!(
            e.key_path.as_deref(),
            Some("destinations[0].events"),
            "{platform}: {e}"
        );
        ok(&text.replace("params =", "events = [\"Purchase\"]\nparams ="));
    }
}

// ------------------------------------------------------------------ rates, scopes

#[test]
fn rate_and_rates_together_are_an_error() {
    let text = meta(
        "ent",
        "policy = { rate = { limit = 1, per = \"1s\" }, rates = [{ limit = 2, per = \"1s\" }] }",
    );
    let e = err(&text);
    assert_at(&e, "destinations[0].policy.rates", &text, "policy = ");
    assert!(e.message.contains("not both"), "{e}");
    let e = err(
        "[platforms.tiktok]\nrate = { limit = 1, per = \"1s\" }\nrates = [{ limit = 2, per = \"1s\" }]\n",
    );
    assert_eq!(e.key_path.as_deref(), Some("platforms.tiktok.rates"));
    assert_eq!(e.line, Some(3));
}

#[test]
fn rate_unit_and_scope_values() {
    let c = ok(&meta(
        "ent",
        "policy = { rate = { limit = 5, per = \"1s\" } }",
    ));
    // scope defaults to the platform's scope, unit to events.
    assert_eq!(
        c.destinations[0].policy.rates,
        vec![Rate {
            limit: 5,
            per: Duration::from_secs(1),
            unit: RateUnit::Events,
            scope: RateScope::Param("pixel_id".into())
        }]
    );
    let c = ok(&meta(
        "ent",
        "policy = { rates = [{ limit = 5, per = \"1s\", unit = \"requests\", scope = \"destination\" }, { limit = 0, per = \"1m\" }] }",
    ));
    assert_eq!(
        c.destinations[0].policy.rates.len(),
        1,
        "limit 0 means no limit"
    );
    let e = err(&meta(
        "ent",
        "policy = { rate = { limit = 5, per = \"1s\", unit = \"calls\" } }",
    ));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].policy.rate.unit")
    );
    let e = err(&meta(
        "ent",
        "policy = { rate = { limit = 5, per = \"1s\", scope = \"ad_account_id\" } }",
    ));
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].policy.rate.scope")
    );
    assert!(e.message.contains("params.ad_account_id"), "{e}");
    let e = err(&meta("ent", "policy = { rates = [] }"));
    assert_eq!(e.key_path.as_deref(), Some("destinations[0].policy.rates"));
}

fn two_meta(pixel_b: &str, rate_a: &str, rate_b: &str) -> String {
    with_ws(&format!(
        r#"
[[destinations]]
id = "meta_a"
workspace = "ent"
platform = "meta"
params = {{ pixel_id = "111" }}
credentials = {{ access_token = "ta" }}
{rate_a}

[[destinations]]
id = "meta_b"
workspace = "gro"
platform = "meta"
params = {{ pixel_id = "{pixel_b}" }}
credentials = {{ access_token = "tb" }}
{rate_b}
"#
    ))
}

#[test]
fn shared_scope_with_different_rates_is_an_error() {
    let ra = "policy = { rate = { limit = 500, per = \"1m\" } }";
    let rb = "policy = { rate = { limit = 700, per = \"1m\" } } # b";
    let text = two_meta("111", ra, rb);
    let e = err(&text);
    assert_at(&e, "destinations[1].policy.rate", &text, "# b");
    assert!(
        e.message.contains("meta_b") && e.message.contains("meta_a"),
        "{e}"
    );
    // Same rate on the shared pixel: fine. Different pixels: fine.
    ok(&two_meta("111", ra, &rb.replace("700", "500")));
    ok(&two_meta("222", ra, rb));
    // One overriding, one on the default 1000/1m: conflict.
    let e = err(&two_meta("111", "", rb));
    assert_eq!(e.key_path.as_deref(), Some("destinations[1].policy.rate"));
}

#[test]
fn shared_token_scope_with_different_rates_is_an_error() {
    let t = |tok_b: &str| {
        with_ws(&format!(
            r#"
[[destinations]]
id = "tt_a"
workspace = "ent"
platform = "tiktok"
params = {{ pixel_code = "A" }}
credentials = {{ access_token = "tok_shared_xyz" }}

[[destinations]]
id = "tt_b"
workspace = "ent"
platform = "tiktok"
params = {{ pixel_code = "B" }}
credentials = {{ access_token = "{tok_b}" }}
policy = {{ rate = {{ limit = 10, per = "1m", unit = "requests", scope = "token" }} }}
"#
        ))
    };
    let e = err(&t("tok_shared_xyz"));
    assert_eq!(e.key_path.as_deref(), Some("destinations[1].policy.rate"));
    assert!(e.message.contains("tt_b"), "{e}");
    assert!(
        !e.to_string().contains("tok_shared_xyz"),
        "never the token: {e}"
    );
    ok(&t("other"));
}

/// Two destinations sharing an access token but not a refresh token are one token
/// scope, both for validation and for the pacer they run with (one `scope_key`).
#[test]
fn a_shared_access_token_is_one_scope_for_validation_and_pacing() {
    let t = |rate_b: &str| {
        with_ws(&format!(
            r#"
[[destinations]]
id = "g_a"
workspace = "ent"
platform = "google_ads"
events = ["Purchase"]
params = {{ customer_id = "1", conversion_action_id = "1" }}
credentials = {{ developer_token = "dev", access_token = "tok_shared", client_id = "c", client_secret = "s", refresh_token = "r_a" }}
policy = {{ rate = {{ limit = 10, per = "1m", unit = "requests", scope = "token" }} }}

[[destinations]]
id = "g_b"
workspace = "ent"
platform = "google_ads"
events = ["Purchase"]
params = {{ customer_id = "2", conversion_action_id = "1" }}
credentials = {{ developer_token = "dev", access_token = "tok_shared", client_id = "c", client_secret = "s", refresh_token = "r_b" }}
policy = {{ rate = {{ limit = {rate_b}, per = "1m", unit = "requests", scope = "token" }} }}
"#
        ))
    };
    let e = err(&t("20"));
    assert!(e.message.contains("shares its token pacing scope"), "{e}");
    let cfg = ok(&t("10"));
    let token = |i: usize| {
        let d = &cfg.destinations[i];
        let r = d
            .policy
            .rates
            .iter()
            .find(|r| r.scope == RateScope::Token)
            .expect("token rate");
        d.scope_key(&r.scope)
    };
    assert_eq!(token(0), token(1), "one pacer at run time");
}

#[test]
fn policies_deep_merge_key_by_key() {
    let text = with_ws(
        r#"
[platforms.meta]
timeout = "20s"
retry = { max_retries = 3 }
auto_pause = { interval = "1m" }
rate = { limit = 2000, per = "1m" }

[[destinations]]
id = "m1"
workspace = "ent"
platform = "meta"
params = { pixel_id = "1" }
credentials = { access_token = "t" }
policy = { retry = { base = "2s" }, auto_pause = { threshold = 0.5 }, concurrency = 8 }

[[destinations]]
id = "m2"
workspace = "ent"
platform = "meta"
params = { pixel_id = "2" }
credentials = { access_token = "t" }
policy = { rates = [{ limit = 10, per = "1s", unit = "requests", scope = "destination" }] }
"#,
    );
    let c = ok(&text);
    let pm = &c.platforms[&Platform::Meta];
    assert_eq!(pm.timeout, Duration::from_secs(20));
    assert_eq!(pm.retry.max_retries, 3);
    assert_eq!(
        pm.auto_pause.window,
        Duration::from_secs(60),
        "window defaults to interval"
    );
    assert_eq!(pm.rates[0].limit, 2000);
    assert_eq!(pm.rates[0].scope, RateScope::Param("pixel_id".into()));
    assert_eq!(pm.max_batch, 1000, "untouched keys keep built-in defaults");

    let d1 = &c.destinations[0].policy;
    assert_eq!(d1.timeout, Duration::from_secs(20));
    assert_eq!(d1.concurrency, 8);
    assert_eq!(d1.retry.max_retries, 3);
    assert_eq!(d1.retry.base, Duration::from_secs(2));
    assert_eq!(d1.retry.max, Duration::from_secs(128));
    assert_eq!(d1.auto_pause.threshold, 0.5);
    assert_eq!(d1.auto_pause.interval, Duration::from_secs(60));
    assert_eq!(d1.auto_pause.sample, 1000);
    assert_eq!(d1.rates, pm.rates);

    let d2 = &c.destinations[1].policy;
    assert_eq!(
        d2.rates.len(),
        1,
        "destination rates replace the platform's whole"
    );
    assert_eq!(d2.rates[0].scope, RateScope::Destination);
    assert_eq!(d2.concurrency, 4);
    // Other platforms are untouched.
    assert_eq!(
        c.platforms[&Platform::Tiktok].timeout,
        Duration::from_secs(10)
    );
}

// ------------------------------------------------------------------ ids, keys, shape

#[test]
fn ids_workspaces_and_ingest_keys() {
    let e = err(&WORKSPACES.replace("id = \"gro\"", "id = \"ent\""));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[1].id"));
    let e = err(&WORKSPACES.replace("id = \"gro\"", "id = \"g r o\""));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[1].id"));
    let e = err(&WORKSPACES.replace("id = \"gro\"", "id = \"\""));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[1].id"));
    let e = err(&WORKSPACES.replace("\"k_gro\"", "\"k_ent\""));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[1].ingest_keys[0]"));
    assert!(!e.to_string().contains("k_ent"), "{e}");
    let e = err(&WORKSPACES.replace("[\"k_gro\"]", "[]"));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[1].ingest_keys"));
    let e = err(&WORKSPACES.replace("ingest_keys = [\"k_gro\"]", ""));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[1].ingest_keys"));
    let e = err(&WORKSPACES.replace("\"growth\"", "\"gold\""));
    assert_eq!(e.key_path.as_deref(), Some("workspaces[1].plan"));

    let e = err(&meta("nope", ""));
    assert_eq!(e.key_path.as_deref(), Some("destinations[0].workspace"));
    let e = err(&meta("ent", "").replace("platform = \"meta\"", "platform = \"myspace\""));
    assert_eq!(e.key_path.as_deref(), Some("destinations[0].platform"));
    let twice = format!(
        "{}\n{}",
        meta("ent", ""),
        meta("ent", "").replace(WORKSPACES, "")
    );
    let e = err(&twice);
    assert_eq!(e.key_path.as_deref(), Some("destinations[1].id"));
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
    assert_eq!(e.key_path.as_deref(), Some("server.lisen"));
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("unknown key `lisen`"), "{e}");

    let text = meta("ent", "policy = { retry = { bogus = 1 } }");
    let e = err(&text);
    assert_at(&e, "destinations[0].policy.retry.bogus", &text, "policy = ");

    let e = err("[nonsense]\na = 1\n");
    assert_eq!(e.key_path.as_deref(), Some("nonsense"));
    assert_eq!(e.line, Some(1));

    let e = err("[platforms.myspace]\ntimeout = \"1s\"\n");
    assert_eq!(e.key_path.as_deref(), Some("platforms.myspace"));
    assert_eq!(e.line, Some(1));

    let e =
        err("[alerts]\nslack = { webhook_url = \"https://h.example/x\", channel = \"#ops\" }\n");
    assert_eq!(e.key_path.as_deref(), Some("alerts.slack.channel"));
    assert_eq!(e.line, Some(2));
}

#[test]
fn wrong_types_and_missing_keys_name_their_path() {
    let e = err("[server]\nmax_body_bytes = \"big\"\n");
    assert_eq!(e.key_path.as_deref(), Some("server.max_body_bytes"));
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("integer"), "{e}");
    assert!(!e.message.contains("big"), "{e}");

    let e = err("[[workspaces]]\nplan = \"growth\"\ningest_keys = [\"k\"]\n");
    assert_eq!(e.key_path.as_deref(), Some("workspaces[0].id"));
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("missing"), "{e}");
}

// ------------------------------------------------------------------ secrecy

const SECRET: &str = "SUPERSECRET_do_not_print_42";

#[test]
fn errors_never_echo_a_secret_or_the_line() {
    let lines = [
        // unknown credential key on the secret's line
        format!("credentials = {{ access_token = \"{SECRET}\", bogus = \"x\" }}"),
        // a range error on the secret's line
        format!(
            "credentials = {{ access_token = \"{SECRET}\" }}, policy = {{ timeout = \"90s\" }}"
        ),
        // secret given where a number is expected
        format!("policy = {{ concurrency = \"{SECRET}\" }}"),
        // secret given where a duration is expected
        format!("policy = {{ timeout = \"{SECRET}\" }}"),
        // secret given as a wrong-typed credential
        "credentials = { access_token = 12345678987654321 }".to_string(),
    ];
    for line in lines {
        let text = with_ws(&format!(
            "[[destinations]]\nid = \"m\"\nworkspace = \"ent\"\nplatform = \"meta\"\nparams = {{ pixel_id = \"1\" }}\n{line}\n"
        ));
        let e = match try_cfg(&text) {
            Ok(_) => panic!("expected an error for {line}"),
            Err(e) => e,
        };
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(SECRET), "secret echoed: {shown}");
        assert!(
            !shown.contains("12345678987654321"),
            "value echoed: {shown}"
        );
        assert!(!shown.contains(line.trim()), "line echoed: {shown}");
        assert!(e.line.is_some(), "{shown}");
    }
    // Syntax error on a secret's line: the line number, not the text.
    let text = format!("[server]\nadmin_token = \"{SECRET}\n");
    let e = err(&text);
    assert_eq!(e.line, Some(2), "{e}");
    assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");
    let text = format!("[server]\nadmin_token = \"{SECRET}\" junk\n");
    let e = err(&text);
    assert_eq!(e.line, Some(2), "{e}");
    assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");
    // A bad URL secret is not echoed either.
    let e = err(&format!(
        "[alerts]\nslack = {{ webhook_url = \"{SECRET}\" }}\n"
    ));
    assert_eq!(e.key_path.as_deref(), Some("alerts.slack.webhook_url"));
    assert!(!e.to_string().contains(SECRET), "{e}");
}

#[test]
fn summary_lists_everything_but_secrets() {
    let text = with_ws(&format!(
        r#"
[server]
admin_token = "{SECRET}_admin"

[alerts]
slack = {{ webhook_url = "https://hooks.example/{SECRET}_slack" }}
email = {{ smtp = "127.0.0.1:25", password = "{SECRET}_smtp", from = "s@example.com", to = ["o@example.com"] }}
webhook = {{ url = "https://ops.example/{SECRET}_hook" }}
pagerduty = {{ routing_key = "{SECRET}_pd" }}
backpressure = {{ queue_depth = 100, consumer_lag = "10m" }}

[[destinations]]
id = "hook"
workspace = "gro"
platform = "webhook"
endpoint = "https://crm.example.com/x"
credentials = {{ signing_secret = "whsec_U1VQRVJTRUNSRVRfZG9fbm90X3ByaW50XzQy" }}

[[destinations]]
id = "m"
workspace = "ent"
platform = "meta"
params = {{ pixel_id = "1" }}
credentials = {{ access_token = "{SECRET}_meta" }}
"#
    ));
    let c = ok(&text);
    assert_eq!(
        c.alerts.pagerduty.as_ref().map(|p| p.events_url.as_str()),
        Some("https://events.pagerduty.com/v2/enqueue")
    );
    assert_eq!(c.alerts.email.as_ref().map(|e| e.starttls), Some(false));
    assert_eq!(
        c.alerts.backpressure.as_ref().and_then(|b| b.consumer_lag),
        Some(Duration::from_secs(600))
    );
    let s = summary(&c);
    assert!(!s.contains(SECRET), "{s}");
    assert!(!s.contains("whsec_"), "{s}");
    assert!(!s.contains("k_ent") && !s.contains("k_gro"), "{s}");
    for want in [
        "127.0.0.1:8470",
        "sluice.redb",
        "ent",
        "enterprise",
        "growth",
        "hook",
        "webhook",
        "meta",
        "slack",
        "email",
        "pagerduty",
    ] {
        assert!(s.contains(want), "missing {want}: {s}");
    }
    // Each destination's auto-pause settings (issue 19): defaults for a webhook.
    assert!(
        s.contains("    auto-pause: above 25% errors over 5m (evaluated every 5m, at least 10 attempts); auto-clear after 4h, re-probe after 30m\n"),
        "{s}"
    );
    // Debug of the whole config hides secrets too.
    assert!(!format!("{c:?}").contains(SECRET));
}

#[test]
fn alerts_validate() {
    let e = err("[alerts]\nslack = {}\n");
    assert_eq!(e.key_path.as_deref(), Some("alerts.slack.webhook_url"));
    let e = err("[alerts]\nemail = { smtp = \"mail\", from = \"a@b\", to = [\"c@d\"] }\n");
    assert_eq!(e.key_path.as_deref(), Some("alerts.email.smtp"));
    let e = err("[alerts]\nemail = { smtp = \"mail:25\", from = \"a@b\", to = [] }\n");
    assert_eq!(e.key_path.as_deref(), Some("alerts.email.to"));
    let e = err("[alerts]\npagerduty = { routing_key_env = \"NO_PD\" }\n");
    assert_eq!(
        e.key_path.as_deref(),
        Some("alerts.pagerduty.routing_key_env")
    );
    assert!(e.message.contains("NO_PD"));
    let e = err("[alerts]\nbackpressure = { consumer_lag = \"soon\" }\n");
    assert_eq!(
        e.key_path.as_deref(),
        Some("alerts.backpressure.consumer_lag")
    );
    let e = err("[alerts]\nbackpressure = { queue_depth = 0 }\n");
    assert_eq!(
        e.key_path.as_deref(),
        Some("alerts.backpressure.queue_depth")
    );
}

// ------------------------------------------------------------------ example file

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let c = load(&path).expect("config.example.toml must load");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8470");
    assert_eq!(
        c.storage.path,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sluice.redb")
    );
    assert_eq!(c.workspaces.len(), 1);
    assert_eq!(c.workspaces[0].id, "demo");
    assert_eq!(c.workspaces[0].plan, Plan::Growth);
    assert_eq!(
        c.workspaces[0].ingest_keys[0].expose(),
        "demo_ingest_key_change_me"
    );
    assert_eq!(c.destinations.len(), 1);
    assert_eq!(c.destinations[0].platform, Platform::Webhook);
    assert_eq!(
        c.destinations[0].endpoint.as_deref(),
        Some("http://127.0.0.1:9000/hook")
    );

    // Without any environment variable, too.
    let text = std::fs::read_to_string(&path).expect("read");
    let c = parse(&text, Some(&path), &|_| None).expect("loads with an empty environment");
    assert!(c.server.admin_token.is_none());
    assert!(!summary(&c).contains("whsec_"));
}

#[test]
fn load_reports_a_missing_file() {
    let e = load(Path::new("/nonexistent/sluice.toml")).expect_err("missing");
    assert!(e.message.contains("/nonexistent/sluice.toml"), "{e}");
}

#[test]
fn sub_tables_and_dotted_keys_get_paths_and_lines() {
    let text = with_ws(
        r#"
[[destinations]]
id = "m"
workspace = "ent"
platform = "meta"
params = { pixel_id = "1" }
credentials = { access_token = "t" }

[destinations.policy.auto_pause]
interval = "1m"
threshold = 0.8
"#,
    );
    let e = err(&text);
    assert_at(
        &e,
        "destinations[0].policy.auto_pause.threshold",
        &text,
        "threshold = 0.8",
    );

    let text = with_ws(
        r#"
[[destinations]]
id = "m"
workspace = "ent"
platform = "meta"
params.pixel_id = "1"
credentials.access_token = "t"
policy.retry.max_retries = 21
"#,
    );
    let e = err(&text);
    assert_at(
        &e,
        "destinations[0].policy.retry.max_retries",
        &text,
        "max_retries = 21",
    );
}
