//! `POST /orders/{orderId}/cancel`: cancels one of the caller's orders.
//!
//! Unpaid: the order becomes `CANCELLED` and its reserved units return to
//! stock, in one transaction that a racing payment or expiry cannot also win
//! (200; cancelling twice is fine). Paid: the payment is refunded through
//! the provider (202); the order becomes `REFUNDED`, and its units return to
//! stock, when the order-status consumer processes the refund event.
//! Shipped or completed: 409 `ORDER_NOT_CANCELLABLE`, pointing at refund
//! requests; a cancel racing a shipment is settled by the order's refund
//! claim (exactly one of them wins). A paid order some of whose lines
//! refund requests claim is 409 too: those requests refund them.

use adapters::orders::{Orders, Transition};
use adapters::payments::Payments;
use domain::orders::{Order, OrderStatus, OrderTransition};
use domain::payments::PaymentProvider;
use http_edge::http::{correlation_id, json};
use http_edge::orders::callers_order;
use http_edge::{ApiError, ApiResult};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(
    orders: &Orders,
    payments: &Payments,
    provider: &impl PaymentProvider,
    req: Request,
) -> ApiResult {
    let order = callers_order(orders, &req).await?;
    let order_id = order.order_id.clone();
    let correlation_id = correlation_id(&req);

    match order.order_status {
        OrderStatus::Cancelled => return Ok(json(StatusCode::OK, &order)),
        OrderStatus::Paid => {
            return refund(orders, &order, payments, provider, &correlation_id).await;
        }
        _ => {}
    }
    match orders
        .apply_transition(&order, OrderTransition::Cancel, &correlation_id)
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
        // Paid in the meantime: cancelling now means refunding.
        Transition::LostRace(Some(OrderStatus::Paid)) => {
            let paid = orders
                .get(&order_id)
                .await?
                .ok_or_else(|| ApiError::order_not_found(&order_id))?;
            refund(orders, &paid, payments, provider, &correlation_id).await
        }
        Transition::LostRace(status) => Err(not_cancellable(
            &order_id,
            status.unwrap_or(order.order_status),
        )),
        Transition::AlreadyProcessed => Err(ApiError::internal()),
    }
}

async fn refund(
    orders: &Orders,
    order: &Order,
    payments: &Payments,
    provider: &impl PaymentProvider,
    correlation_id: &str,
) -> ApiResult {
    let payment = match &order.paid_payment_id {
        Some(id) => payments.get(id).await?,
        None => None,
    };
    let Some(payment) = payment else {
        tracing::error!(order_id = %order.order_id, "paid order without its payment");
        return Err(ApiError::conflict(
            "ORDER_NOT_CANCELLABLE",
            format!(
                "order {} is PAID: its payment cannot be found to refund",
                order.order_id
            ),
        )
        .with("orderId", order.order_id.as_str())
        .with("orderStatus", order.order_status.as_str()));
    };
    // Claimed before the money moves, so that the shop cannot ship it while
    // it goes back (shipping is conditional on the claim's absence).
    if let Some(status) = orders.claim_for_refund(order).await? {
        return Err(not_cancellable(&order.order_id, status));
    }
    payments
        .refund(
            &payment,
            provider,
            "cancelled by the customer",
            correlation_id,
        )
        .await?;
    Ok(json(StatusCode::ACCEPTED, order))
}

fn not_cancellable(order_id: &str, status: OrderStatus) -> ApiError {
    let why = match status {
        // Still paid, yet its refund claim failed: refund requests claim
        // some of its lines, and those refund them.
        OrderStatus::Paid => {
            "refund requests claim some of its lines; see GET /orders/{orderId}/refund-requests"
        }
        OrderStatus::Shipped | OrderStatus::Completed => {
            "it has shipped; ask for a refund with POST /orders/{orderId}/refund-requests"
        }
        _ => "only unpaid or paid orders can be cancelled",
    };
    ApiError::conflict(
        "ORDER_NOT_CANCELLABLE",
        format!("order {order_id} is {}: {why}", status.as_str()),
    )
    .with("orderId", order_id)
    .with("orderStatus", status.as_str())
}
