//! A sparse index of items that fall due at a time (orders whose payment
//! window closes, credits whose holding period ends), spread over
//! [`SHARDS`] partition keys so that a flash sale's writes do not all land
//! on one index partition. The sweeps read every shard up to "now".

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

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

/// One query of every shard of a due index: its key condition on `:shard`
/// (and the sort key), the values it names, what DynamoDB filters out, what
/// the caller keeps, and when a shard has given enough.
pub struct ShardQuery<'a> {
    pub key_condition: &'a str,
    pub values: Vec<(&'static str, AttributeValue)>,
    pub filter: Option<&'a str>,
    /// Items the caller wants of those DynamoDB returns (all when `None`).
    pub keep: Option<&'a (dyn Fn(&Item) -> bool + Sync)>,
    /// A shard stops paging once it has given this many kept items.
    pub enough: Option<usize>,
    /// DynamoDB's page size (its default when `None`).
    pub page: Option<i32>,
}

impl DueIndex<'_> {
    /// Every item due at or before `until` (eventually consistent: whoever
    /// acts on an item re-checks its conditions).
    pub async fn due(&self, client: &Client, until: &str) -> Result<Vec<Item>, DbError> {
        let condition = format!(
            "{} = :shard AND {} <= :until",
            self.shard_attribute, self.due_attribute
        );
        self.query(
            client,
            &ShardQuery {
                key_condition: &condition,
                values: vec![(":until", s(until))],
                filter: None,
                keep: None,
                enough: None,
                page: None,
            },
        )
        .await
    }

    /// Runs `query` on every shard at once (the shards are independent: one
    /// round trip's wait, not [`SHARDS`]), each paged until it ends or has
    /// given enough; the items kept, shard by shard.
    pub async fn query(
        &self,
        client: &Client,
        query: &ShardQuery<'_>,
    ) -> Result<Vec<Item>, DbError> {
        let shards = (0..SHARDS).map(|shard| self.query_shard(client, query, shard));
        Ok(futures_util::future::try_join_all(shards)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn query_shard(
        &self,
        client: &Client,
        query: &ShardQuery<'_>,
        shard: u32,
    ) -> Result<Vec<Item>, DbError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let mut request = client
                .query()
                .table_name(self.table)
                .index_name(self.index)
                .key_condition_expression(query.key_condition)
                .expression_attribute_values(":shard", s(&shard.to_string()))
                .set_filter_expression(query.filter.map(str::to_owned))
                .set_limit(query.page)
                .set_exclusive_start_key(start);
            for (name, value) in &query.values {
                request = request.expression_attribute_values(*name, value.clone());
            }
            let out = request.send().await?;
            let items = out.items.unwrap_or_default().into_iter();
            match query.keep {
                Some(keep) => found.extend(items.filter(|item| keep(item))),
                None => found.extend(items),
            }
            start = out.last_evaluated_key;
            if start.is_none() || query.enough.is_some_and(|enough| found.len() >= enough) {
                return Ok(found);
            }
        }
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
