//! Refund requests as the approval leaves them, for the consumers' tests.

use domain::orders::{Order, OrderStatus};
use domain::refund_requests::{LinesRefunded, RefundLine, RefundRequest, RefundRequestStatus};

/// What an approved refund request of `lines` ((product, units)) of
/// `order` publishes; `order` is updated as the approval would
/// (`refundedUnits`, `refundedAmount`, `PARTIALLY_REFUNDED` or `REFUNDED`).
pub fn lines_refunded(
    order: &mut Order,
    request_id: &str,
    lines: &[(&str, i64)],
    at: &str,
) -> LinesRefunded {
    let items: Vec<RefundLine> = lines
        .iter()
        .map(|(product, quantity)| {
            let line = order
                .items
                .iter()
                .find(|l| l.product_id == *product)
                .unwrap_or_else(|| panic!("{product} is not a line of the order"));
            RefundLine {
                product_id: line.product_id.clone(),
                name: line.name.clone(),
                quantity: *quantity,
                unit_price: line.unit_price,
                amount: line.unit_price * quantity,
            }
        })
        .collect();
    for line in &items {
        *order
            .refunded_units
            .entry(line.product_id.clone())
            .or_default() += line.quantity;
        order.refunded_amount += line.amount;
    }
    order.order_status = if order.refunded_amount == order.order_amount {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    };
    let refund_request = RefundRequest {
        refund_request_id: request_id.into(),
        order_id: order.order_id.clone(),
        user_id: order.user_id.clone(),
        payment_id: "pay".into(),
        amount: items.iter().map(|l| l.amount).sum(),
        items,
        currency: order.currency.clone(),
        reason: "broken".into(),
        return_goods: true,
        request_status: RefundRequestStatus::Refunded,
        created_at: at.into(),
        updated_at: at.into(),
        decided_at: None,
        decided_by: None,
        decision_reason: None,
        provider_refund_id: None,
        restocked: true,
    };
    LinesRefunded {
        order: order.clone(),
        refund_request,
    }
}
