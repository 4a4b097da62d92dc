//! TEMPORARY stub until the validation branch lands.
use super::event::{EventError, NormalizedEvent};
pub struct ValidateCtx<'a> {
    pub now_secs: i64,
    pub default_country_code: &'a str,
    pub destination_ids: &'a [String],
    pub keep_plaintext: bool,
}
pub fn validate_event(
    _v: &serde_json::Value,
    _ctx: &ValidateCtx,
) -> Result<NormalizedEvent, EventError> {
    Err(EventError::new("invalid_field", "stub"))
}
pub fn event_id_of(v: &serde_json::Value) -> Option<String> {
    v.get("event_id")?.as_str().map(str::to_string)
}
