//! `POST /orders/{orderId}/refund-requests` (the buyer, `Idempotency-Key`)
//! `{items: [{productId, quantity}], reason, returnGoods}`: asks for some
//! of a paid, shipped or completed order's lines to be refunded (within
//! the after-sales window of its completion). The lines' units are
//! claimed on the order in the transaction that files the request, so
//! racing requests never claim more of a line than was bought; an admin
//! then approves (the refund) or rejects (the claim goes back). 201 with
//! the request.

use adapters::idempotency::fingerprint;
use adapters::orders::Orders;
use adapters::refund_requests::{Filed, Filing, RefundRequests};
use domain::refund_requests::RefundRequestBody;
use http_edge::http::{json, json_body, path_param};
use http_edge::idempotency::replayed;
use http_edge::orders::callers_order;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::Serialize;

/// What makes two requests with one key the same request.
#[derive(Serialize)]
struct Fingerprinted<'a> {
    order_id: &'a str,
    body: &'a RefundRequestBody,
}

pub async fn handle(orders: &Orders, requests: &RefundRequests, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let key = http_edge::idempotency::key(&req, &caller.user_id, "requestRefund")?;
    let body: RefundRequestBody = json_body(&req)?;
    let order_id = path_param(&req, "orderId")?;
    let idempotency = key.map(|key| {
        let print = fingerprint(&Fingerprinted {
            order_id: &order_id,
            body: &body,
        });
        (key, print)
    });
    // A retry is answered as the original was, whatever the order became
    // since (its lines refunded, its window closed).
    if let Some((key, print)) = &idempotency
        && let Some(original) = requests.recorded_answer(key, print).await?
    {
        return Ok(replayed(original));
    }
    let order = callers_order(orders, &req).await?;
    let lines = body.lines_of(&order)?;
    let filing = Filing {
        order: &order,
        lines,
        reason: body.reason(),
        return_goods: body.return_goods,
        idempotency,
    };
    Ok(match requests.file(filing, &caller.user_id).await? {
        Filed::Filed(request) => json(StatusCode::CREATED, &request),
        Filed::Replayed(original) => replayed(original),
    })
}
