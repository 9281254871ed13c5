//! The catalog's store, the products table: reads, admin writes, pages.
//!
//! Every write names exactly the attributes it owns, so an admin edit can
//! never overwrite the `reserved` and `sold` counters that orders move
//! concurrently. A product split over stock shards (issue 25) is written
//! with its shards in one transaction and read as their sums.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem};
use domain::catalog::{CatalogError, Product, ProductDraft};
use domain::stock_shards::{even_shares, validate_stock_shards};

use crate::config::Tables;
use crate::db::{DbError, Item, Read, Transact, backoff, build_err, n, s, transact};
use crate::stock_shards;

pub const PRODUCT_KEY: &[&str] = &["productId"];
/// The products of one category, by id.
pub const CATEGORY_INDEX: &str = "byCategory";
/// The key attributes of a page token of the category index.
pub const CATEGORY_INDEX_KEY: &[&str] = &["productId", "category"];
/// Attempts at an admin's sharded write that lost a race to another.
const MAX_ATTEMPTS: u32 = 8;

/// What an admin's write sets: the whole draft (PUT) or the stock alone.
enum Edit<'a> {
    Draft(&'a ProductDraft),
    Stock {
        new_stock: i64,
        stock_shards: Option<i64>,
    },
}

impl Edit<'_> {
    fn stock(&self) -> i64 {
        match self {
            Edit::Draft(draft) => draft.stock,
            Edit::Stock { new_stock, .. } => *new_stock,
        }
    }

    fn stock_shards(&self) -> Option<i64> {
        match self {
            Edit::Draft(draft) => draft.stock_shards,
            Edit::Stock { stock_shards, .. } => *stock_shards,
        }
    }
}

impl From<DbError> for CatalogError {
    fn from(err: DbError) -> Self {
        CatalogError::Store(err.into())
    }
}

#[derive(Clone, Debug)]
pub struct Catalog {
    client: Client,
    tables: Tables,
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
    pub fn new(client: Client, tables: &Tables) -> Self {
        Self {
            client,
            tables: tables.clone(),
        }
    }

    pub fn table(&self) -> &str {
        &self.tables.products
    }

    /// The products with their counters summed over their shards; the
    /// shards of several products are read at once.
    async fn with_totals(&self, page: ProductPage) -> Result<ProductPage, DbError> {
        let items = futures_util::future::try_join_all(page.items.into_iter().map(|product| {
            stock_shards::with_totals(
                &self.client,
                &self.tables.stock_shards,
                product,
                Read::Eventual,
            )
        }))
        .await?;
        Ok(ProductPage {
            items,
            last_key: page.last_key,
        })
    }

    /// A product as the catalog shows it: eventually consistent reads
    /// (answers carry `max-age=5`, so a second's lag is already allowed);
    /// a sharded product's counters are the sums of its shards as read.
    pub async fn get(&self, product_id: &str) -> Result<Option<Product>, DbError> {
        self.read(product_id, Read::Eventual).await
    }

    async fn read(&self, product_id: &str, read: Read) -> Result<Option<Product>, DbError> {
        let product: Option<Product> = crate::db::get_item(
            &self.client,
            &self.tables.products,
            "productId",
            product_id,
            read,
        )
        .await?;
        match product {
            Some(product) => Ok(Some(
                stock_shards::with_totals(&self.client, &self.tables.stock_shards, product, read)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    pub async fn list(&self, limit: i32, start: Option<Item>) -> Result<ProductPage, DbError> {
        let out = self
            .client
            .scan()
            .table_name(&self.tables.products)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        self.with_totals(page(out.items, out.last_evaluated_key)?)
            .await
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
            .table_name(&self.tables.products)
            .index_name(CATEGORY_INDEX)
            .key_condition_expression("category = :c")
            .expression_attribute_values(":c", s(category))
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        self.with_totals(page(out.items, out.last_evaluated_key)?)
            .await
    }

    /// Creates or replaces the admin-owned fields; returns the product and
    /// whether it was created by this call.
    pub async fn put(
        &self,
        product_id: &str,
        draft: &ProductDraft,
        now: &str,
    ) -> Result<(Product, bool), CatalogError> {
        if draft.stock_shards.is_none_or(|shards| shards == 1) {
            match self.put_unsharded(product_id, draft, now).await {
                // The product has shards: it is written with them.
                Err(DbError::ConditionFailed) => {}
                other => return Ok(other?),
            }
        }
        self.write_sharded(product_id, Edit::Draft(draft), now)
            .await
    }

    /// [`Self::put`] of a product on one shard: one `UpdateItem`,
    /// conditional on the product not having been split meanwhile.
    async fn put_unsharded(
        &self,
        product_id: &str,
        draft: &ProductDraft,
        now: &str,
    ) -> Result<(Product, bool), DbError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.products)
            .key("productId", s(product_id))
            .update_expression(
                "SET #name = :name, description = :description, category = :category, \
                 price = :price, currency = :currency, stock = :stock, \
                 reserved = if_not_exists(reserved, :zero), sold = if_not_exists(sold, :zero), \
                 version = if_not_exists(version, :zero) + :one, updatedAt = :now",
            )
            .condition_expression("attribute_not_exists(stockShards) OR stockShards = :one")
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

    /// Sets the orderable stock of an existing product (and, if asked, the
    /// number of shards it is spread over); `reserved` and `sold` are left
    /// exactly as they are.
    pub async fn set_stock(
        &self,
        product_id: &str,
        new_stock: i64,
        stock_shards: Option<i64>,
        now: &str,
    ) -> Result<Product, CatalogError> {
        if stock_shards.is_none_or(|shards| shards == 1) {
            match self.set_stock_unsharded(product_id, new_stock, now).await {
                Err(DbError::ConditionFailed) => {}
                other => return Ok(other?),
            }
        }
        let edit = Edit::Stock {
            new_stock,
            stock_shards,
        };
        Ok(self.write_sharded(product_id, edit, now).await?.0)
    }

    /// [`Self::set_stock`] of a product on one shard; `ConditionFailed` if
    /// it does not exist or has shards.
    async fn set_stock_unsharded(
        &self,
        product_id: &str,
        new_stock: i64,
        now: &str,
    ) -> Result<Product, DbError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.products)
            .key("productId", s(product_id))
            .condition_expression(
                "attribute_exists(productId) AND (attribute_not_exists(stockShards) OR stockShards = :one)",
            )
            .update_expression("SET stock = :stock, version = version + :one, updatedAt = :now")
            .expression_attribute_values(":stock", n(new_stock))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await?;
        product_from(out.attributes)?
            .ok_or_else(|| DbError::Corrupt("UpdateItem returned no attributes".into()))
    }

    /// An admin's write of a product spread over shards: in one
    /// transaction, the product item (shard 0) and every other shard get
    /// their even share of the stock and the product's new version (which
    /// reservations are conditional on), conditional on the version read.
    /// Returns the product as written, its counters summed.
    async fn write_sharded(
        &self,
        product_id: &str,
        edit: Edit<'_>,
        now: &str,
    ) -> Result<(Product, bool), CatalogError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let current: Option<Product> = crate::db::get_item(
                &self.client,
                &self.tables.products,
                "productId",
                product_id,
                Read::Consistent,
            )
            .await?;
            if current.is_none() && matches!(edit, Edit::Stock { .. }) {
                return Err(CatalogError::ProductNotFound(product_id.to_owned()));
            }
            let (version, shards_now) = current
                .as_ref()
                .map_or((0, 1), |p| (p.version, p.stock_shards));
            let shards = match edit.stock_shards() {
                Some(requested) => validate_stock_shards(requested, shards_now)?,
                None => shards_now,
            };
            let shares = even_shares(edit.stock(), shards);
            let mut items = vec![
                TransactWriteItem::builder()
                    .update(
                        self.product_update(product_id, &edit, shares[0], shards, version, now)?,
                    )
                    .build(),
            ];
            for (shard, share) in shares.iter().enumerate().skip(1) {
                let update = stock_shards::update_of(&self.tables, product_id, shard as u32)
                    .update_expression(
                        "SET productId = :product, #shard = :shard, stock = :stock, \
                         reserved = if_not_exists(reserved, :zero), \
                         sold = if_not_exists(sold, :zero), version = :version",
                    )
                    // SHARD is one of DynamoDB's reserved words.
                    .expression_attribute_names("#shard", "shard")
                    .expression_attribute_values(":product", s(product_id))
                    .expression_attribute_values(":shard", n(shard as i64))
                    .expression_attribute_values(":stock", n(*share))
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":version", n(version + 1))
                    .build()
                    .map_err(build_err)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            if let Transact::Committed = transact(&self.client, items).await? {
                let product = self
                    .read(product_id, Read::Consistent)
                    .await?
                    .ok_or_else(|| DbError::Corrupt(format!("product {product_id} vanished")))?;
                return Ok((product, current.is_none()));
            }
            // Another write (an admin's, or the product's first) got there
            // first: read again and redistribute from what it left.
            if attempt < MAX_ATTEMPTS {
                backoff(attempt).await;
            }
        }
        Err(domain::error::StoreError::Busy(
            "the product is being changed by others; retry shortly",
        )
        .into())
    }

    /// The product item's part of [`Self::write_sharded`].
    fn product_update(
        &self,
        product_id: &str,
        edit: &Edit<'_>,
        stock: i64,
        shards: u32,
        version: i64,
        now: &str,
    ) -> Result<aws_sdk_dynamodb::types::Update, DbError> {
        let mut set = vec![
            "stock = :stock",
            "stockShards = :shards",
            "reserved = if_not_exists(reserved, :zero)",
            "sold = if_not_exists(sold, :zero)",
            "version = :version",
            "updatedAt = :now",
        ];
        let mut update = stock_shards::update_of(&self.tables, product_id, 0)
            .condition_expression(if version == 0 {
                "attribute_not_exists(productId)"
            } else {
                "version = :read"
            })
            .expression_attribute_values(":stock", n(stock))
            .expression_attribute_values(":shards", n(i64::from(shards)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":version", n(version + 1))
            .expression_attribute_values(":now", s(now));
        if version != 0 {
            update = update.expression_attribute_values(":read", n(version));
        }
        if let Edit::Draft(draft) = edit {
            set.extend([
                "#name = :name",
                "description = :description",
                "category = :category",
                "price = :price",
                "currency = :currency",
            ]);
            update = update
                .expression_attribute_names("#name", "name")
                .expression_attribute_values(":name", s(&draft.name))
                .expression_attribute_values(":description", s(&draft.description))
                .expression_attribute_values(":category", s(&draft.category))
                .expression_attribute_values(":price", n(draft.price))
                .expression_attribute_values(":currency", s(&draft.currency));
        }
        update
            .update_expression(format!("SET {}", set.join(", ")))
            .build()
            .map_err(build_err)
    }
}
