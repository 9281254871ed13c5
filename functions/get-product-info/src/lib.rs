//! `GET /products/{productId}`: one product, for any signed-in user; its
//! stock counters for admins, its availability for everyone.

use adapters::catalog::Catalog;
use domain::catalog::validate_product_id;
use http_edge::http::{CATALOG_CACHE_CONTROL, cacheable_json, path_param};
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;

pub async fn handle(catalog: &Catalog, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let product_id = path_param(&req, "productId")?;
    validate_product_id(&product_id)?;
    let product = catalog
        .get(&product_id)
        .await?
        .ok_or_else(|| ApiError::product_not_found(&product_id))?;
    Ok(cacheable_json(
        &req,
        &product.view(caller.is_admin),
        CATALOG_CACHE_CONTROL,
    ))
}
