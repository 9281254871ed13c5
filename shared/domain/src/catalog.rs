//! Products: the stored shape, the admin's input, and their validation.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::money::{MAX_AMOUNT, validate_currency};

/// Largest stock level an admin may set.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Text limits of a product, in characters (openapi.yaml states the same;
/// tests/template.rs compares them).
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_CATEGORY_CHARS: usize = 64;

/// What a shopper sees of a product's stock: whether it can be ordered,
/// not how many units move as others order (issue 29.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Availability {
    InStock,
    /// At most [`LOW_STOCK_AT`] units left.
    LowStock,
    SoldOut,
}

/// Below or at this many orderable units a product shows `LOW_STOCK`.
pub const LOW_STOCK_AT: i64 = 10;

/// A product as the API answers it: admins see the counters (`stock`,
/// `reserved`), shoppers only its availability.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub product_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: i64,
    pub currency: String,
    pub availability: Availability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved: Option<i64>,
    /// How many items the stock is split over (admins only; issue 25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_shards: Option<u32>,
    pub version: i64,
    pub updated_at: String,
}

impl Product {
    pub fn availability(&self) -> Availability {
        match self.stock {
            s if s <= 0 => Availability::SoldOut,
            s if s <= LOW_STOCK_AT => Availability::LowStock,
            _ => Availability::InStock,
        }
    }

    /// The answer for a caller: the counters only for admins.
    pub fn view(self, is_admin: bool) -> ProductView {
        ProductView {
            availability: self.availability(),
            stock: is_admin.then_some(self.stock),
            reserved: is_admin.then_some(self.reserved),
            stock_shards: is_admin.then_some(self.stock_shards),
            product_id: self.product_id,
            name: self.name,
            description: self.description,
            category: self.category,
            price: self.price,
            currency: self.currency,
            version: self.version,
            updated_at: self.updated_at,
        }
    }
}

/// A product as stored and as returned by the API.
///
/// `stock` is what can still be ordered; `reserved` is held by unpaid
/// orders; `sold` (internal) by paid ones. Orders move units between the
/// three with conditional writes, so their sum only changes when an admin
/// sets the stock. A product split over `stock_shards` items stores shard
/// 0's counters on its own item; read through the catalog, the counters
/// are the sums over every shard (see [`crate::stock_shards`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub product_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price: i64,
    pub currency: String,
    pub stock: i64,
    #[serde(default)]
    pub reserved: i64,
    #[serde(default, skip_serializing)]
    pub sold: i64,
    #[serde(default = "one_shard", skip_serializing_if = "is_one_shard")]
    pub stock_shards: u32,
    pub version: i64,
    pub updated_at: String,
}

fn one_shard() -> u32 {
    1
}

fn is_one_shard(shards: &u32) -> bool {
    *shards == 1
}

impl Product {
    /// The product with its counters summed over its other shards' (shard
    /// 0's are the product item's own).
    pub fn with_shards(mut self, shards: &[crate::stock_shards::ShardCounters]) -> Self {
        for shard in shards {
            self.stock += shard.stock;
            self.reserved += shard.reserved;
            self.sold += shard.sold;
        }
        self
    }
}

/// The body of `PUT /products/{productId}`: everything an admin sets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProductDraft {
    /// Optional echo of the path's id (a client may send back what it read);
    /// it must then match the path.
    #[serde(default)]
    pub product_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price: i64,
    #[serde(default = "crate::money::default_currency")]
    pub currency: String,
    pub stock: i64,
    /// How many items to split the stock over; the product's current count
    /// (1 for a new one) when absent.
    #[serde(default)]
    pub stock_shards: Option<i64>,
}

/// The body of `POST /products/{productId}/stock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StockUpdate {
    pub new_stock: i64,
    /// As in [`ProductDraft::stock_shards`].
    #[serde(default)]
    pub stock_shards: Option<i64>,
}

/// Checks an admin-chosen product id: 1–64 of `[A-Za-z0-9_-]`.
pub fn validate_product_id(id: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "productId",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
        ))
    }
}

/// `GET /products?category=`'s filter: a category as products name theirs
/// (1 to `MAX_CATEGORY_CHARS` characters, matched exactly).
pub fn category_filter(text: &str) -> Result<String, FieldError> {
    validate_text("category", text, 1, MAX_CATEGORY_CHARS)?;
    Ok(text.to_owned())
}

fn validate_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let chars = value.trim().chars().count();
    if chars < min || value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be {min} to {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_range(field: &str, value: i64, max: i64) -> Result<(), FieldError> {
    if (0..=max).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be an integer from 0 to {max}, got {value}"),
        ))
    }
}

impl ProductDraft {
    /// Validates every field against the product id taken from the path.
    pub fn validate(&self, path_id: &str) -> Result<(), FieldError> {
        validate_product_id(path_id)?;
        if let Some(body_id) = &self.product_id
            && body_id != path_id
        {
            return Err(FieldError::new(
                "productId",
                "must match the productId in the path",
            ));
        }
        validate_text("name", &self.name, 1, MAX_NAME_CHARS)?;
        validate_text("description", &self.description, 0, MAX_DESCRIPTION_CHARS)?;
        validate_text("category", &self.category, 1, MAX_CATEGORY_CHARS)?;
        validate_range("price", self.price, MAX_AMOUNT)?;
        validate_currency(&self.currency)?;
        validate_range("stock", self.stock, MAX_STOCK)?;
        check_shard_range(self.stock_shards)
    }
}

/// The range check of a requested `stockShards` (whether it may shrink is
/// checked against the stored product, by the catalog).
fn check_shard_range(requested: Option<i64>) -> Result<(), FieldError> {
    match requested {
        Some(n) => crate::stock_shards::validate_stock_shards(n, 1).map(|_| ()),
        None => Ok(()),
    }
}

impl StockUpdate {
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_range("newStock", self.new_stock, MAX_STOCK)?;
        check_shard_range(self.stock_shards)
    }
}

/// Why a catalog operation did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("product {0:?} does not exist")]
    ProductNotFound(String),
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shoppers_see_availability_admins_the_counters() {
        let product = |stock| Product {
            product_id: "p".into(),
            name: "P".into(),
            description: String::new(),
            category: "c".into(),
            price: 1,
            currency: "CNY".into(),
            stock,
            reserved: 3,
            sold: 0,
            stock_shards: 1,
            version: 1,
            updated_at: "2026-12-01T00:00:00.000Z".into(),
        };
        for (stock, availability) in [
            (0, Availability::SoldOut),
            (1, Availability::LowStock),
            (LOW_STOCK_AT, Availability::LowStock),
            (LOW_STOCK_AT + 1, Availability::InStock),
        ] {
            let shopper = serde_json::to_value(product(stock).view(false)).unwrap();
            assert_eq!(
                shopper["availability"],
                serde_json::to_value(availability).unwrap()
            );
            assert!(shopper.get("stock").is_none() && shopper.get("reserved").is_none());
            let admin = serde_json::to_value(product(stock).view(true)).unwrap();
            assert_eq!(
                (admin["stock"].as_i64(), admin["reserved"].as_i64()),
                (Some(stock), Some(3))
            );
        }
    }

    fn draft() -> ProductDraft {
        ProductDraft {
            product_id: None,
            name: "Tea".into(),
            description: String::new(),
            category: "food".into(),
            price: 1999,
            currency: "CNY".into(),
            stock: 10,
            stock_shards: None,
        }
    }

    fn field_of(err: FieldError) -> String {
        err.field
    }

    #[test]
    fn product_ids() {
        for ok in ["a", "SKU-1_x", &"x".repeat(64)] {
            assert!(validate_product_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(validate_product_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn valid_draft() {
        assert!(draft().validate("tea-1").is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(ProductDraft, &str)> = vec![
            (
                ProductDraft {
                    name: "  ".into(),
                    ..draft()
                },
                "name",
            ),
            (
                ProductDraft {
                    name: "x".repeat(201),
                    ..draft()
                },
                "name",
            ),
            (
                ProductDraft {
                    category: String::new(),
                    ..draft()
                },
                "category",
            ),
            (
                ProductDraft {
                    price: -1,
                    ..draft()
                },
                "price",
            ),
            (
                ProductDraft {
                    price: MAX_AMOUNT + 1,
                    ..draft()
                },
                "price",
            ),
            (
                ProductDraft {
                    currency: "cny".into(),
                    ..draft()
                },
                "currency",
            ),
            (
                ProductDraft {
                    currency: "YUAN".into(),
                    ..draft()
                },
                "currency",
            ),
            (
                ProductDraft {
                    stock: -5,
                    ..draft()
                },
                "stock",
            ),
            (
                ProductDraft {
                    product_id: Some("other".into()),
                    ..draft()
                },
                "productId",
            ),
            (
                ProductDraft {
                    description: "bell\u{7}".into(),
                    ..draft()
                },
                "description",
            ),
        ];
        for (d, field) in cases {
            assert_eq!(field_of(d.validate("tea-1").unwrap_err()), field);
        }
    }

    #[test]
    fn currency_defaults_to_cny() {
        let d: ProductDraft =
            serde_json::from_str(r#"{"name":"Tea","category":"food","price":100,"stock":1}"#)
                .unwrap();
        assert_eq!(d.currency, "CNY");
        assert_eq!(d.description, "");
    }

    #[test]
    fn stock_shards_take_one_to_sixty_four() {
        for (shards, ok) in [
            (None, true),
            (Some(1), true),
            (Some(64), true),
            (Some(0), false),
            (Some(65), false),
        ] {
            let update = StockUpdate {
                new_stock: 5,
                stock_shards: shards,
            };
            assert_eq!(update.validate().is_ok(), ok, "{shards:?}");
            let draft = ProductDraft {
                stock_shards: shards,
                ..draft()
            };
            let result = draft.validate("p");
            assert_eq!(result.is_ok(), ok, "{shards:?}");
            if let Err(err) = result {
                assert_eq!(err.field, "stockShards");
            }
        }
    }

    #[test]
    fn stock_update_bounds() {
        assert!(
            StockUpdate {
                new_stock: 0,
                stock_shards: None
            }
            .validate()
            .is_ok()
        );
        assert!(
            StockUpdate {
                new_stock: MAX_STOCK,
                stock_shards: None,
            }
            .validate()
            .is_ok()
        );
        assert!(
            StockUpdate {
                new_stock: -1,
                stock_shards: None
            }
            .validate()
            .is_err()
        );
        assert!(
            StockUpdate {
                new_stock: MAX_STOCK + 1,
                stock_shards: None,
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn sold_is_not_exposed() {
        let p = Product {
            product_id: "p".into(),
            name: "n".into(),
            description: String::new(),
            category: "c".into(),
            price: 1,
            currency: "CNY".into(),
            stock: 1,
            reserved: 0,
            sold: 7,
            stock_shards: 1,
            version: 1,
            updated_at: "2026-01-01T00:00:00Z".into(),
        };
        let json = serde_json::to_value(&p).unwrap();
        assert!(json.get("sold").is_none());
        assert_eq!(json["productId"], "p");
    }
}
