//! Orders: the state machine every status change goes through, the stored
//! shape, and the validation of `POST /orders`.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{Product, validate_product_id};
use crate::error::{FieldError, KeyReused, RateLimited, StoreError};
use crate::money::{DEFAULT_CURRENCY, MAX_AMOUNT, MAX_EXACT_IN_JSON};
use crate::stock_shards::{ShardUnits, units_between};

pub const MAX_LINES: usize = 20;
pub const MAX_QUANTITY: i64 = 1000;
// Every order amount (and so every payment, refund and rebate base) fits.
const _: () = assert!(MAX_AMOUNT * MAX_QUANTITY * (MAX_LINES as i64) <= MAX_EXACT_IN_JSON);

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentFailed,
    Cancelled,
    Expired,
    Refunded,
    /// Handed to a carrier; no longer cancellable.
    Shipped,
    /// The buyer confirmed receipt, or the auto-confirm sweep did.
    Completed,
    /// Some lines' money went back by approved refund requests; the rest
    /// stays sold (and, unshipped, may still ship).
    PartiallyRefunded,
}

/// Something that happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderTransition {
    /// The provider confirmed a payment.
    PaymentSucceeded,
    /// The provider reported a failed payment; the stock stays reserved for
    /// a retry until cancel or expiry.
    PaymentFailed,
    /// The owner cancelled before paying.
    Cancel,
    /// The payment window passed without a payment.
    Expire,
    /// A paid order's money went back to the customer.
    Refund,
    /// The shop handed a paid order to a carrier.
    Ship,
    /// The buyer confirmed receipt (or the sweep did, `AutoConfirmDays`
    /// after shipping).
    ConfirmReceipt,
    /// An approved refund request returned some lines' money, and units
    /// remain that were not refunded.
    RefundLines,
    /// An approved refund request returned the money of every unit still
    /// unrefunded: nothing is left to refund.
    RefundLastLines,
}

/// How a transition moves an order's units between the product's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockMove {
    /// `reserved` → `stock`: the order gave its units back.
    Release,
    /// `reserved` → `sold`: the order was paid for.
    Sell,
    /// `sold` → `stock`: a paid order was refunded.
    Restock,
    /// Nothing moves (reserved units stay reserved, sold ones sold).
    Keep,
}

impl OrderTransition {
    pub fn stock_move(self) -> StockMove {
        match self {
            OrderTransition::PaymentSucceeded => StockMove::Sell,
            OrderTransition::PaymentFailed
            | OrderTransition::Ship
            | OrderTransition::ConfirmReceipt => StockMove::Keep,
            // Per line, not per order: only the refunded lines' returned
            // units go back (see `RefundRequest::restocks`).
            OrderTransition::RefundLines | OrderTransition::RefundLastLines => StockMove::Keep,
            OrderTransition::Cancel | OrderTransition::Expire => StockMove::Release,
            OrderTransition::Refund => StockMove::Restock,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order in {from:?} cannot take {transition:?}")]
pub struct ForbiddenTransition {
    pub from: OrderStatus,
    pub transition: OrderTransition,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::PaymentFailed,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
        OrderStatus::Refunded,
        OrderStatus::Shipped,
        OrderStatus::Completed,
        OrderStatus::PartiallyRefunded,
    ];

    /// The name stored in DynamoDB and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "PENDING_PAYMENT",
            OrderStatus::Paid => "PAID",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::Refunded => "REFUNDED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
        }
    }

    /// Whether the order's units are still `reserved` in the catalog.
    pub fn holds_reservation(self) -> bool {
        matches!(
            self,
            OrderStatus::PendingPayment | OrderStatus::PaymentFailed
        )
    }

    /// The state after `transition`, or why it is not allowed.
    pub fn apply(self, transition: OrderTransition) -> Result<OrderStatus, ForbiddenTransition> {
        use OrderStatus::*;
        use OrderTransition as T;
        match (self, transition) {
            (PendingPayment | PaymentFailed, T::PaymentSucceeded) => Ok(Paid),
            (PendingPayment, T::PaymentFailed) => Ok(PaymentFailed),
            (PendingPayment | PaymentFailed, T::Cancel) => Ok(Cancelled),
            (PendingPayment | PaymentFailed, T::Expire) => Ok(Expired),
            (Paid, T::Refund) => Ok(Refunded),
            (Paid, T::Ship) => Ok(Shipped),
            (Shipped, T::ConfirmReceipt) => Ok(Completed),
            // What remains of a partly refunded order still ships and is
            // still received (the order's shipment facts decide which, see
            // `Order::next_status`).
            (PartiallyRefunded, T::Ship) => Ok(Shipped),
            (PartiallyRefunded, T::ConfirmReceipt) => Ok(Completed),
            (Paid | Shipped | Completed | PartiallyRefunded, T::RefundLines) => {
                Ok(PartiallyRefunded)
            }
            (Paid | Shipped | Completed | PartiallyRefunded, T::RefundLastLines) => Ok(Refunded),
            (from, transition) => Err(ForbiddenTransition { from, transition }),
        }
    }
}

impl OrderTransition {
    /// Every status this transition may start from: the condition of the
    /// conditional write that performs it, so that of two racing changes
    /// (a cancel and a payment, say) exactly one can win.
    pub fn allowed_from(self) -> Vec<OrderStatus> {
        OrderStatus::ALL
            .into_iter()
            .filter(|s| s.apply(self).is_ok())
            .collect()
    }
}

/// One line of an order, priced from the catalog when the order was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: String,
    pub name: String,
    /// The product's category when the order was made (rebate rules rate
    /// by category); empty on orders made before lines carried it.
    #[serde(default)]
    pub category: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_amount: i64,
}

/// An order as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: String,
    pub user_id: String,
    pub items: Vec<OrderLine>,
    pub order_amount: i64,
    pub currency: String,
    pub order_status: OrderStatus,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    /// The payment started last for this order, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_payment_id: Option<String>,
    /// The payment whose success made the order `PAID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<Shipment>,
    /// When the order became `COMPLETED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Units per product that refund requests claim (asked for and not
    /// rejected): a line's claims never exceed what was bought, by the
    /// condition of the write that adds them.
    #[serde(default)]
    pub refund_claims: BTreeMap<String, i64>,
    /// Units per product whose money went back by approved requests.
    #[serde(default)]
    pub refunded_units: BTreeMap<String, i64>,
    /// Minor units returned by approved refund requests.
    #[serde(default)]
    pub refunded_amount: i64,
    /// Where each sharded product's units were reserved (issue 25), for the
    /// moves that give them back; stored on the order item, never shown. A
    /// product absent here took all its units from shard 0.
    #[serde(default, skip_serializing)]
    pub stock_taken: BTreeMap<String, Vec<ShardUnits>>,
}

/// How a shipped order travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: String,
}

pub const MAX_CARRIER_CHARS: usize = 64;
pub const MAX_TRACKING_NUMBER_CHARS: usize = 64;

/// The body of `POST /orders/{orderId}/shipments`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShipmentRequest {
    pub carrier: String,
    pub tracking_number: String,
}

impl ShipmentRequest {
    /// Carrier: 1–64 printable characters (a name, e.g. `SF Express` or
    /// `顺丰速运`). Tracking number: 1–64 letters, digits or `-`, as
    /// carriers print them.
    pub fn validate(&self) -> Result<(), FieldError> {
        let carrier = self.carrier.trim();
        if carrier.is_empty()
            || carrier.chars().count() > MAX_CARRIER_CHARS
            || carrier.chars().any(char::is_control)
        {
            return Err(FieldError::new(
                "carrier",
                "must be 1 to 64 printable characters",
            ));
        }
        let tracking = &self.tracking_number;
        if tracking.is_empty()
            || tracking.len() > MAX_TRACKING_NUMBER_CHARS
            || !tracking
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(FieldError::new(
                "trackingNumber",
                "must be 1 to 64 letters, digits or '-'",
            ));
        }
        Ok(())
    }

    pub fn shipment(&self, shipped_at: &str) -> Shipment {
        Shipment {
            carrier: self.carrier.trim().to_owned(),
            tracking_number: self.tracking_number.clone(),
            shipped_at: shipped_at.to_owned(),
        }
    }
}

impl Order {
    /// The status `transition` leads to from this order, or why not: the
    /// status table, and for a partly refunded order its shipment facts
    /// (it ships once, and is received once, after shipping).
    pub fn next_status(
        &self,
        transition: OrderTransition,
    ) -> Result<OrderStatus, ForbiddenTransition> {
        let forbidden = ForbiddenTransition {
            from: self.order_status,
            transition,
        };
        let to = self.order_status.apply(transition)?;
        let fits = match transition {
            OrderTransition::Ship => self.shipment.is_none(),
            OrderTransition::ConfirmReceipt => {
                self.shipment.is_some() && self.completed_at.is_none()
            }
            _ => true,
        };
        if fits { Ok(to) } else { Err(forbidden) }
    }

    /// The shards that units `skip..skip + take` of the line of
    /// `product_id` were taken from (a line's units in the order recorded).
    pub fn shard_units(&self, product_id: &str, skip: i64, take: i64) -> Vec<ShardUnits> {
        match self.stock_taken.get(product_id) {
            Some(parts) => units_between(parts, skip, take),
            None if take > 0 => vec![ShardUnits {
                shard: 0,
                quantity: take,
            }],
            None => Vec::new(),
        }
    }

    /// Units of `product_id` bought and not yet claimed by a refund request.
    pub fn claimable_units(&self, product_id: &str) -> i64 {
        let bought = self
            .items
            .iter()
            .find(|l| l.product_id == product_id)
            .map_or(0, |l| l.quantity);
        bought - self.refund_claims.get(product_id).copied().unwrap_or(0)
    }

    /// Units bought and not refunded, over every line.
    pub fn unrefunded_units(&self) -> i64 {
        self.items.iter().map(|l| l.quantity).sum::<i64>()
            - self.refunded_units.values().sum::<i64>()
    }

    /// The late-payment rule: a payment's success pays this order only if it
    /// was settled (its callback reached us) no later than the end of the
    /// payment window plus `grace`. It does not depend on when the expiry
    /// sweep runs: the sweep expires an order only after that same moment,
    /// and a success settled later is refunded even if the order is still
    /// unpaid.
    pub fn takes_payment_settled_at(&self, settled_at: &str, grace: time::Duration) -> bool {
        use time::OffsetDateTime;
        use time::format_description::well_known::Rfc3339;
        let (Ok(expires_at), Ok(settled_at)) = (
            OffsetDateTime::parse(&self.expires_at, &Rfc3339),
            OffsetDateTime::parse(settled_at, &Rfc3339),
        ) else {
            return false;
        };
        expires_at
            .checked_add(grace)
            .is_some_and(|last| settled_at <= last)
    }
}

/// A line as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LineRequest {
    pub product_id: String,
    pub quantity: i64,
}

/// The body of `POST /orders`: a list of lines, or one line inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateOrderRequest {
    pub items: Option<Vec<LineRequest>>,
    pub product_id: Option<String>,
    pub quantity: Option<i64>,
    /// Never trusted: if present it must be the caller.
    pub user_id: Option<String>,
}

impl CreateOrderRequest {
    /// The validated lines, in the client's order.
    pub fn lines(self) -> Result<Vec<LineRequest>, FieldError> {
        let lines = match (self.items, self.product_id, self.quantity) {
            (Some(items), None, None) => items,
            (None, Some(product_id), Some(quantity)) => vec![LineRequest {
                product_id,
                quantity,
            }],
            (None, Some(_), None) => {
                return Err(FieldError::new("quantity", "is required with productId"));
            }
            (None, None, Some(_)) => {
                return Err(FieldError::new("productId", "is required with quantity"));
            }
            (None, None, None) => {
                return Err(FieldError::new(
                    "items",
                    "is required: send {\"items\": [{\"productId\", \"quantity\"}]} or {\"productId\", \"quantity\"}",
                ));
            }
            (Some(_), _, _) => {
                return Err(FieldError::new(
                    "items",
                    "send either items or productId/quantity, not both",
                ));
            }
        };
        if lines.is_empty() || lines.len() > MAX_LINES {
            return Err(FieldError::new(
                "items",
                format!("must hold 1 to {MAX_LINES} lines"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, line) in lines.iter().enumerate() {
            validate_product_id(&line.product_id).map_err(|_| {
                FieldError::new(format!("items[{i}].productId"), "is not a valid product id")
            })?;
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                return Err(FieldError::new(
                    format!("items[{i}].quantity"),
                    format!(
                        "must be an integer from 1 to {MAX_QUANTITY}, got {}",
                        line.quantity
                    ),
                ));
            }
            if !seen.insert(line.product_id.as_str()) {
                return Err(FieldError::new(
                    format!("items[{i}].productId"),
                    format!(
                        "{} appears more than once; combine the quantities",
                        line.product_id
                    ),
                ));
            }
        }
        Ok(lines)
    }
}

/// Prices the lines from the catalog. Every product must exist (else 404)
/// and share one currency (else 400).
pub fn price_lines(
    lines: &[LineRequest],
    products: &[Product],
) -> Result<(Vec<OrderLine>, i64, String), OrderError> {
    let mut priced = Vec::with_capacity(lines.len());
    let mut total: i64 = 0;
    let mut currency: Option<&str> = None;
    for line in lines {
        let product = products
            .iter()
            .find(|p| p.product_id == line.product_id)
            .ok_or_else(|| OrderError::ProductNotFound(line.product_id.clone()))?;
        match currency {
            None => currency = Some(&product.currency),
            Some(c) if c != product.currency => {
                return Err(FieldError::new(
                    "items",
                    format!(
                        "products are priced in different currencies ({c} and {}); order them separately",
                        product.currency
                    ),
                )
                .into());
            }
            Some(_) => {}
        }
        // Bounded: price <= MAX_AMOUNT and quantity <= MAX_QUANTITY, so no
        // line or 20-line total can overflow i64; checked all the same.
        let line_amount = product
            .price
            .checked_mul(line.quantity)
            .filter(|a| *a <= MAX_AMOUNT * MAX_QUANTITY);
        let line_amount =
            line_amount.ok_or_else(|| FieldError::new("items", "order amount is too large"))?;
        total = total
            .checked_add(line_amount)
            .ok_or_else(|| FieldError::new("items", "order amount is too large"))?;
        priced.push(OrderLine {
            product_id: product.product_id.clone(),
            name: product.name.clone(),
            category: product.category.clone(),
            quantity: line.quantity,
            unit_price: product.price,
            line_amount,
        });
    }
    Ok((
        priced,
        total,
        currency.unwrap_or(DEFAULT_CURRENCY).to_owned(),
    ))
}

/// Whether `id` could be an order id at all (see `ids::plausible_id`).
pub fn plausible_order_id(id: &str) -> bool {
    crate::ids::plausible_id(id)
}

/// A line that asked for more than its product holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    pub product_id: String,
    pub requested: i64,
    pub available: i64,
}

/// Why an order operation did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("order {0:?} does not exist")]
    NotFound(String),
    #[error("product {0:?} does not exist")]
    ProductNotFound(String),
    /// Every short line, in the request's order (never empty).
    #[error("not enough stock for {} line(s)", .0.len())]
    InsufficientStock(Vec<Shortage>),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    KeyReused(#[from] KeyReused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OrderError {
    pub fn not_found(order_id: &str) -> Self {
        Self::NotFound(order_id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::OrderTransition as T;
    use super::*;

    #[test]
    fn every_allowed_transition() {
        let allowed = [
            (PendingPayment, T::PaymentSucceeded, Paid),
            (PaymentFailed, T::PaymentSucceeded, Paid),
            (PendingPayment, T::PaymentFailed, PaymentFailed),
            (PendingPayment, T::Cancel, Cancelled),
            (PaymentFailed, T::Cancel, Cancelled),
            (PendingPayment, T::Expire, Expired),
            (PaymentFailed, T::Expire, Expired),
            (Paid, T::Refund, Refunded),
            (Paid, T::Ship, Shipped),
            (Shipped, T::ConfirmReceipt, Completed),
            (PartiallyRefunded, T::Ship, Shipped),
            (PartiallyRefunded, T::ConfirmReceipt, Completed),
            (Paid, T::RefundLines, PartiallyRefunded),
            (Shipped, T::RefundLines, PartiallyRefunded),
            (Completed, T::RefundLines, PartiallyRefunded),
            (PartiallyRefunded, T::RefundLines, PartiallyRefunded),
            (Paid, T::RefundLastLines, Refunded),
            (Shipped, T::RefundLastLines, Refunded),
            (Completed, T::RefundLastLines, Refunded),
            (PartiallyRefunded, T::RefundLastLines, Refunded),
        ];
        for (from, t, to) in allowed {
            assert_eq!(from.apply(t), Ok(to), "{from:?} --{t:?}-->");
        }
        // Every other pair is forbidden.
        let mut forbidden = 0;
        for from in OrderStatus::ALL {
            for t in TRANSITIONS {
                if !allowed.iter().any(|(f, tt, _)| *f == from && *tt == t) {
                    assert_eq!(
                        from.apply(t),
                        Err(ForbiddenTransition {
                            from,
                            transition: t
                        }),
                        "{from:?} --{t:?}-->"
                    );
                    forbidden += 1;
                }
            }
        }
        assert_eq!(forbidden, 9 * TRANSITIONS.len() - allowed.len());
    }

    const TRANSITIONS: [OrderTransition; 9] = [
        T::PaymentSucceeded,
        T::PaymentFailed,
        T::Cancel,
        T::Expire,
        T::Refund,
        T::Ship,
        T::ConfirmReceipt,
        T::RefundLines,
        T::RefundLastLines,
    ];

    #[test]
    fn final_states_accept_nothing() {
        for from in [Cancelled, Expired, Refunded] {
            for t in TRANSITIONS {
                assert!(from.apply(t).is_err());
            }
        }
        // A completed order takes only refunds of its lines.
        for t in TRANSITIONS {
            assert_eq!(
                Completed.apply(t).is_ok(),
                matches!(t, T::RefundLines | T::RefundLastLines),
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_partly_refunded_order_ships_and_is_received_once() {
        let mut order = Order {
            order_id: "o".into(),
            user_id: "u".into(),
            items: vec![],
            order_amount: 0,
            currency: "CNY".into(),
            order_status: PartiallyRefunded,
            created_at: String::new(),
            updated_at: String::new(),
            expires_at: String::new(),
            active_payment_id: None,
            paid_payment_id: None,
            shipment: None,
            completed_at: None,
            refund_claims: Default::default(),
            refunded_units: Default::default(),
            refunded_amount: 0,
            stock_taken: Default::default(),
        };
        assert_eq!(order.next_status(T::Ship), Ok(Shipped));
        assert!(order.next_status(T::ConfirmReceipt).is_err());
        order.shipment = Some(Shipment {
            carrier: "c".into(),
            tracking_number: "t".into(),
            shipped_at: String::new(),
        });
        assert!(order.next_status(T::Ship).is_err());
        assert_eq!(order.next_status(T::ConfirmReceipt), Ok(Completed));
        order.completed_at = Some(String::new());
        assert!(order.next_status(T::ConfirmReceipt).is_err());
        assert_eq!(order.next_status(T::RefundLines), Ok(PartiallyRefunded));
    }

    #[test]
    fn conditions_come_from_the_machine() {
        assert_eq!(
            T::Cancel.allowed_from(),
            vec![PendingPayment, PaymentFailed]
        );
        assert_eq!(
            T::Expire.allowed_from(),
            vec![PendingPayment, PaymentFailed]
        );
        assert_eq!(T::Refund.allowed_from(), vec![Paid]);
        assert_eq!(T::PaymentFailed.allowed_from(), vec![PendingPayment]);
        assert_eq!(T::Ship.allowed_from(), vec![Paid, PartiallyRefunded]);
        assert_eq!(
            T::ConfirmReceipt.allowed_from(),
            vec![Shipped, PartiallyRefunded]
        );
        assert_eq!(
            T::RefundLines.allowed_from(),
            vec![Paid, Shipped, Completed, PartiallyRefunded]
        );
        // Shipped or completed, an order is no longer cancelled (nor
        // refunded whole): its money comes back by refund requests.
        assert!(!T::Cancel.allowed_from().contains(&Shipped));
        assert!(!T::Refund.allowed_from().contains(&Shipped));
    }

    #[test]
    fn shipments_name_a_carrier_and_a_tracking_number() {
        let ok = ShipmentRequest {
            carrier: " SF Express ".into(),
            tracking_number: "SF1234567890".into(),
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.shipment("t").carrier, "SF Express");
        for (carrier, tracking, field) in [
            ("", "SF1", "carrier"),
            ("   ", "SF1", "carrier"),
            (&*"x".repeat(65), "SF1", "carrier"),
            ("S\tF", "SF1", "carrier"),
            ("顺丰速运", "", "trackingNumber"),
            ("顺丰速运", "SF 1", "trackingNumber"),
            ("顺丰速运", &*"1".repeat(65), "trackingNumber"),
        ] {
            let req = ShipmentRequest {
                carrier: carrier.into(),
                tracking_number: tracking.into(),
            };
            assert_eq!(
                req.validate().unwrap_err().field,
                field,
                "{carrier:?} {tracking:?}"
            );
        }
    }

    #[test]
    fn stock_moves_keep_reservations_consistent() {
        // A transition releases or sells the reservation exactly when it
        // leaves the states that hold one.
        for from in OrderStatus::ALL {
            for t in TRANSITIONS {
                if let Ok(to) = from.apply(t) {
                    let moves_reservation =
                        matches!(t.stock_move(), StockMove::Release | StockMove::Sell);
                    assert_eq!(
                        moves_reservation,
                        from.holds_reservation() && !to.holds_reservation(),
                        "{from:?} --{t:?}-->"
                    );
                    assert_eq!(
                        t.stock_move() == StockMove::Restock,
                        t == T::Refund,
                        "{from:?} --{t:?}-->"
                    );
                }
            }
        }
    }

    #[test]
    fn reservations_are_held_while_payable() {
        let holding: Vec<_> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.holds_reservation())
            .collect();
        assert_eq!(holding, vec![PendingPayment, PaymentFailed]);
    }

    #[test]
    fn status_names_match_serde() {
        for s in OrderStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    fn lines_of(body: &str) -> Result<Vec<LineRequest>, FieldError> {
        serde_json::from_str::<CreateOrderRequest>(body)
            .map_err(|e| FieldError::new("body", e.to_string()))?
            .lines()
    }

    fn field(r: Result<Vec<LineRequest>, FieldError>) -> String {
        r.unwrap_err().field
    }

    #[test]
    fn both_request_forms() {
        assert_eq!(
            lines_of(r#"{"productId":"a","quantity":2}"#).unwrap(),
            vec![LineRequest {
                product_id: "a".into(),
                quantity: 2
            }]
        );
        assert_eq!(
            lines_of(
                r#"{"items":[{"productId":"a","quantity":1},{"productId":"b","quantity":3}]}"#
            )
            .unwrap()
            .len(),
            2
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        assert_eq!(field(lines_of("{}")), "items");
        assert_eq!(field(lines_of(r#"{"items":[]}"#)), "items");
        assert_eq!(field(lines_of(r#"{"productId":"a"}"#)), "quantity");
        assert_eq!(field(lines_of(r#"{"quantity":1}"#)), "productId");
        assert_eq!(
            field(lines_of(
                r#"{"items":[{"productId":"a","quantity":1}],"productId":"a","quantity":1}"#
            )),
            "items"
        );
        assert_eq!(
            field(lines_of(r#"{"items":[{"productId":"a","quantity":0}]}"#)),
            "items[0].quantity"
        );
        assert_eq!(
            field(lines_of(r#"{"items":[{"productId":"a","quantity":1001}]}"#)),
            "items[0].quantity"
        );
        assert_eq!(
            field(lines_of(
                r#"{"items":[{"productId":"a","quantity":1},{"productId":"a","quantity":1}]}"#
            )),
            "items[1].productId"
        );
        assert_eq!(
            field(lines_of(r#"{"items":[{"productId":"a b","quantity":1}]}"#)),
            "items[0].productId"
        );
        let many: Vec<String> = (0..21)
            .map(|i| format!(r#"{{"productId":"p{i}","quantity":1}}"#))
            .collect();
        assert_eq!(
            field(lines_of(&format!(r#"{{"items":[{}]}}"#, many.join(",")))),
            "items"
        );
        assert!(lines_of(r#"{"productId":"a","quantity":1.5}"#).is_err());
    }

    fn product(id: &str, price: i64, currency: &str) -> Product {
        Product {
            product_id: id.into(),
            name: format!("name of {id}"),
            description: String::new(),
            category: "c".into(),
            price,
            currency: currency.into(),
            stock: 10,
            reserved: 0,
            sold: 0,
            stock_shards: 1,
            version: 1,
            updated_at: String::new(),
        }
    }

    #[test]
    fn pricing_uses_the_catalog() {
        let lines = vec![
            LineRequest {
                product_id: "a".into(),
                quantity: 3,
            },
            LineRequest {
                product_id: "b".into(),
                quantity: 1,
            },
        ];
        let (priced, total, currency) = price_lines(
            &lines,
            &[product("b", 250, "CNY"), product("a", 1999, "CNY")],
        )
        .unwrap();
        assert_eq!(total, 3 * 1999 + 250);
        assert_eq!(currency, "CNY");
        assert_eq!(priced[0].line_amount, 5997);
        assert_eq!(priced[0].name, "name of a");
    }

    #[test]
    fn pricing_rejects_unknown_and_mixed() {
        let lines = vec![
            LineRequest {
                product_id: "a".into(),
                quantity: 1,
            },
            LineRequest {
                product_id: "b".into(),
                quantity: 1,
            },
        ];
        assert_eq!(
            price_lines(&lines, &[product("a", 1, "CNY")]).unwrap_err(),
            OrderError::ProductNotFound("b".into())
        );
        let e = price_lines(&lines, &[product("a", 1, "CNY"), product("b", 1, "USD")]).unwrap_err();
        assert!(matches!(e, OrderError::Invalid(f) if f.field == "items"));
    }
}
