//! `POST /orders/{orderId}/shipments` (admin) `{carrier, trackingNumber}`:
//! a `PAID` order becomes `SHIPPED` with its shipment, in one transaction
//! conditional on it still being paid and not being refunded (a buyer's
//! cancel claims the order first), with its `OrderShipped` event.
//!
//! The same shipment again answers 200 with the order (a retried request);
//! any other status, or another shipment, is 409 naming the status.

use adapters::orders::{Orders, Transition, TransitionContext};
use domain::clock;
use domain::orders::{Order, OrderStatus, OrderTransition, ShipmentRequest, plausible_order_id};
use http_edge::http::{correlation_id, json, json_body, path_param};
use http_edge::{ApiError, ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(orders: &Orders, req: Request) -> ApiResult {
    Caller::from_request(&req)?.require_admin()?;
    let order_id = path_param(&req, "orderId")?;
    if !plausible_order_id(&order_id) {
        return Err(ApiError::order_not_found(&order_id));
    }
    let request: ShipmentRequest = json_body(&req)?;
    request.validate()?;
    let order = orders
        .get(&order_id)
        .await?
        .ok_or_else(|| ApiError::order_not_found(&order_id))?;
    if let Some(shipped) = already_shipped(&order, &request) {
        return Ok(json(StatusCode::OK, shipped));
    }
    let context = TransitionContext {
        shipment: Some(request.shipment(&clock::now_rfc3339())),
        ..TransitionContext::default()
    };
    match orders
        .apply_transition_with(
            &order,
            OrderTransition::Ship,
            &correlation_id(&req),
            &context,
        )
        .await?
    {
        Transition::Applied(shipped) => Ok(json(StatusCode::CREATED, &shipped)),
        Transition::LostRace(status) => {
            // A racing request with the same shipment won: the same outcome.
            let current = orders.get(&order_id).await?;
            match current.as_ref().and_then(|o| already_shipped(o, &request)) {
                Some(shipped) => Ok(json(StatusCode::OK, shipped)),
                None => Err(not_shippable(
                    &order_id,
                    status.unwrap_or(order.order_status),
                )),
            }
        }
        Transition::AlreadyProcessed => Err(ApiError::internal()),
    }
}

/// The order, if it is already shipped with this very shipment.
fn already_shipped<'a>(order: &'a Order, request: &ShipmentRequest) -> Option<&'a Order> {
    let shipment = order.shipment.as_ref()?;
    (matches!(
        order.order_status,
        OrderStatus::Shipped | OrderStatus::Completed
    ) && shipment.carrier == request.carrier.trim()
        && shipment.tracking_number == request.tracking_number)
        .then_some(order)
}

fn not_shippable(order_id: &str, status: OrderStatus) -> ApiError {
    let why = match status {
        // Still paid yet not shippable: its refund claim is there.
        OrderStatus::Paid => "its buyer cancelled it and its money is going back",
        OrderStatus::Shipped | OrderStatus::Completed => {
            "it has shipped already, with another shipment"
        }
        _ => "only paid orders can be shipped",
    };
    ApiError::conflict(
        "ORDER_NOT_SHIPPABLE",
        format!("order {order_id} is {}: {why}", status.as_str()),
    )
    .with("orderId", order_id)
    .with("orderStatus", status.as_str())
}
