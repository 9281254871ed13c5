//! `GET /products?limit=&nextToken=`: the catalog, one page at a time.

use adapters::catalog::{Catalog, PRODUCT_KEY};
use domain::catalog::ProductView;
use http_edge::http::{CATALOG_CACHE_CONTROL, cacheable_json, limit_param, query_param};
use http_edge::page_token::{self, Page};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(catalog: &Catalog, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let start = query_param(&req, "nextToken")
        .map(|token| page_token::decode(&token, PRODUCT_KEY))
        .transpose()?;
    let page = catalog.list(limit, start).await?;
    let list: Page<ProductView> = Page::new(
        page.items
            .into_iter()
            .map(|p| p.view(caller.is_admin))
            .collect(),
        page.last_key.as_ref(),
    );
    Ok(cacheable_json(&req, &list, CATALOG_CACHE_CONTROL))
}
