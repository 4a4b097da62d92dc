//! RFC 8785 (JSON Canonicalization Scheme) for the value set the audit chain allows:
//! strings, integers within ±2^53, booleans, null, arrays and objects. Floats are
//! refused rather than formatted: SPEC §6 keeps them out of the chain (rates travel as
//! strings), so the ECMAScript number formatting of RFC 8785 §3.2.2.3 is never needed —
//! an integer in that range prints as its plain decimal digits, which is what the
//! ECMAScript algorithm gives for it.
//!
//! - Object members are sorted by their names' UTF-16 code units (RFC 8785 §3.2.3), not
//!   by UTF-8 bytes: the two differ for names holding characters above U+FFFF next to
//!   characters in U+E000..U+FFFF.
//! - Strings are written as UTF-8 with only the escapes RFC 8785 §3.2.2.2 prescribes:
//!   `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lowercase hex) for the other
//!   controls below U+0020. Everything else, U+007F and non-ASCII included, is literal.
//! - No whitespace anywhere.

use serde_json::Value;

/// The largest magnitude an integer may have: 2^53, the edge of the doubles RFC 8785
/// reads numbers as.
pub const MAX_SAFE_MAGNITUDE: u64 = 1 << 53;

/// A value the canonical form cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CanonError(pub String);

/// The RFC 8785 canonical JSON of `v`. Fails on a float or an integer beyond ±2^53,
/// naming where it is (`$.details.rate`).
pub fn canonical_json(v: &Value) -> Result<String, CanonError> {
    let mut out = String::new();
    write_value(v, &mut out, "$")?;
    Ok(out)
}

/// Checks that `v` is an integer RFC 8785 can carry exactly; `path` names it in the error.
pub fn check_number(n: &serde_json::Number, path: &str) -> Result<(), CanonError> {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_SAFE_MAGNITUDE {
            return Ok(());
        }
    } else if let Some(u) = n.as_u64() {
        if u <= MAX_SAFE_MAGNITUDE {
            return Ok(());
        }
    } else {
        return Err(CanonError(format!(
            "{path} is a float ({n}); write it as a string such as \"0.312\""
        )));
    }
    Err(CanonError(format!(
        "{path} = {n} is beyond ±2^53; write it as a string"
    )))
}

fn write_value(v: &Value, out: &mut String, path: &str) -> Result<(), CanonError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            check_number(n, path)?;
            // An integer (checked above): its decimal digits are its ECMAScript form.
            out.push_str(&n.to_string());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, &format!("{path}[{i}]"))?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(Vec<u16>, &String, &Value)> = map
                .iter()
                .map(|(k, v)| (k.encode_utf16().collect(), k, v))
                .collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (_, k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out, &format!("{path}.{k}"))?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> String {
        canonical_json(&v).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            c(json!({"b": 1, "a": {"z": null, "y": [true, false]}, "A": "x"})),
            r#"{"A":"x","a":{"y":[true,false],"z":null},"b":1}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units_not_utf8_bytes() {
        // U+1F600 is D83D DE00 in UTF-16, below U+FF21; in UTF-8 it sorts above it.
        let v = json!({"\u{ff21}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(c(v), "{\"a\":3,\"\u{1f600}\":2,\"\u{ff21}\":1}");
    }

    #[test]
    fn escapes_exactly_as_rfc8785() {
        let s = "q\"b\\ \u{8}\u{c}\n\r\t \u{0}\u{1f} \u{7f} / é — 😀";
        assert_eq!(
            c(json!(s)),
            "\"q\\\"b\\\\ \\b\\f\\n\\r\\t \\u0000\\u001f \u{7f} / é — 😀\""
        );
    }

    #[test]
    fn integers_within_2_pow_53() {
        assert_eq!(c(json!(0)), "0");
        assert_eq!(c(json!(-17)), "-17");
        assert_eq!(c(json!(9_007_199_254_740_992u64)), "9007199254740992");
        assert_eq!(c(json!(-9_007_199_254_740_992i64)), "-9007199254740992");
        assert!(canonical_json(&json!(9_007_199_254_740_993u64)).is_err());
        assert!(canonical_json(&json!(-9_007_199_254_740_993i64)).is_err());
        assert!(canonical_json(&json!(u64::MAX)).is_err());
    }

    #[test]
    fn floats_are_refused_with_their_path() {
        let e = canonical_json(&json!({"d": {"rate": 0.312}})).unwrap_err();
        assert!(e.0.contains("$.d.rate"), "{e}");
        assert!(canonical_json(&json!([1.0])).is_err());
        let parsed: Value = serde_json::from_str("2.0").unwrap();
        assert!(canonical_json(&parsed).is_err());
    }
}
