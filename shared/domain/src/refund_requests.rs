//! After-sales refund requests: a buyer asks for some lines' money back
//! (`POST /orders/{orderId}/refund-requests`), an admin approves or rejects,
//! and an approval returns those lines' amount through the payment's
//! provider with the request's id as the provider's refund id.
//!
//! The request's own life is a small state machine; what an approval does
//! to the order is [`OrderTransition::RefundLines`] or
//! [`OrderTransition::RefundLastLines`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::orders::{LineRequest, MAX_LINES, Order, OrderStatus, OrderTransition};

pub const MAX_REASON_CHARS: usize = 500;

/// `AfterSalesDays`' default: a completed order takes requests for 7 days.
pub const DEFAULT_AFTER_SALES: time::Duration = time::Duration::days(7);

/// Where a refund request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundRequestStatus {
    /// Waiting for an admin.
    Requested,
    /// Approved; the provider has not yet accepted the refund (an outage:
    /// approving again finishes it, refunding once).
    Approved,
    /// Refused, with a reason; its units are claimable again.
    Rejected,
    /// The provider accepted the refund; the order, its stock and its
    /// event moved with it.
    Refunded,
}

/// Something that happens to a refund request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundRequestTransition {
    Approve,
    Reject,
    /// The provider accepted the approved request's refund.
    RefundAccepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a refund request in {from:?} cannot take {transition:?}")]
pub struct ForbiddenRequestTransition {
    pub from: RefundRequestStatus,
    pub transition: RefundRequestTransition,
}

impl RefundRequestStatus {
    pub const ALL: [RefundRequestStatus; 4] = [
        RefundRequestStatus::Requested,
        RefundRequestStatus::Approved,
        RefundRequestStatus::Rejected,
        RefundRequestStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundRequestStatus::Requested => "REQUESTED",
            RefundRequestStatus::Approved => "APPROVED",
            RefundRequestStatus::Rejected => "REJECTED",
            RefundRequestStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn apply(
        self,
        transition: RefundRequestTransition,
    ) -> Result<RefundRequestStatus, ForbiddenRequestTransition> {
        use RefundRequestStatus::*;
        use RefundRequestTransition as T;
        match (self, transition) {
            (Requested, T::Approve) => Ok(Approved),
            (Requested, T::Reject) => Ok(Rejected),
            (Approved, T::RefundAccepted) => Ok(Refunded),
            (from, transition) => Err(ForbiddenRequestTransition { from, transition }),
        }
    }
}

/// One line of a refund request, priced as the order bought it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundLine {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub amount: i64,
}

/// A refund request as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    pub refund_request_id: String,
    pub order_id: String,
    pub user_id: String,
    /// The payment that paid the order: the refund goes back through it.
    pub payment_id: String,
    pub items: Vec<RefundLine>,
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    pub return_goods: bool,
    pub request_status: RefundRequestStatus,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The deciding admin's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_refund_id: Option<String>,
    /// Whether the approval put the lines' units back in stock (returned
    /// goods, or an order not shipped yet).
    #[serde(default)]
    pub restocked: bool,
}

impl RefundRequest {
    /// What approving this request does to `order`: the last lines' refund
    /// when no unit would remain unrefunded, else a partial one.
    pub fn order_transition(&self, order: &Order) -> OrderTransition {
        let units: i64 = self.items.iter().map(|l| l.quantity).sum();
        if units >= order.unrefunded_units() {
            OrderTransition::RefundLastLines
        } else {
            OrderTransition::RefundLines
        }
    }

    /// Whether the approval puts the units back in stock: goods that come
    /// back, or goods that never left (the order is not shipped).
    pub fn restocks(&self, order: &Order) -> bool {
        self.return_goods || order.shipment.is_none()
    }
}

/// The data of an `OrderLinesRefunded` event: the order after the refund
/// and the request that refunded its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinesRefunded {
    pub order: Order,
    pub refund_request: RefundRequest,
}

/// The body of `POST /orders/{orderId}/refund-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefundRequestBody {
    pub items: Vec<LineRequest>,
    pub reason: String,
    pub return_goods: bool,
}

/// Why an order takes no refund request now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRefundable {
    /// Not paid, already refunded whole, or being cancelled.
    #[error("only paid, shipped, completed or partly refunded orders take refund requests")]
    Status(OrderStatus),
    /// Completed more than `AfterSalesDays` ago.
    #[error("the after-sales window closed at {0}")]
    WindowClosed(String),
    /// A cancel is returning the whole payment.
    #[error("the order is being cancelled and refunded whole")]
    Cancelling,
}

/// The statuses a refund request may be made in.
pub const REFUNDABLE: [OrderStatus; 4] = [
    OrderStatus::Paid,
    OrderStatus::Shipped,
    OrderStatus::Completed,
    OrderStatus::PartiallyRefunded,
];

/// The earliest completion still inside the after-sales window at `now`
/// (the condition of the write that adds a request).
pub fn window_start(now: time::OffsetDateTime, after_sales: time::Duration) -> String {
    crate::clock::rfc3339(now - after_sales)
}

/// When the after-sales window of an order completed at `completed_at`
/// (RFC 3339) closes: its last refund request, and the moment its rebate
/// becomes available. `None` when the time does not parse.
pub fn window_closes(
    completed_at: &str,
    after_sales: time::Duration,
) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(completed_at, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t + after_sales)
}

/// Whether `order` takes refund requests at `now`: paid, shipped, partly
/// refunded, or completed less than `after_sales` ago, and not being
/// cancelled.
pub fn check_refundable(
    order: &Order,
    cancelling: bool,
    now: time::OffsetDateTime,
    after_sales: time::Duration,
) -> Result<(), NotRefundable> {
    if !REFUNDABLE.contains(&order.order_status) {
        return Err(NotRefundable::Status(order.order_status));
    }
    if cancelling {
        return Err(NotRefundable::Cancelling);
    }
    if let Some(completed_at) = &order.completed_at {
        let closes = window_closes(completed_at, after_sales).unwrap_or(now);
        if closes <= now {
            return Err(NotRefundable::WindowClosed(crate::clock::rfc3339(closes)));
        }
    }
    Ok(())
}

impl RefundRequestBody {
    /// The request's lines priced from `order`: 1 to 20 distinct lines of
    /// the order, each of 1 to the units bought; a reason of 1 to 500
    /// printable characters. Claims by other requests are the store's to
    /// check (409), since they race.
    pub fn lines_of(&self, order: &Order) -> Result<Vec<RefundLine>, FieldError> {
        let reason = self.reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON_CHARS
            || reason.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(FieldError::new(
                "reason",
                format!("must be 1 to {MAX_REASON_CHARS} printable characters"),
            ));
        }
        if self.items.is_empty() || self.items.len() > MAX_LINES {
            return Err(FieldError::new(
                "items",
                format!("must hold 1 to {MAX_LINES} lines"),
            ));
        }
        let mut seen = HashSet::new();
        let mut lines = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            let Some(bought) = order.items.iter().find(|l| l.product_id == item.product_id) else {
                return Err(FieldError::new(
                    format!("items[{i}].productId"),
                    format!(
                        "{:?} is not a line of order {}",
                        item.product_id, order.order_id
                    ),
                ));
            };
            if !seen.insert(item.product_id.as_str()) {
                return Err(FieldError::new(
                    format!("items[{i}].productId"),
                    format!(
                        "{} appears more than once; combine the quantities",
                        item.product_id
                    ),
                ));
            }
            if !(1..=bought.quantity).contains(&item.quantity) {
                return Err(FieldError::new(
                    format!("items[{i}].quantity"),
                    format!(
                        "must be an integer from 1 to {} (the units bought), got {}",
                        bought.quantity, item.quantity
                    ),
                ));
            }
            lines.push(RefundLine {
                product_id: bought.product_id.clone(),
                name: bought.name.clone(),
                quantity: item.quantity,
                unit_price: bought.unit_price,
                // Bounded by the line's own amount, which fits.
                amount: bought.unit_price * item.quantity,
            });
        }
        Ok(lines)
    }

    pub fn reason(&self) -> String {
        self.reason.trim().to_owned()
    }
}

/// Why a refund request operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RefundRequestError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("order {0:?} does not exist")]
    OrderNotFound(String),
    #[error("refund request {0:?} does not exist")]
    NotFound(String),
    #[error("order {order_id} takes no refund request: {why}")]
    NotRefundable {
        order_id: String,
        status: OrderStatus,
        why: NotRefundable,
    },
    /// Other requests claim the units (they raced this one, or came
    /// before): `claimable` are left of the line.
    #[error("items[{index}].quantity: only {claimable} unit(s) of {product_id} are left to refund")]
    QuantityExceeded {
        index: usize,
        product_id: String,
        claimable: i64,
    },
    #[error("refund request {id} is {status:?} already")]
    AlreadyDecided {
        id: String,
        status: RefundRequestStatus,
    },
    #[error(transparent)]
    Provider(#[from] crate::payments::ProviderError),
    #[error(transparent)]
    KeyReused(#[from] crate::error::KeyReused),
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
}

pub use crate::decisions::{Decision, DecisionBody};

#[cfg(test)]
mod tests {
    use super::RefundRequestStatus::*;
    use super::RefundRequestTransition as T;
    use super::*;
    use crate::orders::OrderLine;

    #[test]
    fn every_status_and_transition() {
        let allowed = [
            (Requested, T::Approve, Approved),
            (Requested, T::Reject, Rejected),
            (Approved, T::RefundAccepted, Refunded),
        ];
        for from in RefundRequestStatus::ALL {
            for t in [T::Approve, T::Reject, T::RefundAccepted] {
                let expected = allowed
                    .iter()
                    .find(|(f, tt, _)| *f == from && *tt == t)
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => assert_eq!(from.apply(t), Ok(to), "{from:?} --{t:?}-->"),
                    None => assert_eq!(
                        from.apply(t),
                        Err(ForbiddenRequestTransition {
                            from,
                            transition: t
                        }),
                        "{from:?} --{t:?}-->"
                    ),
                }
            }
            assert_eq!(RefundRequestStatus::parse(from.as_str()), Some(from));
            assert_eq!(serde_json::to_value(from).unwrap(), from.as_str());
        }
    }

    fn order(status: OrderStatus) -> Order {
        let line = |id: &str, quantity, unit_price| OrderLine {
            product_id: id.into(),
            name: format!("name of {id}"),
            category: "c".into(),
            quantity,
            unit_price,
            line_amount: quantity * unit_price,
        };
        Order {
            order_id: "o1".into(),
            user_id: "u1".into(),
            items: vec![line("a", 3, 1000), line("b", 1, 250)],
            order_amount: 3250,
            currency: "CNY".into(),
            order_status: status,
            created_at: "2026-12-01T00:00:00Z".into(),
            updated_at: "2026-12-01T00:00:00Z".into(),
            expires_at: "2026-12-01T00:15:00Z".into(),
            active_payment_id: Some("p1".into()),
            paid_payment_id: Some("p1".into()),
            shipment: None,
            completed_at: None,
            refund_claims: Default::default(),
            refunded_units: Default::default(),
            refunded_amount: 0,
            stock_taken: Default::default(),
        }
    }

    fn body(items: &[(&str, i64)], reason: &str) -> RefundRequestBody {
        RefundRequestBody {
            items: items
                .iter()
                .map(|(p, q)| LineRequest {
                    product_id: (*p).into(),
                    quantity: *q,
                })
                .collect(),
            reason: reason.into(),
            return_goods: true,
        }
    }

    #[test]
    fn lines_are_priced_as_bought() {
        let lines = body(&[("a", 2)], " broken ")
            .lines_of(&order(OrderStatus::Completed))
            .unwrap();
        assert_eq!(lines[0].amount, 2000);
        assert_eq!(lines[0].name, "name of a");
        assert_eq!(body(&[("a", 2)], " broken ").reason(), "broken");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let o = order(OrderStatus::Shipped);
        for (b, field) in [
            (body(&[("a", 1)], ""), "reason"),
            (body(&[("a", 1)], &"x".repeat(501)), "reason"),
            (body(&[], "r"), "items"),
            (body(&[("zz", 1)], "r"), "items[0].productId"),
            (body(&[("a", 1), ("a", 1)], "r"), "items[1].productId"),
            (body(&[("a", 0)], "r"), "items[0].quantity"),
            (body(&[("a", -1)], "r"), "items[0].quantity"),
            (body(&[("b", 2)], "r"), "items[0].quantity"),
        ] {
            assert_eq!(b.lines_of(&o).unwrap_err().field, field, "{b:?}");
        }
        assert!(
            serde_json::from_str::<RefundRequestBody>(
                r#"{"items":[{"productId":"a","quantity":1.5}],"reason":"r","returnGoods":true}"#
            )
            .is_err()
        );
    }

    #[test]
    fn refundable_states_and_the_window() {
        let now = time::macros::datetime!(2026-12-10 00:00 UTC);
        let week = DEFAULT_AFTER_SALES;
        for status in OrderStatus::ALL {
            let r = check_refundable(&order(status), false, now, week);
            assert_eq!(r.is_ok(), REFUNDABLE.contains(&status), "{status:?}");
        }
        assert_eq!(
            check_refundable(&order(OrderStatus::Paid), true, now, week),
            Err(NotRefundable::Cancelling)
        );
        let mut completed = order(OrderStatus::Completed);
        completed.completed_at = Some("2026-12-03T00:00:01Z".into());
        assert!(check_refundable(&completed, false, now, week).is_ok());
        completed.completed_at = Some("2026-12-03T00:00:00Z".into());
        assert_eq!(
            check_refundable(&completed, false, now, week),
            Err(NotRefundable::WindowClosed(
                "2026-12-10T00:00:00.000Z".into()
            ))
        );
        assert_eq!(window_start(now, week), "2026-12-03T00:00:00.000Z");
        // The window's close is also when the order's rebate is released.
        assert_eq!(
            window_closes("2026-12-03T00:00:00Z", week).map(crate::clock::rfc3339),
            Some("2026-12-10T00:00:00.000Z".into())
        );
        assert_eq!(window_closes("yesterday", week), None);
    }

    #[test]
    fn the_last_units_refund_the_order() {
        let mut o = order(OrderStatus::Shipped);
        let request = |items: Vec<(&str, i64)>| RefundRequest {
            refund_request_id: "r".into(),
            order_id: "o1".into(),
            user_id: "u1".into(),
            payment_id: "p1".into(),
            items: items
                .into_iter()
                .map(|(p, q)| RefundLine {
                    product_id: p.into(),
                    name: String::new(),
                    quantity: q,
                    unit_price: 1,
                    amount: q,
                })
                .collect(),
            amount: 0,
            currency: "CNY".into(),
            reason: "r".into(),
            return_goods: false,
            request_status: Requested,
            created_at: String::new(),
            updated_at: String::new(),
            decided_at: None,
            decided_by: None,
            decision_reason: None,
            provider_refund_id: None,
            restocked: false,
        };
        assert_eq!(
            request(vec![("a", 3)]).order_transition(&o),
            OrderTransition::RefundLines
        );
        o.refunded_units.insert("a".into(), 3);
        assert_eq!(
            request(vec![("b", 1)]).order_transition(&o),
            OrderTransition::RefundLastLines
        );
        // Shipped goods come back only if returned; unshipped ones never left.
        o.shipment = Some(crate::orders::Shipment {
            carrier: "c".into(),
            tracking_number: "t".into(),
            shipped_at: String::new(),
        });
        assert!(!request(vec![("b", 1)]).restocks(&o));
        let mut returned = request(vec![("b", 1)]);
        returned.return_goods = true;
        assert!(returned.restocks(&o));
        o.shipment = None;
        assert!(request(vec![("b", 1)]).restocks(&o));
    }

    #[test]
    fn a_rejection_names_its_reason() {
        let d = |decision, reason: Option<&str>| DecisionBody {
            decision,
            reason: reason.map(str::to_owned),
        };
        assert_eq!(d(Decision::Approve, None).validate(), Ok(None));
        assert_eq!(
            d(Decision::Reject, Some("  "))
                .validate()
                .unwrap_err()
                .field,
            "reason"
        );
        assert_eq!(
            d(Decision::Reject, Some(" worn ")).validate(),
            Ok(Some("worn".into()))
        );
    }
}
