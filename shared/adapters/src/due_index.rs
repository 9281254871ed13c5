//! A sparse index of items that fall due at a time (orders whose payment
//! window closes, credits whose holding period ends), spread over
//! [`SHARDS`] partition keys so that a flash sale's writes do not all land
//! on one index partition. The sweeps read every shard up to "now".

use aws_sdk_dynamodb::Client;

use crate::db::{DbError, Item, s};

/// Index partitions a due index is spread over.
pub const SHARDS: u32 = 8;

/// The shard an item belongs to: a stable hash of its id.
pub fn shard_of(id: &str) -> String {
    let sum: u32 = id.bytes().map(u32::from).sum();
    (sum % SHARDS).to_string()
}

/// One due index: its table, its name, and the attributes of its key.
pub struct DueIndex<'a> {
    pub table: &'a str,
    pub index: &'a str,
    /// The partition key, holding [`shard_of`] the item's id.
    pub shard_attribute: &'static str,
    /// The sort key: when the item falls due (RFC 3339, sorts as time).
    pub due_attribute: &'static str,
}

impl DueIndex<'_> {
    /// Every item due at or before `until`, shard by shard (eventually
    /// consistent: whoever acts on an item re-checks its conditions).
    pub async fn due(&self, client: &Client, until: &str) -> Result<Vec<Item>, DbError> {
        let condition = format!(
            "{} = :shard AND {} <= :until",
            self.shard_attribute, self.due_attribute
        );
        let mut found = Vec::new();
        for shard in 0..SHARDS {
            let mut start = None;
            loop {
                let out = client
                    .query()
                    .table_name(self.table)
                    .index_name(self.index)
                    .key_condition_expression(&condition)
                    .expression_attribute_values(":shard", s(&shard.to_string()))
                    .expression_attribute_values(":until", s(until))
                    .set_exclusive_start_key(start)
                    .send()
                    .await?;
                found.extend(out.items.unwrap_or_default());
                start = out.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_spread_and_stable() {
        let shards: std::collections::HashSet<String> =
            (0..200).map(|_| shard_of(&domain::ids::new_id())).collect();
        assert_eq!(shards.len(), SHARDS as usize);
        assert_eq!(shard_of("abc"), shard_of("abc"));
    }
}
