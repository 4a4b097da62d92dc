//! Sealing of plaintext identifiers at rest (SPEC §2): XChaCha20-Poly1305 under the
//! 32-byte PII key, a random 24-byte nonce per seal, and the event's key as associated
//! data, so a sealed value only opens for the event it was written for.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    #[error("sealed value is too short ({0} bytes)")]
    Truncated(usize),
    #[error("sealed value does not open: wrong key, wrong associated data, or tampered")]
    Unauthentic,
}

/// Encrypts `plaintext` bound to `aad`; returns `nonce ‖ ciphertext ‖ tag`.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    // The OS RNG failing is not recoverable here, and a fixed nonce would be unsafe.
    getrandom::getrandom(&mut nonce).expect("OS random number generator unavailable");
    let cipher = XChaCha20Poly1305::new(key.into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Encryption fails only past XChaCha20's ~256 GiB message limit.
        .expect("plaintext within XChaCha20-Poly1305 limits");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Decrypts what [`seal`] produced with the same key and `aad`.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, PiiError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(PiiError::Truncated(sealed.len()));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| PiiError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn roundtrip() {
        let sealed = seal(&KEY, b"ws:Purchase:e1", b"test@example.com");
        assert_eq!(sealed.len(), NONCE_LEN + 16 + TAG_LEN);
        assert_eq!(
            open(&KEY, b"ws:Purchase:e1", &sealed).as_deref(),
            Ok(&b"test@example.com"[..])
        );
    }

    #[test]
    fn empty_plaintext_roundtrips() {
        let sealed = seal(&KEY, b"a", b"");
        assert_eq!(open(&KEY, b"a", &sealed), Ok(Vec::new()));
    }

    #[test]
    fn wrong_aad_fails() {
        let sealed = seal(&KEY, b"ws:Purchase:e1", b"+16505551234");
        assert_eq!(
            open(&KEY, b"ws:Purchase:e2", &sealed),
            Err(PiiError::Unauthentic)
        );
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = seal(&KEY, b"a", b"x");
        assert_eq!(open(&[8; 32], b"a", &sealed), Err(PiiError::Unauthentic));
    }

    #[test]
    fn tampered_byte_fails() {
        let sealed = seal(&KEY, b"a", b"test@example.com");
        for i in [0, NONCE_LEN, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(open(&KEY, b"a", &t), Err(PiiError::Unauthentic), "byte {i}");
        }
    }

    #[test]
    fn truncated_fails() {
        let sealed = seal(&KEY, b"a", b"x");
        assert_eq!(
            open(&KEY, b"a", &sealed[..NONCE_LEN + TAG_LEN - 1]),
            Err(PiiError::Truncated(NONCE_LEN + TAG_LEN - 1))
        );
    }

    #[test]
    fn two_seals_differ() {
        let a = seal(&KEY, b"a", b"test@example.com");
        let b = seal(&KEY, b"a", b"test@example.com");
        assert_ne!(a, b);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }
}
