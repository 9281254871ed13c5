//! The stock shard items of hot products (issue 25; the model is
//! `domain::stock_shards`): shard 0 is the product item itself, shards
//! 1…N−1 live in the stock shards table. Orders move units on the shard
//! they took them from; the catalog sums them.
//!
//! Each shard is a partition key of its own (`shardKey` = `productId#k`),
//! the write-sharding pattern of DynamoDB's guide: shards under one
//! partition key with a sort key would share a partition, and its 1,000
//! write units a second, until DynamoDB chose to split it.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{KeysAndAttributes, Update, builders::UpdateBuilder};
use domain::catalog::Product;
use domain::orders::StockMove;
use domain::stock_shards::{ShardCounters, ShardUnits};

use crate::config::Tables;
use crate::db::{DbError, Read, build_err, n, s};

/// The key of shard `shard` (1…N−1) of a product.
pub fn shard_key(product_id: &str, shard: u32) -> String {
    format!("{product_id}#{shard}")
}

/// Shards 1…`shards`−1 of a product as stored (a shard not yet written is
/// absent and holds nothing): one `BatchGetItem` (N ≤ 64 < its 100 keys).
pub async fn read(
    client: &Client,
    table: &str,
    product_id: &str,
    shards: u32,
    read: Read,
) -> Result<Vec<ShardCounters>, DbError> {
    if shards <= 1 {
        return Ok(Vec::new());
    }
    let keys = (1..shards)
        .map(|k| [("shardKey".to_owned(), s(&shard_key(product_id, k)))].into())
        .collect();
    let keys = KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .consistent_read(read == Read::Consistent)
        .build()
        .map_err(build_err)?;
    let mut found = crate::db::batch_get(client, [(table.to_owned(), keys)].into()).await?;
    found
        .remove(table)
        .unwrap_or_default()
        .into_iter()
        .map(|item| serde_dynamo::from_item(item).map_err(DbError::from))
        .collect()
}

/// The product with its counters summed over all its shards (its own item
/// only when it has one shard: no extra read).
pub async fn with_totals(
    client: &Client,
    table: &str,
    product: Product,
    consistency: Read,
) -> Result<Product, DbError> {
    if product.stock_shards <= 1 {
        return Ok(product);
    }
    let shards = read(
        client,
        table,
        &product.product_id,
        product.stock_shards,
        consistency,
    )
    .await?;
    Ok(product.with_shards(&shards))
}

/// Every shard's orderable stock, index k for shard k: shard 0's from the
/// product item, a shard never written as 0.
pub fn stock_by_shard(product: &Product, shards: &[ShardCounters]) -> Vec<i64> {
    let mut stock = vec![0; product.stock_shards.max(1) as usize];
    stock[0] = product.stock;
    for shard in shards {
        if let Some(slot) = stock
            .get_mut(shard.shard as usize)
            .filter(|_| shard.shard > 0)
        {
            *slot = shard.stock;
        }
    }
    stock
}

/// An update of one shard's item: the product item for shard 0.
pub fn update_of(tables: &Tables, product_id: &str, shard: u32) -> UpdateBuilder {
    if shard == 0 {
        Update::builder()
            .table_name(&tables.products)
            .key("productId", s(product_id))
    } else {
        Update::builder()
            .table_name(&tables.stock_shards)
            .key("shardKey", s(&shard_key(product_id, shard)))
    }
}

/// Moves `units` of a product as `movement` says, each on its own shard and
/// conditional on the source counter holding them (nothing for `Keep`).
/// Orders and refund requests move stock only through this.
pub fn moves(
    tables: &Tables,
    movement: StockMove,
    product_id: &str,
    units: &[ShardUnits],
) -> Result<Vec<Update>, DbError> {
    let (expression, condition) = match movement {
        StockMove::Release => (
            "SET stock = stock + :q, reserved = reserved - :q",
            "reserved >= :q",
        ),
        StockMove::Sell => (
            "SET sold = sold + :q, reserved = reserved - :q",
            "reserved >= :q",
        ),
        StockMove::Restock => ("SET stock = stock + :q, sold = sold - :q", "sold >= :q"),
        StockMove::Keep => return Ok(Vec::new()),
    };
    units
        .iter()
        .filter(|part| part.quantity > 0)
        .map(|part| {
            update_of(tables, product_id, part.shard)
                .update_expression(expression)
                .condition_expression(condition)
                .expression_attribute_values(":q", n(part.quantity))
                .build()
                .map_err(build_err)
        })
        .collect()
}
