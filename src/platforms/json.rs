//! Writing request bodies as bytes: JSON strings, numbers and hashes appended to a
//! buffer, objects built member by member, a member put first in a built body. The
//! adapters build their bodies with these rather than through `serde_json::Value`
//! (a batch of 1,000 events is one buffer, not a tree of maps).

/// Puts `"key":<value>` first in a body that is a JSON object (`value` is raw JSON):
/// how a test send adds its marker to a body an adapter built. A body that is no JSON
/// object is left as it is.
pub fn insert_top_level(body: &mut Vec<u8>, key: &str, value: &[u8]) {
    if body.first() != Some(&b'{') {
        return;
    }
    let mut member = Vec::with_capacity(key.len() + value.len() + 4);
    write_json_str(&mut member, key);
    member.push(b':');
    member.extend_from_slice(value);
    if body
        .get(1..)
        .is_some_and(|rest| rest.trim_ascii_start().first() != Some(&b'}'))
    {
        member.push(b',');
    }
    body.splice(1..1, member);
}

/// Appends `s` as a JSON string.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    write_json(out, s);
}

/// Appends `n` as a JSON number.
pub fn write_json_i64(out: &mut Vec<u8>, n: i64) {
    write_json(out, &n);
}

/// Appends any serializable value, compactly.
pub fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing into a Vec cannot fail; a value that cannot be serialized (never the
    // case for the strings, numbers and `Value`s written here) would leave it short.
    let _ = v.serialize(&mut serde_json::Serializer::new(out));
}

/// Appends a hash as a JSON string of lowercase hex (what [`super::hex_hash`] gives).
pub fn write_json_hex(out: &mut Vec<u8>, h: &[u8; 32]) {
    let mut hex = [0u8; 64];
    // Cannot fail: the buffer is exactly twice the input.
    let _ = hex::encode_to_slice(h, &mut hex);
    out.push(b'"');
    out.extend_from_slice(&hex);
    out.push(b'"');
}

/// Appends `["<hex>"]`.
pub fn write_json_hex_array(out: &mut Vec<u8>, h: &[u8; 32]) {
    out.push(b'[');
    write_json_hex(out, h);
    out.push(b']');
}

/// Writes the members of one JSON object: `{` on creation, a comma before every member
/// but the first, `}` on [`JsonObject::end`]. Keys are written as given (they are the
/// adapters' own constants, which need no escaping) and must come in sorted order.
pub struct JsonObject<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> JsonObject<'o> {
    pub fn begin(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    /// Writes `"key":` (after a comma when needed) and returns the buffer for the value.
    pub fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.key_parts(&[key])
    }

    /// [`JsonObject::key`] for a key given in parts (written one after the other).
    pub fn key_parts(&mut self, parts: &[&str]) -> &mut Vec<u8> {
        debug_assert!(
            parts
                .iter()
                .all(|k| !k.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')),
            "object keys written raw must need no escaping"
        );
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        for k in parts {
            self.out.extend_from_slice(k.as_bytes());
        }
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// `"key":"<escaped value>"`.
    pub fn str(&mut self, key: &str, v: &str) {
        write_json_str(self.key(key), v);
    }

    /// `"key":<n>`.
    pub fn i64(&mut self, key: &str, n: i64) {
        write_json_i64(self.key(key), n);
    }

    /// `"key":<raw JSON>`.
    pub fn raw(&mut self, key: &str, raw: &str) {
        self.key(key).extend_from_slice(raw.as_bytes());
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}
