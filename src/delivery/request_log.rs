//! The request log ("where is my event?"): the last `storage.request_log` requests of
//! each destination — when it was sent, how many events it carried, the HTTP status, the
//! latency, what the answer meant ([`RequestOutcome`]), the platform's request id and
//! the first KiB of its answer — kept in the store (`request_log` table) so it survives
//! restarts, and read by `GET /v1/destinations/{id}/requests`.
//!
//! Rows ride on the settlement commits the worker makes anyway (one
//! [`crate::store::DeliveryOp::RequestLog`] per answered request, beside its outcome
//! record), never on a commit of their own; the writer numbers them per destination
//! (append-like keys) and deletes the oldest beyond the limit in the same commit. A
//! request that could not be built (nothing was sent) is not in it.
//!
//! What an excerpt never holds:
//! - a credential of the destination or a plaintext identifier of the request: the
//!   answer is redacted ([`crate::platforms::redact`], the DLQ's rule) before anything
//!   of it is cut, so no half of a secret survives a cut either;
//! - a hashed identifier: every run of [`HASH_HEX`] or more hex digits (a SHA-256 as
//!   platforms take identifiers, or several run together) becomes `[hashed]`, over the
//!   whole answer before it is cut, so a hash the cut would split is masked too.
//!   Shorter runs stay: request and trace ids, which a platform's support asks for, are
//!   often 16–32 hex digits, and no identifier sluice sends is that short.

use serde_json::{Value, json};

use crate::clock::rfc3339_ms;
use crate::platforms::{Class, Verdict};
use crate::store::codec::{RequestOutcome, RequestRecord};
use crate::store::{Store, StoreError};

/// Bytes of an answer an excerpt keeps.
pub const EXCERPT_MAX: usize = 1024;
/// Hex digits of a SHA-256: runs this long or longer are masked.
pub const HASH_HEX: usize = 64;

/// What an answer to a request of `n` events means, as the log shows it. `answered`:
/// the platform answered (else a transport error or a timeout, or a failed token
/// refresh).
pub fn outcome(verdict: &Verdict, answered: bool, n: usize) -> RequestOutcome {
    match verdict {
        Verdict::Whole(Class::Retryable) if !answered => RequestOutcome::Transport,
        Verdict::Whole(Class::Delivered) => RequestOutcome::Delivered,
        Verdict::Whole(Class::Retryable) => RequestOutcome::Retryable,
        Verdict::Whole(Class::Throttled { .. }) => RequestOutcome::Throttled,
        Verdict::Whole(Class::Auth) => RequestOutcome::Auth,
        Verdict::Whole(Class::Gone(_)) => RequestOutcome::Gone,
        Verdict::Whole(Class::Rejected) | Verdict::Bisect => RequestOutcome::Rejected,
        // Rows named outside the request reject it whole (as settling does); rows
        // naming every event too.
        Verdict::RowsRejected(rows) => {
            if !rows.iter().any(|r| *r < n) || (0..n).all(|i| rows.contains(&i)) {
                RequestOutcome::Rejected
            } else {
                RequestOutcome::Partial
            }
        }
        Verdict::PerRow(classes) => {
            if classes.iter().all(|c| *c == Class::Delivered) {
                RequestOutcome::Delivered
            } else if classes.len() >= n && classes.iter().all(|c| *c == Class::Rejected) {
                RequestOutcome::Rejected
            } else {
                RequestOutcome::Partial
            }
        }
    }
}

/// The excerpt of an answer already redacted: hex runs of [`HASH_HEX`] digits or more
/// masked as `[hashed]`, then at most [`EXCERPT_MAX`] bytes (whole characters). Reads
/// only as much of `text` as the excerpt needs.
pub fn excerpt(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(EXCERPT_MAX.min(text.len()) + 8);
    let mut i = 0;
    while i < b.len() && out.len() < EXCERPT_MAX {
        if b[i].is_ascii_hexdigit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            let run = &text[start..i];
            out.push_str(if run.len() >= HASH_HEX {
                "[hashed]"
            } else {
                run
            });
        } else {
            let c = text[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(c);
            i += c.len_utf8();
        }
    }
    if out.len() > EXCERPT_MAX {
        let mut cut = EXCERPT_MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// One row as the API shows it.
pub fn row_json(n: u64, r: &RequestRecord) -> Value {
    json!({
        "seq": n,
        "sent_at": rfc3339_ms(r.sent_ms),
        "events": r.events,
        "status": r.status,
        "latency_ms": r.latency_ms,
        "outcome": r.outcome.name(),
        "request_id": r.request_id,
        "response_excerpt": r.excerpt,
    })
}

/// A destination's rows numbered below `before`, newest first, at most `limit`; and
/// the cursor of the next page.
pub fn page(
    store: &Store,
    dest: &str,
    before: u64,
    limit: usize,
) -> Result<(Vec<Value>, Option<String>), StoreError> {
    let (rows, next) = store.view()?.requests(dest, before, limit)?;
    let rows = rows.iter().map(|(n, r)| row_json(*n, r)).collect();
    Ok((rows, next.map(|n| n.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_masked_short_hex_kept() {
        let h = "a".repeat(63) + "b";
        let upper = h.to_ascii_uppercase();
        let text = format!(
            r#"{{"em":["{h}"],"ph":"{upper}","two":"{h}{h}","trace":"0123456789abcdef0123456789abcdef","n":42}}"#
        );
        let e = excerpt(&text);
        assert_eq!(
            e,
            r#"{"em":["[hashed]"],"ph":"[hashed]","two":"[hashed]","trace":"0123456789abcdef0123456789abcdef","n":42}"#
        );
        // 63 digits are not a SHA-256.
        let short = "f".repeat(63);
        assert_eq!(excerpt(&short), short);
        // A run inside a longer token is masked too.
        assert_eq!(excerpt(&format!("x{h}y")), "x[hashed]y");
    }

    #[test]
    fn excerpt_is_cut_after_masking() {
        // Hashes fill the first KiB of the answer: masked they shrink, and the hash the
        // cut of the raw answer would have split is still masked whole.
        let h = "c".repeat(64);
        let text = vec![h.as_str(); 200].join(",");
        let e = excerpt(&text);
        assert!(e.len() <= EXCERPT_MAX);
        assert!(!e.contains('c'), "{e}");
        assert!(e.starts_with("[hashed],[hashed]"));
        // Whole characters only.
        let e = excerpt(&"é".repeat(2000));
        assert!(e.len() <= EXCERPT_MAX && e.len() >= EXCERPT_MAX - 1);
        assert!(e.chars().all(|c| c == 'é'));
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn outcomes() {
        use RequestOutcome as O;
        let o = |v: Verdict, answered| outcome(&v, answered, 3);
        assert_eq!(o(Verdict::Whole(Class::Delivered), true), O::Delivered);
        assert_eq!(o(Verdict::Whole(Class::Retryable), true), O::Retryable);
        assert_eq!(o(Verdict::Whole(Class::Retryable), false), O::Transport);
        assert_eq!(o(Verdict::Whole(Class::Auth), false), O::Auth);
        assert_eq!(
            o(Verdict::Whole(Class::Throttled { hold_ms: None }), true),
            O::Throttled
        );
        assert_eq!(
            o(Verdict::Whole(Class::Gone("endpoint_gone")), true),
            O::Gone
        );
        assert_eq!(o(Verdict::Whole(Class::Rejected), true), O::Rejected);
        assert_eq!(o(Verdict::Bisect, true), O::Rejected);
        assert_eq!(o(Verdict::RowsRejected(vec![1]), true), O::Partial);
        assert_eq!(o(Verdict::RowsRejected(vec![7]), true), O::Rejected);
        assert_eq!(o(Verdict::RowsRejected(vec![0, 1, 2]), true), O::Rejected);
        assert_eq!(
            o(Verdict::PerRow(vec![Class::Delivered; 3]), true),
            O::Delivered
        );
        assert_eq!(
            o(
                Verdict::PerRow(vec![Class::Delivered, Class::Rejected, Class::Delivered]),
                true
            ),
            O::Partial
        );
        assert_eq!(
            o(Verdict::PerRow(vec![Class::Rejected; 3]), true),
            O::Rejected
        );
    }
}
