//! The order a request's path names, as its caller may see it.

use adapters::orders::Orders;
use domain::orders::{Order, plausible_order_id};
use lambda_http::Request;

use crate::http::path_param;
use crate::{ApiError, Caller};

/// The caller's own order named by the `{orderId}` path parameter: anyone
/// else's is answered exactly like a missing one (404), and an id that
/// cannot be one is not looked up.
pub async fn callers_order(orders: &Orders, req: &Request) -> Result<Order, ApiError> {
    let caller = Caller::from_request(req)?;
    let order_id = path_param(req, "orderId")?;
    if !plausible_order_id(&order_id) {
        return Err(ApiError::order_not_found(&order_id));
    }
    orders
        .get_owned(&order_id, &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::order_not_found(&order_id))
}
