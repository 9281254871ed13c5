//! `POST /products/{productId}/stock` (admin): sets the orderable stock.
//! Units reserved by unpaid orders stay reserved.

use adapters::catalog::Catalog;
use domain::catalog::{StockUpdate, validate_product_id};
use domain::clock;
use http_edge::http::{json, json_body, path_param};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(catalog: &Catalog, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let product_id = path_param(&req, "productId")?;
    validate_product_id(&product_id)?;
    let update: StockUpdate = json_body(&req)?;
    update.validate()?;

    let product = catalog
        .set_stock(
            &product_id,
            update.new_stock,
            update.stock_shards,
            &clock::now_rfc3339(),
        )
        .await?;
    // Only admins get here: the view with the counters.
    Ok(json(StatusCode::OK, &product.view(true)))
}
