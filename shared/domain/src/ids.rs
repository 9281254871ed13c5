//! Server-generated ids: ULIDs, which sort by creation time.

pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}
