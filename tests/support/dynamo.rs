//! DynamoDB Local with the template's tables, one private set per test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use adapters::config::Tables;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde_yaml::Value;

use super::template::Template;

/// A client for the DynamoDB Local that `scripts/test` started
/// (`DYNAMODB_ENDPOINT`), built like production's but for the endpoint.
pub async fn client() -> Client {
    Client::new(&local_config(&super::required_env("DYNAMODB_ENDPOINT")).await)
}

/// The SDK configuration of a local endpoint: test credentials and region.
pub async fn local_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(adapters::db::https_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Fresh, uniquely named copies of every table in the template, and the
/// `Tables` a function would read from the template's environment wiring.
pub struct TestDb {
    pub client: Client,
    pub tables: Tables,
    /// The table variables a deployed function would get (`ORDERS_TABLE`...).
    pub env: HashMap<String, String>,
    /// Each table's name here by its logical id (`OrdersTable`...), for a
    /// table no deployed function is wired to yet.
    pub physical: HashMap<String, String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub async fn new() -> Self {
        let client = client().await;
        let template = Template::load();
        let prefix = format!(
            "t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut physical = HashMap::new();
        for (logical_id, resource) in template.resources_of_type("AWS::DynamoDB::Table") {
            let name = format!("{prefix}-{logical_id}");
            create_table(&client, &name, &resource["Properties"]).await;
            physical.insert(logical_id.to_owned(), name);
        }
        let env: HashMap<String, String> = template
            .env_refs()
            .into_iter()
            .filter_map(|(var, target)| Some((var, physical.get(&target)?.clone())))
            .collect();
        let tables = Tables::from_lookup(&|name| env.get(name).cloned());
        Self {
            client,
            tables,
            env,
            physical,
        }
    }
}

fn key_schema(value: &Value) -> Vec<KeySchemaElement> {
    value
        .as_sequence()
        .expect("KeySchema")
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().unwrap())
                .key_type(KeyType::from(k["KeyType"].as_str().unwrap()))
                .build()
                .unwrap()
        })
        .collect()
}

async fn create_table(client: &Client, name: &str, props: &Value) {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&props["KeySchema"])));
    for def in props["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(def["AttributeName"].as_str().unwrap())
                .attribute_type(ScalarAttributeType::from(
                    def["AttributeType"].as_str().unwrap(),
                ))
                .build()
                .unwrap(),
        );
    }
    if let Some(indexes) = props["GlobalSecondaryIndexes"].as_sequence() {
        for index in indexes {
            let projection = &index["Projection"];
            let mut p = Projection::builder().projection_type(ProjectionType::from(
                projection["ProjectionType"].as_str().unwrap_or("ALL"),
            ));
            if let Some(attrs) = projection["NonKeyAttributes"].as_sequence() {
                for a in attrs {
                    p = p.non_key_attributes(a.as_str().unwrap());
                }
            }
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index["IndexName"].as_str().unwrap())
                    .set_key_schema(Some(key_schema(&index["KeySchema"])))
                    .projection(p.build())
                    .build()
                    .unwrap(),
            );
        }
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
}

/// Counts the HTTP requests a client sends to DynamoDB (every attempt of
/// every operation), so tests and benchmarks can state round trips exactly.
#[derive(Debug, Clone, Default)]
pub struct RoundTrips(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl RoundTrips {
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The operations sent, in order (`GetItem + TransactWriteItems`).
    pub fn operations(&self) -> String {
        self.0.lock().unwrap().join(" + ")
    }

    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for RoundTrips {
    fn name(&self) -> &'static str {
        "RoundTrips"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or("?", |m| m.name())
            .to_owned();
        self.0.lock().unwrap().push(operation);
        Ok(())
    }
}

/// A client like [`client`] whose requests are counted.
pub async fn counted_client() -> (Client, RoundTrips) {
    let base = client().await;
    let counter = RoundTrips::default();
    let config = base
        .config()
        .to_builder()
        .interceptor(counter.clone())
        .build();
    (Client::from_conf(config), counter)
}

impl TestDb {
    /// Creates a product (CNY, category "test") through the production
    /// catalog code.
    pub async fn add_product(&self, id: &str, price: i64, stock: i64) {
        let catalog = adapters::catalog::Catalog::new(self.client.clone(), &self.tables);
        let draft = domain::catalog::ProductDraft {
            product_id: None,
            name: format!("{id} name"),
            description: String::new(),
            category: "test".into(),
            price,
            currency: "CNY".into(),
            stock,
            stock_shards: None,
        };
        catalog
            .put(id, &draft, "2026-11-22T00:00:00.000Z")
            .await
            .expect("product created");
    }

    /// A product as stored now (consistent reads, unlike the catalog's),
    /// its counters summed over its stock shards.
    pub async fn product(&self, id: &str) -> domain::catalog::Product {
        let product = self.product_item(id).await;
        adapters::stock_shards::with_totals(
            &self.client,
            &self.tables.stock_shards,
            product,
            adapters::db::Read::Consistent,
        )
        .await
        .expect("shards read")
    }

    /// The product item as stored (shard 0's counters only), read strongly.
    async fn product_item(&self, id: &str) -> domain::catalog::Product {
        adapters::db::get_item(
            &self.client,
            &self.tables.products,
            "productId",
            id,
            adapters::db::Read::Consistent,
        )
        .await
        .expect("product read")
        .expect("product exists")
    }

    /// Each shard's (stock, reserved, sold), shard 0 first.
    pub async fn shard_counters(&self, id: &str) -> Vec<(i64, i64, i64)> {
        let product = self.product_item(id).await;
        let mut counters = vec![(0, 0, 0); product.stock_shards as usize];
        counters[0] = (product.stock, product.reserved, product.sold);
        let shards = adapters::stock_shards::read(
            &self.client,
            &self.tables.stock_shards,
            id,
            product.stock_shards,
            adapters::db::Read::Consistent,
        )
        .await
        .expect("shards read");
        for shard in shards {
            counters[shard.shard as usize] = (shard.stock, shard.reserved, shard.sold);
        }
        counters
    }

    /// Spreads a product's stock over `shards` items, as an admin does.
    pub async fn shard_product(&self, id: &str, stock: i64, shards: i64) {
        adapters::catalog::Catalog::new(self.client.clone(), &self.tables)
            .set_stock(id, stock, Some(shards), "2026-11-22T00:00:01.000Z")
            .await
            .expect("stock sharded");
    }

    /// Every envelope of one type in the outbox (the events table).
    pub async fn events_of_type(&self, event_type: &str) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.tables.events)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            found.extend(
                out.items()
                    .iter()
                    .filter_map(|i| {
                        serde_json::from_str::<serde_json::Value>(i["envelope"].as_s().ok()?).ok()
                    })
                    .filter(|e| e["type"] == event_type),
            );
            start = out.last_evaluated_key;
            if start.is_none() {
                return found;
            }
        }
    }
}
