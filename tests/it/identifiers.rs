//! Identifier normalization and hashing against the vectors in
//! `tests/data/identifiers.json`: every case, every variant, exactly.

use serde_json::Value;
use sluice::event::Variant;
use sluice::ingest::identifiers::{IdField, normalize};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/identifiers.json");

fn variant_by_name(name: &str) -> Variant {
    Variant::ALL
        .into_iter()
        .find(|v| v.name() == name)
        .unwrap_or_else(|| panic!("unknown variant {name:?} in vectors"))
}

#[test]
fn every_vector_case_and_variant() {
    let text = std::fs::read_to_string(VECTORS).expect("read identifiers.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("parse identifiers.json");
    assert!(!cases.is_empty());
    let mut checked = 0;
    for (i, case) in cases.iter().enumerate() {
        let field_name = case["field"].as_str().expect("field");
        let field = IdField::from_key(field_name).expect("known field");
        let input = case["input"].as_str().expect("input");
        let cc = case
            .get("default_country_code")
            .and_then(Value::as_str)
            .unwrap_or("1");
        let country = case.get("country").and_then(Value::as_str);
        let got = normalize(field, input, cc, country)
            .unwrap_or_else(|e| panic!("case {i} ({field_name}): {e}"));

        let want = case["variants"].as_object().expect("variants");
        assert_eq!(got.len(), want.len(), "case {i}: number of variants");
        for (name, expected) in want {
            let variant = variant_by_name(name);
            let n = got
                .iter()
                .find(|n| n.variant == variant)
                .unwrap_or_else(|| panic!("case {i}: variant {name} missing"));
            assert_eq!(
                n.normalized.as_deref(),
                expected["normalized"].as_str(),
                "case {i} variant {name}: normalized"
            );
            assert_eq!(
                hex::encode(n.sha256),
                expected["sha256"].as_str().expect("sha256"),
                "case {i} variant {name}: sha256"
            );
            checked += 1;
        }
        // One entry per variant of the field, in variant order.
        let order: Vec<Variant> = got.iter().map(|n| n.variant).collect();
        assert_eq!(order, field.variants(), "case {i}: variant order");
    }
    assert!(checked >= cases.len());
}

#[test]
fn national_phone_uses_default_country_code() {
    let got = normalize(IdField::Phone, "020 7946 0958", "44", None).expect("phone");
    assert_eq!(got[0].normalized.as_deref(), Some("4402079460958"));
    assert_eq!(got[1].normalized.as_deref(), Some("+4402079460958"));
}

#[test]
fn reddit_drops_tag_and_dots_on_any_domain_google_only_dots_on_gmail() {
    let got = normalize(IdField::Email, "A.B+x@Example.org", "1", None).expect("email");
    let names: Vec<_> = got.iter().map(|n| n.normalized.as_deref()).collect();
    assert_eq!(
        names,
        [
            Some("a.b+x@example.org"),
            Some("a.b+x@example.org"),
            Some("ab@example.org")
        ]
    );
    let got = normalize(IdField::Email, "a.b@googlemail.com", "1", None).expect("email");
    assert_eq!(got[1].normalized.as_deref(), Some("ab@googlemail.com"));
}

#[test]
fn zip_rules() {
    let z = |raw: &str, country: Option<&str>| {
        normalize(IdField::Zip, raw, "1", country).map(|v| v[0].normalized.clone())
    };
    // 5 digits with an optional -4 suffix: first 5 digits, whatever the country.
    assert_eq!(z("94107-1234", None), Ok(Some("94107".into())));
    assert_eq!(z("94107", Some("DE")), Ok(Some("94107".into())));
    // US: first 5 digits even when not shaped like a ZIP+4.
    assert_eq!(z("94107 1234", Some("us")), Ok(Some("94107".into())));
    // Elsewhere: lowercase, no spaces.
    assert_eq!(z("SW1A 1AA", Some("GB")), Ok(Some("sw1a1aa".into())));
    assert_eq!(z("941071234", None), Ok(Some("941071234".into())));
    assert_eq!(z("K1A 0B1", None), Ok(Some("k1a0b1".into())));
}

#[test]
fn other_fields() {
    let one = |f: IdField, raw: &str| normalize(f, raw, "1", None).map(|v| v[0].normalized.clone());
    assert_eq!(one(IdField::Gender, " MALE "), Ok(Some("m".into())));
    assert_eq!(one(IdField::Gender, "f"), Ok(Some("f".into())));
    assert_eq!(
        one(IdField::DateOfBirth, "19900214"),
        Ok(Some("19900214".into()))
    );
    assert_eq!(
        one(IdField::DateOfBirth, "2000-02-29"),
        Ok(Some("20000229".into()))
    );
    assert_eq!(one(IdField::State, "New York"), Ok(Some("ny".into())));
    assert_eq!(one(IdField::State, "N.Y."), Ok(Some("ny".into())));
    assert_eq!(one(IdField::State, "Bayern"), Ok(Some("bayern".into())));
    assert_eq!(one(IdField::City, "São Paulo"), Ok(Some("sãopaulo".into())));
    assert_eq!(
        one(IdField::LastName, "ÖZDEMİR"),
        Ok(Some("özdemi̇r".into()))
    );
    assert_eq!(one(IdField::Country, " gb "), Ok(Some("gb".into())));
}

#[test]
fn already_hashed_is_used_as_is_for_every_variant() {
    let h = "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599";
    let got = normalize(IdField::Phone, h, "1", None).expect("hash");
    assert_eq!(got.len(), 2);
    for n in got {
        assert_eq!(n.normalized, None);
        assert_eq!(hex::encode(n.sha256), h);
    }
    // Upper-case hex is not "64 lowercase hex": it is a value like any other.
    let upper = h.to_uppercase();
    let got = normalize(IdField::ExternalId, &upper, "1", None).expect("value");
    assert_eq!(got[0].normalized.as_deref(), Some(h));
    assert_ne!(hex::encode(got[0].sha256), h);
}

#[test]
fn invalid_values() {
    let bad = |f: IdField, raw: &str| normalize(f, raw, "1", None).is_err();
    assert!(bad(IdField::DateOfBirth, "1990-2-14"));
    assert!(bad(IdField::DateOfBirth, "14/02/1990"));
    assert!(bad(IdField::DateOfBirth, "1990-02-30"));
    assert!(bad(IdField::DateOfBirth, "19901301"));
    assert!(bad(IdField::DateOfBirth, "1990-02-1a"));
    assert!(bad(IdField::DateOfBirth, "1990+02+14"));
    assert!(bad(IdField::Country, "USA"));
    assert!(bad(IdField::Country, "u1"));
    assert!(bad(IdField::Country, "üs"));
    assert!(bad(IdField::Phone, "call me"));
    assert!(bad(IdField::Phone, "+"));
    assert!(bad(IdField::Gender, "x"));
    assert!(bad(IdField::Gender, "fem"));
    assert!(bad(IdField::Email, "no-at-sign"));
    assert!(bad(IdField::Email, "@example.com"));
    assert!(bad(IdField::City, "123"));
    for f in IdField::ALL {
        assert!(bad(f, "   "), "{f:?} accepts blank");
        assert!(bad(f, ""), "{f:?} accepts empty");
    }
}

#[test]
fn error_messages_never_contain_the_value() {
    let cases = [
        (IdField::DateOfBirth, "secret-1990"),
        (IdField::Country, "secretland"),
        (IdField::Phone, "secret"),
        (IdField::Gender, "secret"),
        (IdField::Email, "secret"),
    ];
    for (f, raw) in cases {
        let e = normalize(f, raw, "1", None).expect_err("invalid");
        assert!(!e.contains("secret"), "{f:?}: {e}");
    }
}

#[test]
fn from_key_roundtrips() {
    for f in IdField::ALL {
        assert_eq!(IdField::from_key(f.key()), Some(f));
    }
    assert_eq!(IdField::from_key("client_ip_address"), None);
    assert_eq!(IdField::from_key("Email"), None);
}
