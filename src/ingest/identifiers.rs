//! Identifier normalization and SHA-256 hashing, one hash per variant of the table in
//! docs/platforms.md ("Identifier variants"). `tests/data/identifiers.json` is the
//! reference: where that table is terse, the vectors decide.
//!
//! Hot path: [`normalize_with`] reuses a caller's scratch buffer and reports each variant
//! through a callback, so validation allocates nothing per identifier; [`normalize`] is
//! the owned, convenient form.

use sha2::{Digest, Sha256};

use crate::event::Variant;

/// A `user_data` key that is an identifier (normalized and hashed at intake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdField {
    Email,
    Phone,
    FirstName,
    LastName,
    City,
    State,
    Zip,
    Country,
    Gender,
    DateOfBirth,
    ExternalId,
}

impl IdField {
    /// Every identifier field, in `user_data` key order (which is also variant order).
    pub const ALL: [IdField; 11] = [
        IdField::Email,
        IdField::Phone,
        IdField::FirstName,
        IdField::LastName,
        IdField::City,
        IdField::State,
        IdField::Zip,
        IdField::Country,
        IdField::Gender,
        IdField::DateOfBirth,
        IdField::ExternalId,
    ];

    /// The field for a `user_data` key, if that key is an identifier.
    pub fn from_key(key: &str) -> Option<IdField> {
        Some(match key {
            "email" => IdField::Email,
            "phone" => IdField::Phone,
            "first_name" => IdField::FirstName,
            "last_name" => IdField::LastName,
            "city" => IdField::City,
            "state" => IdField::State,
            "zip" => IdField::Zip,
            "country" => IdField::Country,
            "gender" => IdField::Gender,
            "date_of_birth" => IdField::DateOfBirth,
            "external_id" => IdField::ExternalId,
            _ => return None,
        })
    }

    /// The `user_data` key.
    pub fn key(self) -> &'static str {
        match self {
            IdField::Email => "email",
            IdField::Phone => "phone",
            IdField::FirstName => "first_name",
            IdField::LastName => "last_name",
            IdField::City => "city",
            IdField::State => "state",
            IdField::Zip => "zip",
            IdField::Country => "country",
            IdField::Gender => "gender",
            IdField::DateOfBirth => "date_of_birth",
            IdField::ExternalId => "external_id",
        }
    }

    /// The hash variants of this field, in variant order.
    pub fn variants(self) -> &'static [Variant] {
        match self {
            IdField::Email => &[Variant::Email, Variant::EmailGoogle, Variant::EmailReddit],
            IdField::Phone => &[Variant::PhoneDigits, Variant::PhoneE164],
            IdField::FirstName => &[Variant::FirstName],
            IdField::LastName => &[Variant::LastName],
            IdField::City => &[Variant::City],
            IdField::State => &[Variant::State],
            IdField::Zip => &[Variant::Zip],
            IdField::Country => &[Variant::Country],
            IdField::Gender => &[Variant::Gender],
            IdField::DateOfBirth => &[Variant::DateOfBirth],
            IdField::ExternalId => &[Variant::ExternalId],
        }
    }
}

/// One variant of one identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub variant: Variant,
    /// The string that was hashed; `None` when the input was already 64 lowercase hex
    /// (a hash, used as is).
    pub normalized: Option<String>,
    pub sha256: [u8; 32],
}

/// Normalizes `raw` for every variant of `field` and hashes each.
///
/// `default_country_code` is prepended to national phone numbers; `country` is the
/// event's `user_data.country` as given (the zip rule depends on it). The error is a
/// human reason for `invalid_field`; it never contains the value.
pub fn normalize(
    field: IdField,
    raw: &str,
    default_country_code: &str,
    country: Option<&str>,
) -> Result<Vec<Normalized>, String> {
    let mut out = Vec::with_capacity(field.variants().len());
    let mut scratch = String::new();
    normalize_with(
        field,
        raw,
        default_country_code,
        country,
        &mut scratch,
        |variant, normalized, sha256| {
            out.push(Normalized {
                variant,
                normalized: normalized.map(str::to_owned),
                sha256,
            });
        },
    )
    .map_err(str::to_owned)?;
    Ok(out)
}

/// [`normalize`] without allocating: `scratch` is reused (its contents are overwritten)
/// and `emit(variant, normalized, sha256)` is called once per variant, in variant order.
/// `normalized` is `None` for a value that was already a 64-hex hash. On error nothing
/// has been emitted.
pub fn normalize_with(
    field: IdField,
    raw: &str,
    default_country_code: &str,
    country: Option<&str>,
    scratch: &mut String,
    mut emit: impl FnMut(Variant, Option<&str>, [u8; 32]),
) -> Result<(), &'static str> {
    let value = raw.trim();
    if value.is_empty() {
        return Err("is empty");
    }
    if let Some(hash) = parse_hex_hash(value) {
        for &variant in field.variants() {
            emit(variant, None, hash);
        }
        return Ok(());
    }
    scratch.clear();
    match field {
        IdField::Email => return email(value, scratch, emit),
        IdField::Phone => return phone(value, default_country_code, scratch, emit),
        IdField::FirstName | IdField::LastName | IdField::ExternalId => {
            push_lowercase(scratch, value);
        }
        IdField::City => {
            push_lowercase_letters(scratch, value);
            if scratch.is_empty() {
                return Err("has no letters");
            }
        }
        IdField::State => {
            push_lowercase_letters(scratch, value);
            if scratch.is_empty() {
                return Err("has no letters");
            }
            if let Some(code) = us_state_code(scratch) {
                scratch.clear();
                scratch.push_str(code);
            }
        }
        IdField::Zip => zip(value, country, scratch)?,
        IdField::Country => {
            let b = value.as_bytes();
            if b.len() != 2 || !b.iter().all(u8::is_ascii_alphabetic) {
                return Err("is not an ISO 3166 alpha-2 country code (two letters)");
            }
            push_lowercase(scratch, value);
        }
        IdField::Gender => {
            let g = if value.eq_ignore_ascii_case("f") || value.eq_ignore_ascii_case("female") {
                "f"
            } else if value.eq_ignore_ascii_case("m") || value.eq_ignore_ascii_case("male") {
                "m"
            } else {
                return Err("is not one of f, m, female, male");
            };
            scratch.push_str(g);
        }
        IdField::DateOfBirth => date_of_birth(value, scratch)?,
    }
    let variant = field.variants()[0];
    emit(variant, Some(scratch), sha256(scratch));
    Ok(())
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The 32 bytes of a value that is exactly 64 lowercase hex digits.
fn parse_hex_hash(value: &str) -> Option<[u8; 32]> {
    let b = value.as_bytes();
    if b.len() != 64 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(b, &mut out).ok()?;
    Some(out)
}

fn push_lowercase(buf: &mut String, s: &str) {
    if s.is_ascii() {
        buf.extend(s.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        buf.extend(s.chars().flat_map(char::to_lowercase));
    }
}

fn push_lowercase_letters(buf: &mut String, s: &str) {
    buf.extend(
        s.chars()
            .filter(|c| c.is_alphabetic())
            .flat_map(char::to_lowercase),
    );
}

/// email: trim, lowercase. email_google: also drop dots in the local part for
/// gmail.com / googlemail.com. email_reddit: drop dots and any `+tag` in the local part
/// (every domain).
fn email(
    value: &str,
    scratch: &mut String,
    mut emit: impl FnMut(Variant, Option<&str>, [u8; 32]),
) -> Result<(), &'static str> {
    push_lowercase(scratch, value);
    let Some(at) = scratch.rfind('@') else {
        return Err("is not an email address (no @)");
    };
    if at == 0 || at + 1 == scratch.len() {
        return Err("is not an email address (empty local part or domain)");
    }
    let plain_hash = sha256(scratch);
    emit(Variant::Email, Some(scratch), plain_hash);

    let local = &scratch[..at];
    let has_dot = local.contains('.');
    let has_tag = local.contains('+');
    let is_gmail = matches!(&scratch[at..], "@gmail.com" | "@googlemail.com");
    if is_gmail && has_dot {
        emit_rewritten(scratch, at, false, Variant::EmailGoogle, &mut emit);
    } else {
        emit(Variant::EmailGoogle, Some(scratch), plain_hash);
    }
    if has_dot || has_tag {
        emit_rewritten(scratch, at, true, Variant::EmailReddit, &mut emit);
    } else {
        emit(Variant::EmailReddit, Some(scratch), plain_hash);
    }
    Ok(())
}

/// Emits `variant` for the email in `scratch` with its local part (`..at`) stripped of
/// dots (and of any `+tag` when `drop_tag`). The rewritten form is built after the
/// email in the same buffer, then cut off again.
fn emit_rewritten(
    scratch: &mut String,
    at: usize,
    drop_tag: bool,
    variant: Variant,
    emit: &mut impl FnMut(Variant, Option<&str>, [u8; 32]),
) {
    let len = scratch.len();
    push_local_part(scratch, at, drop_tag);
    scratch.extend_from_within(at..len);
    let rewritten = &scratch[len..];
    emit(variant, Some(rewritten), sha256(rewritten));
    scratch.truncate(len);
}

/// Appends `buf[..end]` (an email's local part) without dots, and without any `+tag`
/// when `drop_tag`.
fn push_local_part(buf: &mut String, end: usize, drop_tag: bool) {
    let mut i = 0;
    while let Some(c) = buf[i..end].chars().next() {
        i += c.len_utf8();
        match c {
            '+' if drop_tag => break,
            '.' => {}
            _ => buf.push(c),
        }
    }
}

/// phone_digits: country code and digits; phone_e164: `+` and the same digits. A number
/// starting with `+` or `00` (the international prefix, dropped) is international;
/// anything else is national and gets `default_country_code` prepended.
fn phone(
    value: &str,
    default_country_code: &str,
    scratch: &mut String,
    mut emit: impl FnMut(Variant, Option<&str>, [u8; 32]),
) -> Result<(), &'static str> {
    scratch.push('+');
    let number = if let Some(rest) = value.strip_prefix('+') {
        rest
    } else if let Some(rest) = value.strip_prefix("00") {
        rest
    } else {
        scratch.extend(default_country_code.chars().filter(char::is_ascii_digit));
        value
    };
    let before = scratch.len();
    scratch.extend(number.chars().filter(char::is_ascii_digit));
    if scratch.len() == before {
        return Err("has no digits");
    }
    let e164 = scratch.as_str();
    let digits_only = &e164[1..];
    emit(Variant::PhoneDigits, Some(digits_only), sha256(digits_only));
    emit(Variant::PhoneE164, Some(e164), sha256(e164));
    Ok(())
}

/// zip: lowercase, no whitespace; when `country` is US, or the zip is 5 digits with an
/// optional `-4` suffix: the first 5 digits.
fn zip(value: &str, country: Option<&str>, scratch: &mut String) -> Result<(), &'static str> {
    push_lowercase(scratch, value);
    scratch.retain(|c| !c.is_whitespace());
    let b = scratch.as_bytes();
    let us_shaped = (b.len() == 5 || (b.len() == 10 && b[5] == b'-'))
        && b[..5].iter().all(u8::is_ascii_digit)
        && b[b.len().min(6)..].iter().all(u8::is_ascii_digit);
    let us = country.is_some_and(|c| c.trim().eq_ignore_ascii_case("us"));
    if us_shaped {
        scratch.truncate(5);
    } else if us && scratch.bytes().any(|c| c.is_ascii_digit()) {
        let mut n = 0;
        scratch.retain(|c| {
            let keep = c.is_ascii_digit() && n < 5;
            n += usize::from(keep);
            keep
        });
    }
    if scratch.is_empty() {
        return Err("is empty");
    }
    Ok(())
}

/// date_of_birth: `YYYY-MM-DD` or `YYYYMMDD`, a real calendar date → `YYYYMMDD`.
fn date_of_birth(value: &str, scratch: &mut String) -> Result<(), &'static str> {
    const BAD: &str = "is not a date as YYYY-MM-DD or YYYYMMDD";
    let b = value.as_bytes();
    let digits_ok = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (y, m, d) = match b.len() {
        10 if b[4] == b'-' && b[7] == b'-' => (&b[..4], &b[5..7], &b[8..]),
        8 => (&b[..4], &b[4..6], &b[6..]),
        _ => return Err(BAD),
    };
    if !(digits_ok(y) && digits_ok(m) && digits_ok(d)) {
        return Err(BAD);
    }
    let num = |s: &[u8]| s.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
    let month = u8::try_from(num(m))
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or("is not a real date")?;
    let year = i32::try_from(num(y)).map_err(|_| "is not a real date")?;
    let day = u8::try_from(num(d)).map_err(|_| "is not a real date")?;
    time::Date::from_calendar_date(year, month, day).map_err(|_| "is not a real date")?;
    for part in [y, m, d] {
        scratch.extend(part.iter().map(|&c| char::from(c)));
    }
    Ok(())
}

/// The two-letter code of a US state (or DC) given by its full name, lowercase letters
/// only (`newyork` → `ny`).
fn us_state_code(name: &str) -> Option<&'static str> {
    if name.len() <= 2 {
        return None;
    }
    const STATES: [(&str, &str); 51] = [
        ("alabama", "al"),
        ("alaska", "ak"),
        ("arizona", "az"),
        ("arkansas", "ar"),
        ("california", "ca"),
        ("colorado", "co"),
        ("connecticut", "ct"),
        ("delaware", "de"),
        ("districtofcolumbia", "dc"),
        ("florida", "fl"),
        ("georgia", "ga"),
        ("hawaii", "hi"),
        ("idaho", "id"),
        ("illinois", "il"),
        ("indiana", "in"),
        ("iowa", "ia"),
        ("kansas", "ks"),
        ("kentucky", "ky"),
        ("louisiana", "la"),
        ("maine", "me"),
        ("maryland", "md"),
        ("massachusetts", "ma"),
        ("michigan", "mi"),
        ("minnesota", "mn"),
        ("mississippi", "ms"),
        ("missouri", "mo"),
        ("montana", "mt"),
        ("nebraska", "ne"),
        ("nevada", "nv"),
        ("newhampshire", "nh"),
        ("newjersey", "nj"),
        ("newmexico", "nm"),
        ("newyork", "ny"),
        ("northcarolina", "nc"),
        ("northdakota", "nd"),
        ("ohio", "oh"),
        ("oklahoma", "ok"),
        ("oregon", "or"),
        ("pennsylvania", "pa"),
        ("rhodeisland", "ri"),
        ("southcarolina", "sc"),
        ("southdakota", "sd"),
        ("tennessee", "tn"),
        ("texas", "tx"),
        ("utah", "ut"),
        ("vermont", "vt"),
        ("virginia", "va"),
        ("washington", "wa"),
        ("westvirginia", "wv"),
        ("wisconsin", "wi"),
        ("wyoming", "wy"),
    ];
    STATES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}
