//! `GET /products?category=&limit=&nextToken=`: the catalog, one page at a
//! time; with `category`, that category's products (by id, from the
//! category index). A page token is good only for the listing it came from.

use adapters::catalog::{CATEGORY_INDEX_KEY, Catalog, PRODUCT_KEY};
use domain::catalog::ProductView;
use domain::catalog::category_filter;
use http_edge::http::{CATALOG_CACHE_CONTROL, cacheable_json, limit_param, query_param};
use http_edge::page_token::{self, Page};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

pub async fn handle(catalog: &Catalog, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let limit = limit_param(&req, DEFAULT_LIMIT, MAX_LIMIT)?;
    let category = query_param(&req, "category")
        .map(|text| category_filter(&text))
        .transpose()?;
    let token = query_param(&req, "nextToken");
    let page = match &category {
        None => {
            let start = token
                .map(|token| page_token::decode(&token, PRODUCT_KEY))
                .transpose()?;
            catalog.list(limit, start).await?
        }
        Some(category) => {
            let start = token
                .map(|token| {
                    page_token::decode_owned(&token, CATEGORY_INDEX_KEY, "category", category)
                })
                .transpose()?;
            catalog.list_category(category, limit, start).await?
        }
    };
    let list: Page<ProductView> = Page::new(
        page.items
            .into_iter()
            .map(|p| p.view(caller.is_admin))
            .collect(),
        page.last_key.as_ref(),
    );
    Ok(cacheable_json(&req, &list, CATALOG_CACHE_CONTROL))
}
