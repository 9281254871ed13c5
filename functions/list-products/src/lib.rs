//! `GET /products?limit=&nextToken=`: the catalog, one page at a time.

use adapters::catalog::{Catalog, PRODUCT_KEY};
use domain::catalog::ProductView;
use http_edge::http::{CATALOG_CACHE_CONTROL, cacheable_json, limit_param, query_param};
use http_edge::page_token;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use serde::Serialize;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductList {
    items: Vec<ProductView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn handle(catalog: &Catalog, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let start = query_param(&req, "nextToken")
        .map(|token| page_token::decode(&token, PRODUCT_KEY))
        .transpose()?;
    let page = catalog.list(limit, start).await?;
    let list = ProductList {
        items: page
            .items
            .into_iter()
            .map(|p| p.view(caller.is_admin))
            .collect(),
        next_token: page.last_key.as_ref().map(page_token::encode),
    };
    Ok(cacheable_json(&req, &list, CATALOG_CACHE_CONTROL))
}
