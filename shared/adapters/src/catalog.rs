//! The catalog's store, the products table: reads, admin writes, pages.
//!
//! Every write is a single conditional `UpdateItem` that names exactly the
//! attributes it owns, so an admin edit can never overwrite the `reserved`
//! and `sold` counters that orders move concurrently.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;

use crate::db::{DbError, Item, n, s};
use domain::catalog::{Product, ProductDraft};

pub const PRODUCT_KEY: &[&str] = &["productId"];
/// The products of one category, by id.
pub const CATEGORY_INDEX: &str = "byCategory";
/// The key attributes of a page token of the category index.
pub const CATEGORY_INDEX_KEY: &[&str] = &["productId", "category"];

#[derive(Clone, Debug)]
pub struct Catalog {
    client: Client,
    table: String,
}

/// One page of products and the key to continue from, if any.
pub struct ProductPage {
    pub items: Vec<Product>,
    pub last_key: Option<Item>,
}

fn page(items: Option<Vec<Item>>, last_key: Option<Item>) -> Result<ProductPage, DbError> {
    let items = items
        .unwrap_or_default()
        .into_iter()
        .map(|i| serde_dynamo::from_item(i).map_err(DbError::from))
        .collect::<Result<Vec<Product>, _>>()?;
    Ok(ProductPage { items, last_key })
}

fn product_from(item: Option<Item>) -> Result<Option<Product>, DbError> {
    item.map(|i| serde_dynamo::from_item(i).map_err(DbError::from))
        .transpose()
}

impl Catalog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A product as the catalog shows it: an eventually consistent read
    /// (answers carry `max-age=5`, so a second's lag is already allowed).
    pub async fn get(&self, product_id: &str) -> Result<Option<Product>, DbError> {
        crate::db::get_item(
            &self.client,
            &self.table,
            "productId",
            product_id,
            crate::db::Read::Eventual,
        )
        .await
    }

    pub async fn list(&self, limit: i32, start: Option<Item>) -> Result<ProductPage, DbError> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        page(out.items, out.last_evaluated_key)
    }

    /// One category's products, by id: a query of the category index, so a
    /// page costs what it returns, not what the catalog holds.
    pub async fn list_category(
        &self,
        category: &str,
        limit: i32,
        start: Option<Item>,
    ) -> Result<ProductPage, DbError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CATEGORY_INDEX)
            .key_condition_expression("category = :c")
            .expression_attribute_values(":c", s(category))
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        page(out.items, out.last_evaluated_key)
    }

    /// Creates or replaces the admin-owned fields; returns the product and
    /// whether it was created by this call.
    pub async fn put(
        &self,
        product_id: &str,
        draft: &ProductDraft,
        now: &str,
    ) -> Result<(Product, bool), DbError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("productId", s(product_id))
            .update_expression(
                "SET #name = :name, description = :description, category = :category, \
                 price = :price, currency = :currency, stock = :stock, \
                 reserved = if_not_exists(reserved, :zero), sold = if_not_exists(sold, :zero), \
                 version = if_not_exists(version, :zero) + :one, updatedAt = :now",
            )
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(&draft.name))
            .expression_attribute_values(":description", s(&draft.description))
            .expression_attribute_values(":category", s(&draft.category))
            .expression_attribute_values(":price", n(draft.price))
            .expression_attribute_values(":currency", s(&draft.currency))
            .expression_attribute_values(":stock", n(draft.stock))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await?;
        let product = product_from(out.attributes)?
            .ok_or_else(|| DbError::Corrupt("UpdateItem returned no attributes".into()))?;
        let created = product.version == 1;
        Ok((product, created))
    }

    /// Sets the orderable stock of an existing product; `None` if unknown.
    /// `reserved` and `sold` are left exactly as they are.
    pub async fn set_stock(
        &self,
        product_id: &str,
        new_stock: i64,
        now: &str,
    ) -> Result<Option<Product>, DbError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("productId", s(product_id))
            .condition_expression("attribute_exists(productId)")
            .update_expression("SET stock = :stock, version = version + :one, updatedAt = :now")
            .expression_attribute_values(":stock", n(new_stock))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(DbError::from);
        match result {
            Ok(out) => product_from(out.attributes),
            Err(DbError::ConditionFailed) => Ok(None),
            Err(other) => Err(other),
        }
    }
}
