//! The shape of an event after intake validation: what the store keeps and what
//! delivery reads. Identifiers are already normalized and hashed in every variant.

use serde::{Deserialize, Serialize};

/// A hash variant of an identifier (platforms.md, "Identifier variants").
/// Stored by discriminant: never reorder, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Variant {
    Email,
    EmailGoogle,
    EmailReddit,
    PhoneDigits,
    PhoneE164,
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

impl Variant {
    pub const ALL: [Variant; 14] = [
        Variant::Email,
        Variant::EmailGoogle,
        Variant::EmailReddit,
        Variant::PhoneDigits,
        Variant::PhoneE164,
        Variant::FirstName,
        Variant::LastName,
        Variant::City,
        Variant::State,
        Variant::Zip,
        Variant::Country,
        Variant::Gender,
        Variant::DateOfBirth,
        Variant::ExternalId,
    ];

    /// The variant's name as in docs/platforms.md and `tests/data/identifiers.json`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Email => "email",
            Variant::EmailGoogle => "email_google",
            Variant::EmailReddit => "email_reddit",
            Variant::PhoneDigits => "phone_digits",
            Variant::PhoneE164 => "phone_e164",
            Variant::FirstName => "first_name",
            Variant::LastName => "last_name",
            Variant::City => "city",
            Variant::State => "state",
            Variant::Zip => "zip",
            Variant::Country => "country",
            Variant::Gender => "gender",
            Variant::DateOfBirth => "date_of_birth",
            Variant::ExternalId => "external_id",
        }
    }
}

/// `user_data` values kept as given: platforms need them in the clear.
/// Stored by discriminant: never reorder, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClearField {
    ClientIpAddress,
    ClientUserAgent,
    Fbc,
    Fbp,
    Ttclid,
    Ttp,
    Gclid,
    Gbraid,
    Wbraid,
    LiFatId,
    Epik,
    Sccid,
    RdtCid,
    Twclid,
    Msclkid,
    Tblci,
    ObClickId,
}

impl ClearField {
    pub const ALL: [ClearField; 17] = [
        ClearField::ClientIpAddress,
        ClearField::ClientUserAgent,
        ClearField::Fbc,
        ClearField::Fbp,
        ClearField::Ttclid,
        ClearField::Ttp,
        ClearField::Gclid,
        ClearField::Gbraid,
        ClearField::Wbraid,
        ClearField::LiFatId,
        ClearField::Epik,
        ClearField::Sccid,
        ClearField::RdtCid,
        ClearField::Twclid,
        ClearField::Msclkid,
        ClearField::Tblci,
        ClearField::ObClickId,
    ];

    /// The `user_data` key.
    pub fn name(self) -> &'static str {
        match self {
            ClearField::ClientIpAddress => "client_ip_address",
            ClearField::ClientUserAgent => "client_user_agent",
            ClearField::Fbc => "fbc",
            ClearField::Fbp => "fbp",
            ClearField::Ttclid => "ttclid",
            ClearField::Ttp => "ttp",
            ClearField::Gclid => "gclid",
            ClearField::Gbraid => "gbraid",
            ClearField::Wbraid => "wbraid",
            ClearField::LiFatId => "li_fat_id",
            ClearField::Epik => "epik",
            ClearField::Sccid => "sccid",
            ClearField::RdtCid => "rdt_cid",
            ClearField::Twclid => "twclid",
            ClearField::Msclkid => "msclkid",
            ClearField::Tblci => "tblci",
            ClearField::ObClickId => "ob_click_id",
        }
    }
}

/// Plaintext identifiers kept (sealed) only for workspaces with a Klaviyo destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PlainField {
    /// Trimmed, lowercased.
    Email,
    /// E.164 (`+` and digits).
    PhoneE164,
}

/// One validated event, ready to store. Field order is the stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    pub event_id: String,
    pub event_name: String,
    /// Unix seconds, as sent.
    pub event_time: i64,
    pub action_source: Option<String>,
    pub event_source_url: Option<String>,
    /// Every variant of every identifier given, sorted by variant.
    pub hashed: Vec<(Variant, [u8; 32])>,
    /// IP, user agent and click ids as given, sorted by field.
    pub clear: Vec<(ClearField, String)>,
    /// Plaintext email/phone, only when the workspace needs them (sealed before storing).
    pub plaintext: Vec<(PlainField, String)>,
    /// `custom_data` as raw JSON bytes (an object), if given.
    #[serde(with = "serde_bytes")]
    pub custom_data: Vec<u8>,
    /// Destination ids this event is restricted to; empty means all.
    pub destinations: Vec<String>,
}

impl NormalizedEvent {
    pub fn hash_of(&self, v: Variant) -> Option<&[u8; 32]> {
        self.hashed.iter().find(|(k, _)| *k == v).map(|(_, h)| h)
    }
}

/// A per-event rejection: SPEC §2's code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub code: &'static str,
    pub message: String,
}

impl EventError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
