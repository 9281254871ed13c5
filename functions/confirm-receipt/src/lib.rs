//! `POST /orders/{orderId}/receipt`: the buyer says a shipped order arrived;
//! it becomes `COMPLETED` (200), with its `OrderCompleted` event, by a
//! transaction conditional on it being `SHIPPED`: of the buyer and the
//! auto-confirm sweep racing, one completes it and the other finds it done
//! (also 200). Another user's order is 404; an order not shipped is 409.

use adapters::orders::{Orders, Transition};
use domain::orders::{OrderStatus, OrderTransition};
use http_edge::http::{correlation_id, json};
use http_edge::orders::callers_order;
use http_edge::{ApiError, ApiResult};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(orders: &Orders, req: Request) -> ApiResult {
    let order = callers_order(orders, &req).await?;
    let order_id = order.order_id.clone();
    if order.order_status == OrderStatus::Completed {
        return Ok(json(StatusCode::OK, &order));
    }
    match orders
        .apply_transition(
            &order,
            OrderTransition::ConfirmReceipt,
            &correlation_id(&req),
        )
        .await?
    {
        Transition::Applied(completed) => Ok(json(StatusCode::OK, &completed)),
        Transition::LostRace(Some(OrderStatus::Completed)) => {
            let completed = orders
                .get(&order_id)
                .await?
                .ok_or_else(|| ApiError::order_not_found(&order_id))?;
            Ok(json(StatusCode::OK, &completed))
        }
        Transition::LostRace(status) => {
            let status = status.unwrap_or(order.order_status);
            Err(ApiError::conflict(
                "ORDER_NOT_SHIPPED",
                format!(
                    "order {order_id} is {}: only a shipped order's receipt can be confirmed",
                    status.as_str()
                ),
            )
            .with("orderId", order_id.as_str())
            .with("orderStatus", status.as_str()))
        }
        Transition::AlreadyProcessed => Err(ApiError::internal()),
    }
}
