//! Unit tests of the configuration module's internals (the public behaviour is
//! covered in `tests/config.rs`).

use std::time::Duration;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn err(text: &str) -> ConfigError {
    match parse(text, None, &no_env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn serde_messages_lose_their_values() {
    let (m, k) = clean_serde_message("invalid type: string \"hunter2\", expected i64");
    assert_eq!(m, "wrong type: expected an integer");
    assert_eq!(k, None);
    let (m, _) = clean_serde_message("invalid value: integer `-5`, expected u32");
    assert_eq!(m, "invalid value: expected an integer");
    let (m, k) = clean_serde_message("missing field `per`");
    assert_eq!(
        (m.as_str(), k.as_deref()),
        ("missing required key `per`", Some("per"))
    );
    let (m, _) = clean_serde_message("unknown field `lisen`, expected `listen` or `log_level`");
    assert_eq!(m, "unknown key `lisen` (expected `listen` or `log_level`)");
    let (m, _) = clean_serde_message("something \"secret\" happened\nsecond line \"x\"");
    assert_eq!(m, "something \"…\" happened");
    assert_eq!(
        strip_quoted("expected `\"`, got \"abc\""),
        "expected `\"`, got \"…\""
    );
}

#[test]
fn shape_errors_point_at_the_key() {
    // A missing key in an inline table names the key below the table.
    let e = err("[platforms.meta]\nrate = { limit = 5 }\n");
    assert_eq!(e.key_path.as_deref(), Some("platforms.meta.rate.per"));
    assert_eq!(e.line, Some(2));
    // A wrong type points at the value's key.
    let e =
        err("[alerts.email]\nsmtp = \"a:1\"\nfrom = \"a@b\"\nto = [\"c@d\"]\nstarttls = \"yes\"\n");
    assert_eq!(e.key_path.as_deref(), Some("alerts.email.starttls"));
    assert_eq!(e.line, Some(5));
    assert_eq!(e.message, "wrong type: expected a boolean");
    // Params must be strings or integers.
    let e = err(
        "[[destinations]]\nid = \"a\"\nworkspace = \"w\"\nplatform = \"meta\"\nparams = { pixel_id = [1] }\n",
    );
    assert_eq!(
        e.key_path.as_deref(),
        Some("destinations[0].params.pixel_id")
    );
    assert_eq!(e.line, Some(5));
}

#[test]
fn syntax_errors_give_the_line_only() {
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nadmin_token = \"s3cr3t\n");
    assert_eq!(e.key_path, None);
    assert_eq!(e.line, Some(3));
    assert!(e.message.starts_with("TOML syntax error"), "{e}");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    let e = err("[server]\nlisten = \"a\"\nlisten = \"b\"\n");
    assert_eq!(e.line, Some(3));
}

#[test]
fn display_forms() {
    let mk = |p: Option<&str>, l: Option<usize>| ConfigError {
        key_path: p.map(str::to_string),
        line: l,
        message: "bad".to_string(),
    };
    assert_eq!(mk(Some("a.b"), Some(3)).to_string(), "a.b (line 3): bad");
    assert_eq!(mk(Some("a.b"), None).to_string(), "a.b: bad");
    assert_eq!(mk(None, Some(3)).to_string(), "line 3: bad");
    assert_eq!(mk(None, None).to_string(), "bad");
}

#[test]
fn window_follows_the_latest_interval_unless_set() {
    let base = "[[workspaces]]\nid = \"w\"\nplan = \"enterprise\"\ningest_keys = [\"k\"]\n\
        [[destinations]]\nid = \"d\"\nworkspace = \"w\"\nplatform = \"snapchat\"\n\
        params = { pixel_id = \"p\" }\ncredentials = { access_token = \"t\" }\n";
    // Platform sets nothing, destination sets interval: window follows it.
    let text = format!("{base}policy = {{ auto_pause = {{ interval = \"1m\" }} }}\n");
    let c = parse(&text, None, &no_env).expect("valid");
    assert_eq!(
        c.destinations[0].policy.auto_pause.window,
        Duration::from_secs(60)
    );
    // Platform sets window explicitly: a destination interval does not move it.
    let text = format!(
        "[platforms.snapchat]\nauto_pause = {{ window = \"10m\" }}\n{base}policy = {{ auto_pause = {{ interval = \"1m\" }} }}\n"
    );
    let c = parse(&text, None, &no_env).expect("valid");
    assert_eq!(
        c.destinations[0].policy.auto_pause.window,
        Duration::from_secs(600)
    );
    assert_eq!(
        c.platforms[&Platform::Snapchat].auto_pause.window,
        Duration::from_secs(600)
    );
}

#[test]
fn sha256_is_of_the_text() {
    let c = parse("[ingest]\ndefault_country_code = \"44\"\n", None, &no_env).expect("valid");
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        b"[ingest]\ndefault_country_code = \"44\"\n",
    ));
    assert_eq!(c.sha256, want);
    assert!(c.path.is_none());
}

#[test]
fn builtin_defaults_are_themselves_valid() {
    // Every platform's built-in policy passes the same ranges a file would.
    for p in Platform::ALL {
        let b = defaults::builtin_policy(p);
        assert!(b.max_batch >= 1 && b.max_batch == max_batch_limit(p));
        assert!(b.retry.max >= b.retry.base);
        assert!(b.auto_pause.min_samples <= b.auto_pause.sample);
        assert!(b.rates.iter().all(|r| r.limit > 0));
    }
}

#[test]
fn a_file_that_sets_nothing_is_refused() {
    for text in ["", "# c\n", "[server]\n[storage]\n", "[platforms.meta]\n"] {
        let e = err(text);
        assert!(e.message.starts_with("the file is empty"), "{text:?}: {e}");
        assert_eq!((e.key_path.as_deref(), e.line), (None, None));
    }
    // A `[[workspaces]]` entry sets something: the shape error names what it lacks.
    let e = err("[[workspaces]]\n");
    assert_eq!(e.key_path.as_deref(), Some("workspaces[0].id"));
    assert!(parse("[server]\nlog_level = \"info\"\n", None, &no_env).is_ok());
}

#[test]
fn env_names_are_quoted_only_when_they_look_like_one() {
    for name in ["META_TOKEN", "A", "_X1", "PD_ROUTING_KEY_2"] {
        assert!(validate::conventional_env_name(name), "{name}");
    }
    for name in [
        "",
        "1ABC",
        "meta_token",
        "EAABsbCS1iHg",
        "A-B",
        "A.B",
        &"A".repeat(65),
    ] {
        assert!(!validate::conventional_env_name(name), "{name}");
    }
}

#[test]
fn watches_merge_like_policies_and_refuse_what_is_out_of_range() {
    let ws = "[[workspaces]]\nid = \"w\"\nplan = \"growth\"\ningest_keys = [\"k\"]\n";
    let dest = "[[destinations]]\nid = \"d\"\nworkspace = \"w\"\nplatform = \"webhook\"\n\
        endpoint = \"http://127.0.0.1:9/h\"\ncredentials = { signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }\n";
    // Defaults: on, nothing surprising.
    let c = parse(&format!("{ws}{dest}"), None, &no_env).expect("valid");
    let w = &c.destinations[0].policy.watch;
    assert_eq!(w, &WatchPolicy::default());
    assert_eq!(w.max_lag, Some(Duration::from_secs(3600)));
    assert_eq!((w.warn_at, w.min_accuracy), (0.8, None));
    assert_eq!(c.workspaces[0].silent_source, SilentSource::default());
    // Platform then destination, key by key (any plan).
    let text = format!(
        "[platforms.webhook]\nwatch = {{ max_lag = \"10m\", warn_at = 0.5 }}\n{ws}{dest}\
         policy = {{ watch = {{ max_lag = \"none\", min_accuracy = 0.95 }} }}\n"
    );
    let c = parse(&text, None, &no_env).expect("valid");
    let w = &c.destinations[0].policy.watch;
    assert_eq!(
        (w.max_lag, w.warn_at, w.min_accuracy),
        (None, 0.5, Some(0.95))
    );
    // Out of range, each at its key path.
    for (bad, path) in [
        (
            "policy = { watch = { warn_at = 1.0 } }",
            "destinations[0].policy.watch.warn_at",
        ),
        (
            "policy = { watch = { max_lag = \"10s\" } }",
            "destinations[0].policy.watch.max_lag",
        ),
        (
            "policy = { watch = { min_accuracy = 0.0 } }",
            "destinations[0].policy.watch.min_accuracy",
        ),
    ] {
        let e = err(&format!("{ws}{dest}{bad}\n"));
        assert_eq!(e.key_path.as_deref(), Some(path), "{e}");
    }
    for (bad, path) in [
        (
            "silent_source = { window = \"1m\" }",
            "workspaces[0].silent_source.window",
        ),
        (
            "silent_source = { window = \"15m30s\" }",
            "workspaces[0].silent_source.window",
        ),
        (
            "silent_source = { min_ratio = 1.5 }",
            "workspaces[0].silent_source.min_ratio",
        ),
        (
            "silent_source = { event_names = [\"Purchase\", \"Purchase\"] }",
            "workspaces[0].silent_source.event_names[1]",
        ),
        (
            "silent_source = { event_names = [\" \"] }",
            "workspaces[0].silent_source.event_names[0]",
        ),
        (
            "silent_source = { speed = 1 }",
            "workspaces[0].silent_source.speed",
        ),
    ] {
        let e = err(&format!("{ws}{bad}\n{dest}"));
        assert_eq!(e.key_path.as_deref(), Some(path), "{e}");
    }
    let c = parse(
        &format!("{ws}silent_source = {{ enabled = false, event_names = [\"Purchase\"] }}\n{dest}"),
        None,
        &no_env,
    )
    .expect("valid");
    let s = &c.workspaces[0].silent_source;
    assert!(!s.enabled);
    assert_eq!(s.event_names, ["Purchase"]);
}
