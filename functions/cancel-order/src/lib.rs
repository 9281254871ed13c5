//! `POST /orders/{orderId}/cancel`: cancels one of the caller's unpaid
//! orders and returns its reserved units to stock, in one transaction that
//! a racing payment or expiry cannot also win. Cancelling twice is fine.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use shared::http::{correlation_id, json, path_param};
use shared::order::{Order, OrderStatus, OrderTransition, order_not_found, plausible_order_id};
use shared::orders::{Orders, Transition};
use shared::{ApiError, ApiResult, Caller};

pub async fn handle(orders: &Orders, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let order_id = path_param(&req, "orderId")?;
    if !plausible_order_id(&order_id) {
        return Err(order_not_found(&order_id));
    }
    let order = orders
        .get_owned(&order_id, &caller.user_id)
        .await?
        .ok_or_else(|| order_not_found(&order_id))?;
    if order.order_status == OrderStatus::Cancelled {
        return Ok(json(StatusCode::OK, &order));
    }

    match orders
        .apply_transition(&order, OrderTransition::Cancel, &correlation_id(&req))
        .await?
    {
        Transition::Applied(cancelled) => Ok(json(StatusCode::OK, &cancelled)),
        // A concurrent cancel of the same order won: same outcome.
        Transition::LostRace(Some(OrderStatus::Cancelled)) => Ok(json(
            StatusCode::OK,
            &Order {
                order_status: OrderStatus::Cancelled,
                ..order
            },
        )),
        Transition::LostRace(status) => Err(not_cancellable(
            &order_id,
            status.unwrap_or(order.order_status),
        )),
    }
}

fn not_cancellable(order_id: &str, status: OrderStatus) -> ApiError {
    let why = match status {
        OrderStatus::Paid => "it is paid; paid orders are refunded, which is not available yet",
        _ => "only unpaid orders can be cancelled",
    };
    ApiError::conflict(
        "ORDER_NOT_CANCELLABLE",
        format!("order {order_id} is {}: {why}", status.as_str()),
    )
    .with("orderId", order_id)
    .with("orderStatus", status.as_str())
}
