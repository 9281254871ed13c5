//! `POST /orders`: reserves the stock of every line and creates the order,
//! all or nothing, priced from the catalog. Honours `Idempotency-Key`.

use std::time::Duration;

use adapters::idempotency::fingerprint;
use adapters::orders::{OrderRequest, Orders, Placement};
use domain::orders::CreateOrderRequest;
use http_edge::http::{correlation_id, created, json_body};
use http_edge::idempotency::replayed;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;

pub async fn handle(orders: &Orders, payment_window: Duration, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let key = http_edge::idempotency::key(&req, &caller.user_id, "createOrder")?;
    let body: CreateOrderRequest = json_body(&req)?;
    caller.check_claimed_user(body.user_id.as_deref())?;
    let lines = body.lines()?;
    // Both body forms of the same lines are the same request.
    let idempotency = key.map(|key| (key, fingerprint(&lines)));

    let placement = orders
        .place(OrderRequest {
            user_id: &caller.user_id,
            lines,
            idempotency,
            correlation_id: &correlation_id(&req),
            payment_window,
        })
        .await?;

    Ok(match placement {
        Placement::Placed(order, _) => created(&order, &format!("/orders/{}", order.order_id)),
        Placement::Replayed(original) => replayed(original),
    })
}
