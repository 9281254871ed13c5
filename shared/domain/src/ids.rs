//! Server-generated ids: ULIDs, which sort by creation time.

pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Whether `id` could be one of our ids at all (26-character ULIDs; up to
/// 64 letters and digits are accepted for ids made by older releases);
/// anything else is answered as not found without a database read.
pub fn plausible_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}
