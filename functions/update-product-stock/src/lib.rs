//! `POST /products/{productId}/stock` (admin): sets the orderable stock.
//! Units reserved by unpaid orders stay reserved.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::catalog::{Catalog, product_not_found};
use shared::http::{json, json_body, path_param};
use shared::product::{StockUpdate, validate_product_id};
use shared::{ApiResult, Caller, clock};

pub async fn handle(catalog: &Catalog, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let product_id = path_param(&req, "productId")?;
    validate_product_id(&product_id)?;
    let update: StockUpdate = json_body(&req)?;
    update.validate()?;

    let product = catalog
        .set_stock(&product_id, update.new_stock, &clock::now_rfc3339())
        .await?
        .ok_or_else(|| product_not_found(&product_id))?;
    // Only admins get here: the view with the counters.
    Ok(json(StatusCode::OK, &product.view(true)))
}
