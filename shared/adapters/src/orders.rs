//! The orders table and the transactions that move stock.
//!
//! Stock only ever moves inside `TransactWriteItems` whose conditions are
//! checked by DynamoDB itself (`stock >= :q`, `reserved >= :q`, the order's
//! current status), never by reading and writing back, so no interleaving of
//! clients can oversell or release a reservation twice.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    CancellationReason, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use domain::catalog::Product;
use domain::clock;
use domain::error::{RateLimited, StoreError};
use domain::events::{Envelope, EventType};
use domain::ids::new_id;
use domain::orders::{
    LineRequest, Order, OrderError, OrderStatus, OrderTransition, Shortage, price_lines,
};
use domain::stock_shards::{ShardCounters, ShardUnits, allocate, sample_two};
use std::collections::HashMap;
use time::OffsetDateTime;

use crate::config::Tables;
use crate::db::{
    DbError, Item, Read, Transact, backoff, build_err, condition_failed, conflicted, n, number, s,
    transact,
};
use crate::due_index::DueIndex;
use crate::idempotency::{self, IdempotencyKey, ReplayError, StoredResponse};
use crate::metrics::{self, Metric};
use crate::ratelimit::{Guess, Next, RateLimit};
use crate::stock_shards;

pub const USER_INDEX: &str = "byUser";
pub const USER_INDEX_KEY: &[&str] = &["orderId", "userId", "createdAt"];
pub const EXPIRY_INDEX: &str = "byReservationExpiry";
/// Shipped orders by when the sweep confirms their receipt.
pub const CONFIRM_INDEX: &str = "byConfirmDue";
/// Paid orders not yet shipped, oldest payment first: the shop's queue of
/// orders to ship. Sparse (only such orders carry `shipShard`) and spread
/// over [`crate::due_index::SHARDS`] partitions, so that a flash sale's
/// payments do not all write one index partition.
pub const TO_SHIP_INDEX: &str = "toShip";
/// The `nextToken` of the queue: where the last page ended.
pub const TO_SHIP_CURSOR: &[&str] = &["paidAt", "orderId"];
/// Attempts at a transaction that lost a race to another transaction on the
/// same items (`TransactionConflict`) or to a price change.
const MAX_ATTEMPTS: u32 = 12;

#[derive(Clone, Debug)]
pub struct Orders {
    client: Client,
    tables: Tables,
    /// Per-user limit on placing orders (none unless configured); its
    /// token is taken inside the order's own transaction.
    rate_limit: Option<RateLimit>,
    /// How long past its window an order waits before it is expired, so
    /// that a success settled in that time still pays it (see
    /// [`Order::takes_payment_settled_at`]).
    late_payment_grace: time::Duration,
    /// How long after shipping the sweep confirms receipt (`AutoConfirmDays`).
    auto_confirm_after: time::Duration,
    /// How many stock shards each sharded product had when this container
    /// last read it, so that an order reads two of them in the same request
    /// as the products (a count that grew since bumped the version, so the
    /// transaction catches a stale one). Only sharded products are kept.
    shard_counts: std::sync::Arc<std::sync::Mutex<HashMap<String, u32>>>,
}

/// How many sharded products' counts a container remembers (sharding is
/// for the few hot products of a sale).
const MAX_REMEMBERED_SHARD_COUNTS: usize = 1024;

/// `AutoConfirmDays`' default: 10 days.
pub const DEFAULT_AUTO_CONFIRM: time::Duration = time::Duration::days(10);

/// What `POST /orders` asked for, validated.
pub struct OrderRequest<'a> {
    pub user_id: &'a str,
    pub lines: Vec<LineRequest>,
    pub idempotency: Option<(IdempotencyKey, String)>,
    pub correlation_id: &'a str,
    pub payment_window: Duration,
}

pub enum Placement {
    /// The order, and the attempts that went before it.
    Placed(Box<Order>, Retries),
    /// The same request was made before with this Idempotency-Key.
    Replayed(StoredResponse),
}

/// Transactions of an order that were cancelled before one committed, by
/// why: another transaction on the same item, or a shard found short of
/// what it was read to hold (issue 25's bench counts both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries {
    pub conflicts: u32,
    pub shortfalls: u32,
}

/// Most items one `TransactWriteItems` takes.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// An order's transaction, and where its parts are in it.
struct OrderTransaction {
    items: Vec<TransactWriteItem>,
    /// The reservations, first in the transaction: a line's units on one
    /// shard each.
    reservations: Vec<(usize, ShardUnits)>,
    bucket_at: usize,
}

/// The products of an order as read, and the shards read of each sharded
/// one: `(shard, stock)` of every shard, or of two drawn at random.
struct Stock {
    products: Vec<Product>,
    shards: HashMap<String, Vec<(u32, i64)>>,
}

/// Why a status change's transaction was cancelled.
enum NotApplied {
    /// The answer: the marker was there, or the order is in a state the
    /// transition does not leave.
    Final(Transition),
    /// Only the order's payment pointer moved: go again with it as it is.
    OrderMoved(Box<Order>),
    /// The pending payment settled meanwhile: go again at once (it is read
    /// again).
    PaymentSettled,
    /// Another transaction held the same items: back off and go again.
    LostRace,
}

/// Reads a cancelled status change (`change` says where its parts are).
fn why_not_applied(
    order: &Order,
    transition: OrderTransition,
    context: &TransitionContext,
    change: &StatusChange,
    reasons: &[CancellationReason],
) -> Result<NotApplied, DbError> {
    if context.marker.is_some() && reasons.last().is_some_and(condition_failed) {
        return Ok(NotApplied::Final(Transition::AlreadyProcessed));
    }
    if let Some(reason) = reasons.first().filter(|r| condition_failed(r)) {
        let current = reason
            .item()
            .and_then(|item| serde_dynamo::from_item::<_, Order>(item.clone()).ok());
        return Ok(match current {
            // Still in a state this transition leaves, so only its payment
            // pointer moved (a payment started meanwhile).
            Some(current)
                if current.order_status.apply(transition).is_ok()
                    && current.active_payment_id != order.active_payment_id =>
            {
                NotApplied::OrderMoved(Box::new(current))
            }
            current => NotApplied::Final(Transition::LostRace(current.map(|o| o.order_status))),
        });
    }
    if reasons
        .get(change.counters.clone())
        .is_some_and(|r| r.iter().any(condition_failed))
    {
        // A counter would go negative: the invariant is broken somewhere;
        // refuse to make it worse and let an operator look.
        tracing::error!(order_id = %order.order_id, ?transition, "product counters below the order's quantities");
        return Err(DbError::Corrupt(format!(
            "product counters below order {} quantities",
            order.order_id
        )));
    }
    if change
        .payment_at
        .is_some_and(|i| reasons.get(i).is_some_and(condition_failed))
    {
        return Ok(NotApplied::PaymentSettled);
    }
    if conflicted(reasons) {
        return Ok(NotApplied::LostRace);
    }
    Err(DbError::Unavailable(format!(
        "{transition:?} cancelled: {reasons:?}"
    )))
}

/// A status change's transaction, and where its parts are in it.
struct StatusChange {
    items: Vec<TransactWriteItem>,
    /// The lines' stock moves.
    counters: std::ops::Range<usize>,
    /// The expiry of the order's pending payment, if it has one to close.
    payment_at: Option<usize>,
}

/// Why a placement transaction was cancelled, when it is not final.
enum NotPlaced {
    Replay(StoredResponse),
    /// Only the guess of the user's token bucket was wrong: retry at once.
    BucketGuessed(Guess),
    /// A shard held less than it was read to: read every shard again,
    /// strongly consistent, and place from what they hold.
    ShardShort(Option<Guess>),
    /// Another transaction or a price change got there first: back off and
    /// retry (with the bucket as read, if it was read).
    LostRace(Option<Guess>),
}

/// The outcome of a status change.
#[derive(Debug)]
pub enum Transition {
    Applied(Box<Order>),
    /// Another change got there first; the status found, if the order exists.
    LostRace(Option<OrderStatus>),
    /// The consumer's marker was already there: a redelivered event.
    AlreadyProcessed,
}

/// What a consumer adds to a status change.
#[derive(Debug, Clone, Default)]
pub struct TransitionContext {
    /// For `PaymentSucceeded`: the payment that paid.
    pub payment_id: Option<String>,
    /// For `Ship`: the carrier and tracking number.
    pub shipment: Option<domain::orders::Shipment>,
    pub marker: Option<crate::outbox::ProcessedMarker>,
}

fn event_type(transition: OrderTransition) -> EventType {
    match transition {
        OrderTransition::PaymentSucceeded => EventType::OrderPaid,
        OrderTransition::PaymentFailed => EventType::OrderPaymentFailed,
        OrderTransition::Cancel => EventType::OrderCancelled,
        OrderTransition::Expire => EventType::OrderExpired,
        OrderTransition::Refund => EventType::OrderRefunded,
        OrderTransition::Ship => EventType::OrderShipped,
        OrderTransition::ConfirmReceipt => EventType::OrderCompleted,
        OrderTransition::RefundLines | OrderTransition::RefundLastLines => {
            EventType::OrderLinesRefunded
        }
    }
}

impl OrderRequest<'_> {
    fn product_ids(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.product_id.as_str()).collect()
    }
}

impl Orders {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            rate_limit: None,
            late_payment_grace: time::Duration::ZERO,
            auto_confirm_after: DEFAULT_AUTO_CONFIRM,
            shard_counts: Default::default(),
        }
    }

    /// How long after shipping the sweep confirms receipt for the buyer.
    pub fn with_auto_confirm_after(mut self, after: time::Duration) -> Self {
        self.auto_confirm_after = after;
        self
    }

    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    pub fn with_late_payment_grace(mut self, grace: time::Duration) -> Self {
        self.late_payment_grace = grace;
        self
    }

    pub fn late_payment_grace(&self) -> time::Duration {
        self.late_payment_grace
    }

    /// Prices the lines from the catalog and, in one transaction, reserves
    /// every line's units, stores the order, its `OrderCreated` event, the
    /// user's rate-limit token and the idempotency record: all of it or none.
    /// A transaction that lost a race (to another order, a price change, or
    /// the user's own other request) is priced and tried again. A sharded
    /// product's line takes its units from shards that hold them (see
    /// `domain::stock_shards::allocate`); it is refused as sold out only on
    /// a strongly consistent read of all of them.
    pub async fn place(&self, request: OrderRequest<'_>) -> Result<Placement, OrderError> {
        let mut bucket = Guess::Idle;
        let mut read = Read::Eventual;
        let mut retries = Retries::default();
        for attempt in 1..=MAX_ATTEMPTS {
            let stock = self.load_stock(&request.product_ids(), read).await?;
            let mut order = self.new_order(&request, &stock.products)?;
            match take_from_shards(&order, &stock, read) {
                Ok(taken) => order.stock_taken = taken,
                Err(None) => {
                    // A shard looked short on a read that may lag: look again.
                    read = Read::Consistent;
                    continue;
                }
                Err(Some(shortages)) => {
                    metrics::increment(Metric::StockConflicts);
                    return Err(OrderError::InsufficientStock(shortages));
                }
            }
            let now_ms = crate::ratelimit::now_ms();
            let transaction = self.placement(&request, &order, &stock.products, bucket, now_ms)?;
            let reasons = match transact(&self.client, transaction.items).await? {
                Transact::Committed => {
                    metrics::increment(Metric::OrdersCreated);
                    return Ok(Placement::Placed(Box::new(order), retries));
                }
                Transact::Cancelled(reasons) => reasons,
            };
            let why = self.why_not_placed(
                &request,
                &order,
                &reasons,
                &transaction.reservations,
                transaction.bucket_at,
                now_ms,
            )?;
            match why {
                NotPlaced::Replay(answer) => return Ok(Placement::Replayed(answer)),
                NotPlaced::BucketGuessed(guess) => bucket = guess,
                NotPlaced::ShardShort(guess) => {
                    retries.shortfalls += 1;
                    bucket = guess.unwrap_or(bucket);
                    read = Read::Consistent;
                }
                NotPlaced::LostRace(guess) => {
                    retries.conflicts += 1;
                    bucket = guess.unwrap_or(bucket);
                    if attempt < MAX_ATTEMPTS {
                        backoff(attempt).await;
                    }
                }
            }
        }
        Err(StoreError::Busy("too many concurrent orders for these products; retry shortly").into())
    }

    /// A new pending order for the request, priced from `products`.
    fn new_order(
        &self,
        request: &OrderRequest<'_>,
        products: &[Product],
    ) -> Result<Order, OrderError> {
        let (items, order_amount, currency) = price_lines(&request.lines, products)?;
        let now = clock::now();
        let created_at = clock::rfc3339(now);
        Ok(Order {
            order_id: new_id(),
            user_id: request.user_id.to_owned(),
            items,
            order_amount,
            currency,
            order_status: OrderStatus::PendingPayment,
            created_at: created_at.clone(),
            updated_at: created_at,
            expires_at: clock::rfc3339(now + request.payment_window),
            active_payment_id: None,
            paid_payment_id: None,
            shipment: None,
            completed_at: None,
            refund_claims: Default::default(),
            refunded_units: Default::default(),
            refunded_amount: 0,
            stock_taken: Default::default(),
        })
    }

    /// The order's transaction: one reservation per line (conditional on
    /// the stock and on the version it was priced at), the order, its event,
    /// the user's token, and last the idempotency record (`replay_from`
    /// reads the last cancellation reason).
    fn placement(
        &self,
        request: &OrderRequest<'_>,
        order: &Order,
        products: &[Product],
        bucket: Guess,
        now_ms: i64,
    ) -> Result<OrderTransaction, DbError> {
        let mut items = Vec::with_capacity(order.items.len() + 4);
        let mut reservations = Vec::with_capacity(order.items.len());
        for (index, line) in order.items.iter().enumerate() {
            let version = products
                .iter()
                .find(|p| p.product_id == line.product_id)
                .map_or(0, |p| p.version);
            for part in order.shard_units(&line.product_id, 0, line.quantity) {
                let reserve = self.reserve(&line.product_id, part, version)?;
                items.push(TransactWriteItem::builder().update(reserve).build());
                reservations.push((index, part));
            }
        }
        // A line split over many shards, times many lines, could outgrow one
        // transaction: not a sold-out, so not a 409.
        if items.len() + 4 > MAX_TRANSACTION_ITEMS {
            return Err(DbError::Unavailable(
                "the order's units are spread over too many stock shards; retry shortly".into(),
            ));
        }
        items.push(
            TransactWriteItem::builder()
                .put(self.order_put(order)?)
                .build(),
        );
        let event = Envelope::new(
            EventType::OrderCreated,
            request.correlation_id,
            &order.created_at,
            order,
        )?;
        let outbox = crate::outbox::put(&event, &self.tables.events)?;
        items.push(TransactWriteItem::builder().put(outbox).build());
        let bucket_at = items.len();
        if let Some(limit) = &self.rate_limit {
            let take = limit.take(request.user_id, bucket, now_ms)?;
            items.push(TransactWriteItem::builder().update(take).build());
        }
        if let Some((key, fingerprint)) = &request.idempotency {
            let record = idempotency::record_put(
                &self.tables.idempotency,
                key,
                fingerprint,
                201,
                &serde_json::to_string(order)?,
                now_ms / 1000,
            )?;
            items.push(TransactWriteItem::builder().put(record).build());
        }
        Ok(OrderTransaction {
            items,
            reservations,
            bucket_at,
        })
    }

    /// Reads a cancelled placement: the answer to replay, a final refusal
    /// (`Err`: unknown product, short stock, rate limited), or a race to try
    /// again, at once when only the guess of the user's bucket was wrong.
    fn why_not_placed(
        &self,
        request: &OrderRequest<'_>,
        order: &Order,
        reasons: &[CancellationReason],
        reservations: &[(usize, ShardUnits)],
        bucket_at: usize,
        now_ms: i64,
    ) -> Result<NotPlaced, OrderError> {
        // A retry of an earlier request: answer as the original did.
        if let Some((_, fingerprint)) = &request.idempotency
            && let Some(answer) = idempotency::replay_from(reasons, fingerprint)
        {
            return Ok(NotPlaced::Replay(answer?));
        }
        let mut bucket = None;
        if let Some(limit) = &self.rate_limit
            && let Some(reason) = reasons.get(bucket_at).filter(|r| condition_failed(r))
        {
            match limit.after_failure(reason.item(), now_ms) {
                Next::Limited { retry_after_ms } => {
                    return Err(RateLimited { retry_after_ms }.into());
                }
                Next::Retry(guess) => bucket = Some(guess),
            }
        }
        let mut shortages = Vec::new();
        let (mut price_changed, mut shard_short) = (false, false);
        for (&(index, part), reason) in reservations.iter().zip(reasons) {
            if !condition_failed(reason) {
                continue;
            }
            let line = &order.items[index];
            let sharded = order.stock_taken.contains_key(&line.product_id);
            let available = match reason.item() {
                Some(current) if number(current, "version").is_some() => {
                    number(current, "stock").unwrap_or(0)
                }
                // A shard item never written holds nothing.
                _ if sharded => 0,
                _ => return Err(OrderError::ProductNotFound(line.product_id.clone())),
            };
            match (available < part.quantity, sharded) {
                // Other shards may hold what this one lacks.
                (true, true) => shard_short = true,
                (true, false) => shortages.push(Shortage {
                    product_id: line.product_id.clone(),
                    requested: line.quantity,
                    available,
                }),
                (false, _) => price_changed = true,
            }
        }
        if !shortages.is_empty() {
            metrics::increment(Metric::StockConflicts);
            return Err(OrderError::InsufficientStock(shortages));
        }
        if shard_short {
            return Ok(NotPlaced::ShardShort(bucket));
        }
        let raced = conflicted(reasons);
        if raced {
            metrics::increment(Metric::StockConflicts);
        }
        match (bucket, price_changed || raced) {
            (Some(guess), false) => Ok(NotPlaced::BucketGuessed(guess)),
            (guess, true) => Ok(NotPlaced::LostRace(guess)),
            (None, false) => {
                tracing::error!(?reasons, "createOrder transaction cancelled unexpectedly");
                Err(
                    StoreError::Failed("createOrder transaction cancelled unexpectedly".into())
                        .into(),
                )
            }
        }
    }

    /// The products of an order and, in the same BatchGetItem, two random
    /// shards of each product this container knows to be sharded (more
    /// requests only if DynamoDB returns unprocessed keys under throttling).
    /// Every shard of a sharded product is read (one more BatchGetItem each,
    /// at once) when its count is not known or has grown, and on a strongly
    /// consistent read, which is what a sold-out is decided on.
    async fn load_stock(&self, ids: &[&str], read: Read) -> Result<Stock, DbError> {
        let consistent = read == Read::Consistent;
        let samples: HashMap<String, (u32, Vec<u32>)> = if consistent {
            HashMap::new()
        } else {
            let counts = self.shard_counts.lock().unwrap_or_else(|e| e.into_inner());
            ids.iter()
                .filter_map(|id| counts.get(*id).map(|n| (id.to_string(), *n)))
                .map(|(id, n)| (id, (n, sample_two(n, ulid::Ulid::new().random() as u64))))
                .collect()
        };
        let product_keys: Vec<Item> = ids
            .iter()
            .map(|id| [("productId".to_owned(), s(id))].into())
            .collect();
        let shard_keys: Vec<Item> = samples
            .iter()
            .flat_map(|(id, (_, picked))| picked.iter().filter(|k| **k > 0).map(move |k| (id, *k)))
            .map(|(id, k)| [("shardKey".to_owned(), s(&stock_shards::shard_key(id, k)))].into())
            .collect();
        let mut request = HashMap::from([(
            self.tables.products.clone(),
            KeysAndAttributes::builder()
                .set_keys(Some(product_keys))
                .consistent_read(consistent)
                .build()
                .map_err(build_err)?,
        )]);
        if !shard_keys.is_empty() {
            request.insert(
                self.tables.stock_shards.clone(),
                KeysAndAttributes::builder()
                    .set_keys(Some(shard_keys))
                    .build()
                    .map_err(build_err)?,
            );
        }
        let mut found = crate::db::batch_get(&self.client, request).await?;
        let products = found
            .remove(&self.tables.products)
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<Vec<Product>, _>>()?;
        let sampled: Vec<ShardCounters> = found
            .remove(&self.tables.stock_shards)
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<_, _>>()?;
        self.learn_shard_counts(&products);

        let mut shards = HashMap::new();
        let mut unread = Vec::new();
        for product in products.iter().filter(|p| p.stock_shards > 1) {
            match samples.get(&product.product_id) {
                Some((n, picked)) if *n == product.stock_shards => {
                    let stock_of = |k: u32| match k {
                        0 => product.stock,
                        k => sampled
                            .iter()
                            .find(|c| c.product_id == product.product_id && c.shard == k)
                            .map_or(0, |c| c.stock),
                    };
                    let view = picked.iter().map(|&k| (k, stock_of(k))).collect();
                    shards.insert(product.product_id.clone(), view);
                }
                _ => unread.push(product),
            }
        }
        let every_shard =
            futures_util::future::try_join_all(unread.into_iter().map(|product| async move {
                let read_shards = stock_shards::read(
                    &self.client,
                    &self.tables.stock_shards,
                    &product.product_id,
                    product.stock_shards,
                    read,
                )
                .await?;
                let stock = stock_shards::stock_by_shard(product, &read_shards);
                let view: Vec<(u32, i64)> = (0..).zip(stock).collect();
                Ok::<_, DbError>((product.product_id.clone(), view))
            }))
            .await?;
        shards.extend(every_shard);
        Ok(Stock { products, shards })
    }

    /// Remembers the shard counts of the products read (see `shard_counts`).
    fn learn_shard_counts(&self, products: &[Product]) {
        let mut counts = self.shard_counts.lock().unwrap_or_else(|e| e.into_inner());
        for product in products {
            if product.stock_shards > 1 {
                // Bounded, however many products an admin shards over a
                // container's life: forgetting costs one full read each.
                if counts.len() >= MAX_REMEMBERED_SHARD_COUNTS
                    && !counts.contains_key(&product.product_id)
                {
                    counts.clear();
                }
                counts.insert(product.product_id.clone(), product.stock_shards);
            } else {
                counts.remove(&product.product_id);
            }
        }
    }

    /// Moves `part.quantity` from `stock` to `reserved` on its shard, if the
    /// shard holds enough and the product (its price) has not changed since
    /// it was read.
    fn reserve(&self, product_id: &str, part: ShardUnits, version: i64) -> Result<Update, DbError> {
        stock_shards::update_of(&self.tables, product_id, part.shard)
            .update_expression("SET stock = stock - :q, reserved = reserved + :q")
            .condition_expression("stock >= :q AND version = :v")
            .expression_attribute_values(":q", n(part.quantity))
            .expression_attribute_values(":v", n(version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)
    }

    fn order_put(&self, order: &Order) -> Result<Put, DbError> {
        let mut item: Item = serde_dynamo::to_item(order)?;
        if order.order_status.holds_reservation() {
            item.insert(
                "reservationShard".into(),
                s(&crate::due_index::shard_of(&order.order_id)),
            );
        }
        if !order.stock_taken.is_empty() {
            item.insert(
                "stockTaken".into(),
                serde_dynamo::to_attribute_value(&order.stock_taken)?,
            );
        }
        Put::builder()
            .table_name(&self.tables.orders)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(orderId)")
            .build()
            .map_err(build_err)
    }

    pub async fn get(&self, order_id: &str) -> Result<Option<Order>, DbError> {
        crate::db::get_item(
            &self.client,
            &self.tables.orders,
            "orderId",
            order_id,
            crate::db::Read::Consistent,
        )
        .await
    }

    /// The order if it exists and belongs to `user_id`.
    pub async fn get_owned(&self, order_id: &str, user_id: &str) -> Result<Option<Order>, DbError> {
        Ok(self.get(order_id).await?.filter(|o| o.user_id == user_id))
    }

    /// A user's orders, newest first.
    pub async fn list_for_user(
        &self,
        user_id: &str,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(Vec<Order>, Option<Item>), DbError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.orders)
            .index_name(USER_INDEX)
            .key_condition_expression("userId = :u")
            .expression_attribute_values(":u", s(user_id))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        let orders = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<Vec<Order>, _>>()?;
        Ok((orders, out.last_evaluated_key))
    }

    /// The queue of orders to ship: paid, not shipped, no refund under way,
    /// oldest payment first, `limit` at a time after `after` (a page's
    /// [`TO_SHIP_CURSOR`]). Each shard (queried at once) gives at most
    /// `limit + 1` in order; merged, the first `limit` are the page, and any
    /// beyond mean another.
    pub async fn to_ship(
        &self,
        limit: i32,
        after: Option<Item>,
    ) -> Result<(Vec<Order>, Option<Item>), DbError> {
        let cursor = after
            .map(|key| -> Result<(String, String), DbError> {
                let text = |name: &str| {
                    key.get(name)
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .ok_or_else(|| DbError::Corrupt(format!("a cursor without {name}")))
                };
                Ok((text("paidAt")?, text("orderId")?))
            })
            .transpose()?;
        let wanted = usize::try_from(limit).unwrap_or(0) + 1;
        let paid_at = |item: &Item| {
            item.get("paidAt")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let order_id = |item: &Item| {
            item.get("orderId")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let beyond = |item: &Item| {
            cursor.as_ref().is_none_or(|(at, id)| {
                (paid_at(item).as_str(), order_id(item).as_str()) > (at.as_str(), id.as_str())
            })
        };
        let (key_condition, values) = match &cursor {
            Some((after, _)) => (
                "shipShard = :shard AND paidAt >= :after",
                vec![(":after", s(after))],
            ),
            None => ("shipShard = :shard", Vec::new()),
        };
        let index = DueIndex {
            table: &self.tables.orders,
            index: TO_SHIP_INDEX,
            shard_attribute: "shipShard",
            due_attribute: "paidAt",
        };
        let query = crate::due_index::ShardQuery {
            key_condition,
            values,
            // The index is eventually consistent: an order shipped a moment
            // ago may still be in it, so what it says is checked on the item
            // it projects.
            filter: Some(
                "attribute_not_exists(shipment) AND attribute_not_exists(refundRequestedAt)",
            ),
            keep: Some(&beyond),
            enough: Some(wanted),
            page: Some(limit.saturating_add(1)),
        };
        let mut found = index
            .query(&self.client, &query)
            .await?
            .into_iter()
            .map(|item| Ok((paid_at(&item), serde_dynamo::from_item::<_, Order>(item)?)))
            .collect::<Result<Vec<(String, Order)>, DbError>>()?;
        found.sort_by(|(a, x), (b, y)| (a, &x.order_id).cmp(&(b, &y.order_id)));
        let more = found.len() >= wanted;
        found.truncate(wanted - 1);
        let next = match found.last() {
            Some((paid_at, order)) if more => Some(Item::from([
                ("paidAt".to_owned(), s(paid_at)),
                ("orderId".to_owned(), s(&order.order_id)),
            ])),
            _ => None,
        };
        Ok((found.into_iter().map(|(_, order)| order).collect(), next))
    }

    /// Applies `transition` to an order: its new status, the movement of its
    /// units between `stock`, `reserved` and `sold`, and its event, in one
    /// transaction conditional on the order's current status (and, for
    /// expiry, on its payment window having passed). Of two racing changes
    /// to the same order exactly one can win.
    pub async fn apply_transition(
        &self,
        order: &Order,
        transition: OrderTransition,
        correlation_id: &str,
    ) -> Result<Transition, DbError> {
        self.apply_transition_with(
            order,
            transition,
            correlation_id,
            &TransitionContext::default(),
        )
        .await
    }

    /// [`Self::apply_transition`] for a consumer: records the payment that
    /// paid, and commits the consumer's processed-event marker with the
    /// change (a redelivered event then changes nothing).
    pub async fn apply_transition_with(
        &self,
        order: &Order,
        transition: OrderTransition,
        correlation_id: &str,
        context: &TransitionContext,
    ) -> Result<Transition, DbError> {
        let mut order = order.clone();
        for attempt in 1..=MAX_ATTEMPTS {
            let Ok(target) = order.next_status(transition) else {
                return Ok(Transition::LostRace(Some(order.order_status)));
            };
            let now = clock::now_rfc3339();
            let updated = Order {
                order_status: target,
                updated_at: now.clone(),
                paid_payment_id: match transition {
                    OrderTransition::PaymentSucceeded => context.payment_id.clone(),
                    _ => order.paid_payment_id.clone(),
                },
                shipment: match transition {
                    OrderTransition::Ship => context.shipment.clone(),
                    _ => order.shipment.clone(),
                },
                completed_at: match transition {
                    OrderTransition::ConfirmReceipt => Some(now.clone()),
                    _ => order.completed_at.clone(),
                },
                ..order.clone()
            };
            // An order that stops being payable takes its pending payment
            // with it, in the same transaction: no payment stays PENDING for
            // an order that can no longer be paid.
            let closes_payment = self
                .pending_payment_to_close(&order, target, context)
                .await?;
            let mut change = self.status_change(
                &order,
                &updated,
                transition,
                closes_payment.as_deref(),
                context,
                correlation_id,
            )?;
            let reasons = match transact(&self.client, std::mem::take(&mut change.items)).await? {
                Transact::Committed => return Ok(Transition::Applied(Box::new(updated))),
                Transact::Cancelled(reasons) => reasons,
            };
            match why_not_applied(&order, transition, context, &change, &reasons)? {
                NotApplied::Final(outcome) => return Ok(outcome),
                NotApplied::OrderMoved(current) => order = *current,
                NotApplied::PaymentSettled => {}
                NotApplied::LostRace => {
                    if attempt < MAX_ATTEMPTS {
                        backoff(attempt).await;
                    }
                }
            }
        }
        Err(DbError::Unavailable(format!(
            "{transition:?} of order {} kept conflicting",
            order.order_id
        )))
    }

    /// A status change's transaction: the order's status (conditional on
    /// the one it leaves) first, then the lines' stock moves, the event, the
    /// pending payment it expires, and the consumer's marker last.
    fn status_change(
        &self,
        order: &Order,
        updated: &Order,
        transition: OrderTransition,
        closes_payment: Option<&str>,
        context: &TransitionContext,
        correlation_id: &str,
    ) -> Result<StatusChange, DbError> {
        let now = &updated.updated_at;
        let status = self.status_update(order, updated, transition, now)?;
        let mut items = vec![TransactWriteItem::builder().update(status).build()];
        for line in &order.items {
            let units = order.shard_units(&line.product_id, 0, line.quantity);
            for update in stock_shards::moves(
                &self.tables,
                transition.stock_move(),
                &line.product_id,
                &units,
            )? {
                items.push(TransactWriteItem::builder().update(update).build());
            }
        }
        let counters = 1..items.len();
        let event = Envelope::new(event_type(transition), correlation_id, now, updated)?;
        items.push(
            TransactWriteItem::builder()
                .put(crate::outbox::put(&event, &self.tables.events)?)
                .build(),
        );
        let mut payment_at = None;
        if let Some(payment_id) = closes_payment {
            payment_at = Some(items.len());
            let expire = crate::payments::expire_pending(&self.tables.payments, payment_id, now)?;
            items.push(TransactWriteItem::builder().update(expire).build());
        }
        if let Some(marker) = &context.marker {
            items.push(TransactWriteItem::builder().put(marker.put(now)?).build());
        }
        Ok(StatusChange {
            items,
            counters,
            payment_at,
        })
    }

    /// The order's payment to expire with `target`: its active payment if
    /// the order leaves the payable states, the payment is still `PENDING`,
    /// and it is not the payment that paid.
    async fn pending_payment_to_close(
        &self,
        order: &Order,
        target: OrderStatus,
        context: &TransitionContext,
    ) -> Result<Option<String>, DbError> {
        let leaves_payable = order.order_status.holds_reservation() && !target.holds_reservation();
        let Some(active) = order
            .active_payment_id
            .as_deref()
            .filter(|_| leaves_payable)
        else {
            return Ok(None);
        };
        if context.payment_id.as_deref() == Some(active) {
            return Ok(None);
        }
        let payment: Option<domain::payments::Payment> = crate::db::get_item(
            &self.client,
            &self.tables.payments,
            "paymentId",
            active,
            crate::db::Read::Consistent,
        )
        .await?;
        // A payment that left PENDING never returns to it: nothing to guard.
        Ok(payment
            .filter(|p| p.payment_status == domain::payments::PaymentStatus::Pending)
            .map(|p| p.payment_id))
    }

    fn status_update(
        &self,
        order: &Order,
        updated: &Order,
        transition: OrderTransition,
        now: &str,
    ) -> Result<Update, DbError> {
        let (order_id, target) = (updated.order_id.as_str(), updated.order_status);
        let from = transition.allowed_from();
        let (mut condition, statuses) = status_among(&from);
        if transition == OrderTransition::Expire {
            // Past its window and the grace in which a success still pays.
            condition.push_str(" AND expiresAt <= :cutoff");
        }
        // The payment closed with the order is the one read: a payment
        // started since then makes the transaction go again.
        let leaves_payable = order.order_status.holds_reservation() && !target.holds_reservation();
        match (&order.active_payment_id, leaves_payable) {
            (Some(_), true) => condition.push_str(" AND activePaymentId = :active"),
            (None, true) => condition.push_str(" AND attribute_not_exists(activePaymentId)"),
            (_, false) => {}
        }
        // Leaving the reserving states takes the order out of the sparse
        // expiry index; shipping puts it in the auto-confirm index, receipt
        // takes it out.
        // Payment puts it in the queue to ship; shipping or a whole refund
        // takes it out.
        let mut removed: Vec<&str> = Vec::new();
        match transition {
            OrderTransition::ConfirmReceipt => removed.extend(["confirmShard", "confirmDueAt"]),
            _ if target.holds_reservation() => {}
            _ => removed.push("reservationShard"),
        }
        if matches!(target, OrderStatus::Shipped | OrderStatus::Refunded) {
            removed.push("shipShard");
        }
        let remove = if removed.is_empty() {
            String::new()
        } else {
            format!(" REMOVE {}", removed.join(", "))
        };
        let fulfilment = match transition {
            OrderTransition::Ship => {
                // A paid order whose refund has begun (a cancel) is not
                // shipped: the money is on its way back. An order ships
                // once (a partly refunded one may be shipped already).
                condition.push_str(
                    " AND attribute_not_exists(refundRequestedAt) AND attribute_not_exists(shipment)",
                );
                ", shipment = :shipment, confirmShard = :confirmShard, confirmDueAt = :confirmDue"
            }
            OrderTransition::ConfirmReceipt => {
                // Received once, after shipping (a partly refunded order
                // may be either).
                condition.push_str(
                    " AND attribute_exists(shipment) AND attribute_not_exists(completedAt)",
                );
                ", completedAt = :now"
            }
            _ => "",
        };
        let paid_payment_id = updated
            .paid_payment_id
            .as_deref()
            .filter(|_| transition == OrderTransition::PaymentSucceeded);
        let paid = if paid_payment_id.is_some() {
            ", paidPaymentId = :paid, paidAt = :now, shipShard = :shipShard"
        } else {
            ""
        };
        let mut update = Update::builder()
            .table_name(&self.tables.orders)
            .key("orderId", s(order_id))
            .update_expression(format!(
                "SET orderStatus = :to, updatedAt = :now{paid}{fulfilment}{remove}"
            ))
            .condition_expression(condition)
            .expression_attribute_values(":to", s(target.as_str()))
            .expression_attribute_values(":now", s(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (placeholder, status) in statuses {
            update = update.expression_attribute_values(placeholder, status);
        }
        if transition == OrderTransition::Expire {
            update = update.expression_attribute_values(":cutoff", s(&self.expiry_cutoff()));
        }
        if let (Some(active), true) = (&order.active_payment_id, leaves_payable) {
            update = update.expression_attribute_values(":active", s(active));
        }
        if let Some(payment_id) = paid_payment_id {
            update = update
                .expression_attribute_values(":paid", s(payment_id))
                .expression_attribute_values(
                    ":shipShard",
                    s(&crate::due_index::shard_of(order_id)),
                );
        }
        if transition == OrderTransition::Ship {
            let shipment = updated
                .shipment
                .as_ref()
                .ok_or_else(|| DbError::Corrupt("a shipment without its carrier".into()))?;
            let due = clock::rfc3339(clock::now() + self.auto_confirm_after);
            update = update
                .expression_attribute_values(
                    ":shipment",
                    serde_dynamo::to_attribute_value(shipment)
                        .map_err(|e| DbError::Corrupt(e.to_string()))?,
                )
                .expression_attribute_values(
                    ":confirmShard",
                    s(&crate::due_index::shard_of(order_id)),
                )
                .expression_attribute_values(":confirmDue", s(&due));
        }
        update.build().map_err(build_err)
    }

    /// Orders whose window closed before this moment may be expired now.
    fn expiry_cutoff(&self) -> String {
        clock::rfc3339(clock::now() - self.late_payment_grace)
    }

    /// Shipped orders whose auto-confirm time has come by `now` (from the
    /// sparse `byConfirmDue` index; the receipt's transaction re-checks).
    pub async fn find_due_for_receipt(&self, now: OffsetDateTime) -> Result<Vec<Order>, DbError> {
        let index = DueIndex {
            table: &self.tables.orders,
            index: CONFIRM_INDEX,
            shard_attribute: "confirmShard",
            due_attribute: "confirmDueAt",
        };
        let items = index.due(&self.client, &clock::rfc3339(now)).await?;
        items
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(DbError::from))
            .collect()
    }

    /// Marks a paid order as being refunded before its money goes back (a
    /// cancel), conditional on it still being `PAID`: shipping is
    /// conditional on the mark's absence, so of a cancel and a shipment
    /// racing for one paid order exactly one wins. `Ok(None)` when the
    /// order has moved on; the status it has, if it exists.
    pub async fn claim_for_refund(&self, order: &Order) -> Result<Option<OrderStatus>, DbError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.orders)
            .key("orderId", s(&order.order_id))
            .update_expression("SET refundRequestedAt = if_not_exists(refundRequestedAt, :now)")
            // Lines that refund requests claim are refunded by those, not
            // again by a whole refund.
            .condition_expression(
                "orderStatus = :paid AND (attribute_not_exists(refundClaimedUnits) OR refundClaimedUnits = :zero)",
            )
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", s(&clock::now_rfc3339()))
            .expression_attribute_values(":paid", s(OrderStatus::Paid.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => {
                let current = err.as_service_error().and_then(|e| match e {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                    _ => None,
                });
                match current {
                    Some(item) => Ok(Some(
                        serde_dynamo::from_item::<_, Order>(item)
                            .map_or(order.order_status, |o| o.order_status),
                    )),
                    None => Err(DbError::from(err)),
                }
            }
        }
    }

    /// Orders still holding stock whose payment window and its grace closed
    /// by `now` (read from a sparse, eventually consistent index: the release
    /// transaction re-checks every condition).
    pub async fn find_expired(&self, now: OffsetDateTime) -> Result<Vec<Order>, DbError> {
        let until = clock::rfc3339(now - self.late_payment_grace);
        let index = DueIndex {
            table: &self.tables.orders,
            index: EXPIRY_INDEX,
            shard_attribute: "reservationShard",
            due_attribute: "expiresAt",
        };
        let items = index.due(&self.client, &until).await?;
        items
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(DbError::from))
            .collect()
    }
}

/// The condition "the order's status is one of `statuses`" and its values,
/// built from the state machine (never retyped by hand): every conditional
/// write on an order's status uses it.
pub(crate) fn status_among(
    statuses: &[OrderStatus],
) -> (
    String,
    Vec<(String, aws_sdk_dynamodb::types::AttributeValue)>,
) {
    let values: Vec<(String, aws_sdk_dynamodb::types::AttributeValue)> = statuses
        .iter()
        .enumerate()
        .map(|(i, status)| (format!(":status{i}"), s(status.as_str())))
        .collect();
    let names: Vec<&str> = values.iter().map(|(name, _)| name.as_str()).collect();
    (format!("orderStatus IN ({})", names.join(", ")), values)
}

impl From<DbError> for OrderError {
    fn from(err: DbError) -> Self {
        OrderError::Store(err.into())
    }
}

impl From<ReplayError> for OrderError {
    fn from(err: ReplayError) -> Self {
        match err {
            ReplayError::Reused(reused) => reused.into(),
            ReplayError::Db(db) => db.into(),
        }
    }
}

/// Where each sharded product's line takes its units, from the shards read.
/// `Err(None)`: the shards read cannot hold a line, but they were a sample
/// or a read that may lag: read every shard again, strongly. `Err(Some)`:
/// short on a strongly consistent read of every shard, so truly sold out.
/// Lines of unsharded products take shard 0 and leave the verdict to the
/// transaction's condition, as they always did.
fn take_from_shards(
    order: &Order,
    stock: &Stock,
    read: Read,
) -> Result<std::collections::BTreeMap<String, Vec<ShardUnits>>, Option<Vec<Shortage>>> {
    let mut taken = std::collections::BTreeMap::new();
    let mut shortages = Vec::new();
    for line in &order.items {
        let Some(shards) = stock.shards.get(&line.product_id) else {
            continue;
        };
        match allocate(shards, line.quantity, ulid::Ulid::new().random() as u64) {
            Some(parts) => {
                taken.insert(line.product_id.clone(), parts);
            }
            None => shortages.push(Shortage {
                product_id: line.product_id.clone(),
                requested: line.quantity,
                available: shards.iter().map(|(_, stock)| stock).sum(),
            }),
        }
    }
    match (shortages.is_empty(), read) {
        (true, _) => Ok(taken),
        (false, Read::Eventual) => Err(None),
        (false, Read::Consistent) => Err(Some(shortages)),
    }
}
