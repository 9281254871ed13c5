//! `PUT /products/{productId}` (admin): creates a product or replaces its
//! name, description, category, price, currency and stock. Units held by
//! unpaid or paid orders (`reserved`, `sold`) are never touched.

use adapters::catalog::Catalog;
use domain::catalog::{ProductDraft, validate_product_id};
use domain::clock;
use http_edge::http::{self, json, json_body, path_param};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(catalog: &Catalog, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let product_id = path_param(&req, "productId")?;
    validate_product_id(&product_id)?;
    let draft: ProductDraft = json_body(&req)?;
    draft.validate(&product_id)?;

    let (product, created) = catalog
        .put(&product_id, &draft, &clock::now_rfc3339())
        .await?;

    // Only admins get here: the view with the counters.
    let view = product.view(true);
    if created {
        Ok(http::created(&view, &format!("/products/{product_id}")))
    } else {
        Ok(json(StatusCode::OK, &view))
    }
}
