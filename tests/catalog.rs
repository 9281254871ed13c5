//! The catalog handlers, called in-process with real API Gateway v2 events,
//! against official DynamoDB Local through the production data layer.

use std::collections::HashSet;

use adapters::catalog::Catalog;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use system_tests::api::{ApiRequest, parts};
use system_tests::dynamo::TestDb;

struct Fixture {
    db: TestDb,
    catalog: Catalog,
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let catalog = Catalog::new(db.client.clone(), &db.tables);
    Fixture { db, catalog }
}

fn tea(stock: i64) -> Value {
    json!({"name": "Longjing tea", "description": "spring harvest", "category": "food", "price": 16800, "stock": stock})
}

impl Fixture {
    async fn put(&self, id: &str, body: Value) -> (u16, Value) {
        let req = ApiRequest::put("/products/{productId}")
            .path_param("productId", id)
            .as_admin("admin-1")
            .json(body);
        parts(&http_edge::http::into_response(
            put_product::handle(&self.catalog, req.build()).await,
        ))
    }

    async fn get(&self, id: &str) -> (u16, Value) {
        let req = ApiRequest::get("/products/{productId}")
            .path_param("productId", id)
            .as_admin("admin-1");
        parts(&http_edge::http::into_response(
            get_product_info::handle(&self.catalog, req.build()).await,
        ))
    }

    async fn set_stock(&self, id: &str, body: Value) -> (u16, Value) {
        self.stock_request(
            ApiRequest::post("/products/{productId}/stock")
                .path_param("productId", id)
                .as_admin("admin-1")
                .json(body),
        )
        .await
    }

    async fn stock_request(&self, req: ApiRequest) -> (u16, Value) {
        parts(&http_edge::http::into_response(
            update_product_stock::handle(&self.catalog, req.build()).await,
        ))
    }

    async fn list(&self, req: ApiRequest) -> (u16, Value) {
        parts(&http_edge::http::into_response(
            list_products::handle(&self.catalog, req.build()).await,
        ))
    }

    /// Simulates units held by unpaid orders, as createOrder will move them.
    async fn reserve(&self, id: &str, units: i64) {
        self.db
            .client
            .update_item()
            .table_name(&self.db.tables.products)
            .key("productId", AttributeValue::S(id.into()))
            .update_expression("SET stock = stock - :u, reserved = reserved + :u")
            .expression_attribute_values(":u", AttributeValue::N(units.to_string()))
            .send()
            .await
            .unwrap();
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test]
async fn put_creates_then_replaces_and_get_reads_it() {
    let f = fixture().await;
    let (status, created) = f.put("tea-1", tea(10)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["productId"], "tea-1");
    assert_eq!(created["price"], 16800);
    assert_eq!(created["currency"], "CNY");
    assert_eq!(created["stock"], 10);
    assert_eq!(created["reserved"], 0);
    assert_eq!(created["version"], 1);
    assert!(created.get("sold").is_none());

    let (status, replaced) = f.put("tea-1", json!({"name": "Longjing", "category": "tea", "price": 100, "currency": "USD", "stock": 3})).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["currency"], "USD");
    assert_eq!(replaced["description"], "");

    let (status, read) = f.get("tea-1").await;
    assert_eq!(status, 200);
    assert_eq!(read, replaced);
}

#[tokio::test]
async fn put_location_header_on_create() {
    let f = fixture().await;
    let req = ApiRequest::put("/products/{productId}")
        .path_param("productId", "loc-1")
        .as_admin("a")
        .json(tea(1));
    let response =
        http_edge::http::into_response(put_product::handle(&f.catalog, req.build()).await);
    assert_eq!(response.headers()["location"], "/products/loc-1");
    assert_eq!(response.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn admin_writes_never_touch_reserved_units() {
    let f = fixture().await;
    f.put("kettle", tea(10)).await;
    f.reserve("kettle", 4).await;

    let (status, after_stock) = f.set_stock("kettle", json!({"newStock": 50})).await;
    assert_eq!(status, 200, "{after_stock}");
    assert_eq!(
        (
            after_stock["stock"].as_i64(),
            after_stock["reserved"].as_i64()
        ),
        (Some(50), Some(4))
    );

    let (status, after_put) = f.put("kettle", tea(7)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (after_put["stock"].as_i64(), after_put["reserved"].as_i64()),
        (Some(7), Some(4))
    );
    assert_eq!(after_put["version"], 3);
}

#[tokio::test]
async fn unknown_products_are_404_naming_the_product() {
    let f = fixture().await;
    let (status, body) = f.get("nope").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "PRODUCT_NOT_FOUND");
    assert_eq!(body["error"]["productId"], "nope");

    let (status, body) = f.set_stock("nope", json!({"newStock": 1})).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "PRODUCT_NOT_FOUND");
    // The failed conditional write must not have created the item.
    assert_eq!(f.get("nope").await.0, 404);
}

#[tokio::test]
async fn malformed_product_ids_are_400() {
    let f = fixture().await;
    for id in ["has space", "slash/inside", &"x".repeat(65)] {
        let (status, body) = f.get(id).await;
        assert_eq!(status, 400, "{id}");
        assert_eq!(body["error"]["field"], "productId");
    }
}

#[tokio::test]
async fn identity_and_role_come_from_the_claims() {
    let f = fixture().await;
    let anonymous = ApiRequest::get("/products/{productId}").path_param("productId", "p");
    let (status, body) = parts(&http_edge::http::into_response(
        get_product_info::handle(&f.catalog, anonymous.build()).await,
    ));
    assert_eq!((status, error_code(&body)), (401, "UNAUTHORIZED"));

    let shopper = ApiRequest::put("/products/{productId}")
        .path_param("productId", "p")
        .as_user("u1")
        .json(tea(1));
    let (status, body) = parts(&http_edge::http::into_response(
        put_product::handle(&f.catalog, shopper.build()).await,
    ));
    assert_eq!((status, error_code(&body)), (403, "FORBIDDEN"));

    let shopper = ApiRequest::post("/products/{productId}/stock")
        .path_param("productId", "p")
        .as_user("u1")
        .json(json!({"newStock": 1}));
    assert_eq!(f.stock_request(shopper).await.0, 403);
    // Nothing was written by the refused calls.
    assert_eq!(f.get("p").await.0, 404);
}

#[tokio::test]
async fn bad_stock_bodies_are_400_naming_the_field() {
    let f = fixture().await;
    f.put("p1", tea(5)).await;
    let cases = [
        (json!({"newStock": -1}), "newStock"),
        (json!({"newStock": 1_000_000_001i64}), "newStock"),
        (json!({"newStock": 2.5}), "newStock"),
        (json!({"newStock": "7"}), "newStock"),
        (
            json!({"newStock": 99999999999999999999u128.to_string().parse::<f64>().unwrap()}),
            "newStock",
        ),
        (json!({}), "newStock"),
        (json!({"newStock": 1, "stock": 2}), "stock"),
    ];
    for (body, field) in cases {
        let (status, answer) = f.set_stock("p1", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(error_code(&answer), "INVALID_FIELD", "{body}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{body} -> {answer}"
        );
    }
    let (_, unchanged) = f.get("p1").await;
    assert_eq!(unchanged["stock"], 5);
    assert_eq!(unchanged["version"], 1);
}

#[tokio::test]
async fn malformed_oversized_and_non_json_bodies() {
    let f = fixture().await;
    f.put("p1", tea(5)).await;
    let base = ApiRequest::post("/products/{productId}/stock")
        .path_param("productId", "p1")
        .as_admin("a");

    let (status, body) = f
        .stock_request(
            base.clone()
                .header("content-type", "application/json")
                .raw_body("{\"newStock\": "),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "MALFORMED_JSON"));

    let (status, body) = f.stock_request(base.clone()).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "MALFORMED_JSON"),
        "empty body"
    );

    let huge = format!(
        "{{\"newStock\": 1, \"pad\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let (status, body) = f
        .stock_request(
            base.clone()
                .header("content-type", "application/json")
                .raw_body(&huge),
        )
        .await;
    assert_eq!((status, error_code(&body)), (413, "PAYLOAD_TOO_LARGE"));

    let (status, body) = f
        .stock_request(
            base.clone()
                .header("content-type", "text/plain")
                .raw_body("{\"newStock\": 1}"),
        )
        .await;
    assert_eq!((status, error_code(&body)), (415, "UNSUPPORTED_MEDIA_TYPE"));

    let (status, _) = f
        .stock_request(
            base.header("content-type", "application/json")
                .raw_body("[1]"),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(f.get("p1").await.1["stock"], 5);
}

#[tokio::test]
async fn bad_product_bodies_are_400_naming_the_field() {
    let f = fixture().await;
    let cases = [
        (
            json!({"name": "t", "category": "c", "price": 19.99, "stock": 1}),
            "price",
        ),
        (
            json!({"name": "t", "category": "c", "price": -1, "stock": 1}),
            "price",
        ),
        (
            json!({"name": "t", "category": "c", "price": 1, "stock": 1, "currency": "yuan"}),
            "currency",
        ),
        (
            json!({"name": "", "category": "c", "price": 1, "stock": 1}),
            "name",
        ),
        (json!({"category": "c", "price": 1, "stock": 1}), "name"),
        (
            json!({"name": "t", "category": "c", "price": 1, "stock": 1, "productId": "other"}),
            "productId",
        ),
        (
            json!({"name": "t", "category": "c", "price": 1, "stock": 1, "reserved": 0}),
            "reserved",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = f.put("p2", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{body} -> {answer}"
        );
    }
    assert_eq!(f.get("p2").await.0, 404, "nothing half-written");
}

#[tokio::test]
async fn list_pages_through_every_product_exactly_once() {
    let f = fixture().await;
    for i in 0..25 {
        f.put(&format!("p{i:02}"), tea(i)).await;
    }
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = ApiRequest::get("/products")
            .as_user("u1")
            .query("limit", "10");
        if let Some(t) = &token {
            req = req.query("nextToken", t);
        }
        let (status, body) = f.list(req).await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        for item in items {
            assert!(
                seen.insert(item["productId"].as_str().unwrap().to_owned()),
                "duplicate {item}"
            );
        }
        pages += 1;
        match body.get("nextToken") {
            Some(t) => token = Some(t.as_str().unwrap().to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen.len(), 25);
    assert!(pages >= 3);
}

/// Issue 23.3: a category's products come from the category index, by id,
/// every one exactly once across pages; a token is good only for the
/// category it came from.
#[tokio::test]
async fn a_category_lists_its_products_only_page_by_page() {
    let f = fixture().await;
    for i in 0..12 {
        let category = if i % 3 == 0 { "teaware" } else { "food" };
        f.put(
            &format!("c{i:02}"),
            json!({"name": format!("item {i}"), "category": category, "price": 100, "stock": 1}),
        )
        .await;
    }
    let page = |category: &str, token: Option<&str>| {
        let mut req = ApiRequest::get("/products")
            .as_user("u1")
            .query("category", category)
            .query("limit", "3");
        if let Some(t) = token {
            req = req.query("nextToken", t);
        }
        req
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (status, body) = f.list(page("food", token.as_deref())).await;
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            assert_eq!(item["category"], "food", "{item}");
            seen.push(item["productId"].as_str().unwrap().to_owned());
        }
        match body.get("nextToken").and_then(|t| t.as_str()) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted.len()), (8, 8), "{seen:?}");
    assert_eq!(seen, sorted, "by id");

    // A token of the food listing is refused for teaware; an unknown
    // category is an empty page; a bad one is 400 naming it.
    let (_, first) = f.list(page("food", None)).await;
    let token = first["nextToken"].as_str().unwrap();
    let (status, body) = f.list(page("teaware", Some(token))).await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_NEXT_TOKEN"));
    let (status, body) = f.list(page("nothing-here", None)).await;
    assert_eq!((status, body), (200, json!({"items": []})));
    let (status, body) = f.list(page(&"x".repeat(65), None)).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("category"))
    );
    let (_, teaware) = f.list(page("teaware", None)).await;
    assert_eq!(teaware["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn list_rejects_bad_limits_and_tokens() {
    let f = fixture().await;
    for limit in ["0", "101", "ten", "-1", "1.5"] {
        let (status, body) = f
            .list(
                ApiRequest::get("/products")
                    .as_user("u1")
                    .query("limit", limit),
            )
            .await;
        assert_eq!(status, 400, "{limit}");
        assert_eq!(body["error"]["field"], "limit");
    }
    let (status, body) = f
        .list(
            ApiRequest::get("/products")
                .as_user("u1")
                .query("nextToken", "garbage"),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_NEXT_TOKEN"));
    let (status, body) = f.list(ApiRequest::get("/products").as_user("u1")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"items": []}));
}

#[tokio::test]
async fn product_reads_cost_one_round_trip() {
    let f = fixture().await;
    f.put("p1", tea(1)).await;
    let (client, round_trips) = system_tests::dynamo::counted_client().await;
    let catalog = Catalog::new(client, &f.db.tables);
    let req = ApiRequest::get("/products/{productId}")
        .path_param("productId", "p1")
        .as_user("u1");
    let (status, _) = parts(&http_edge::http::into_response(
        get_product_info::handle(&catalog, req.build()).await,
    ));
    assert_eq!((status, round_trips.count()), (200, 1));
    round_trips.reset();
    let (status, _) = parts(&http_edge::http::into_response(
        list_products::handle(&catalog, ApiRequest::get("/products").as_user("u1").build()).await,
    ));
    assert_eq!((status, round_trips.count()), (200, 1));
}

#[tokio::test]
async fn catalog_reads_carry_etags_and_answer_304() {
    let f = fixture().await;
    f.put("p1", tea(5)).await;
    let get = |etag: Option<&str>| {
        let mut req = ApiRequest::get("/products/{productId}")
            .path_param("productId", "p1")
            .as_user("u1");
        if let Some(tag) = etag {
            req = req.header("if-none-match", tag);
        }
        req
    };
    let first = http_edge::http::into_response(
        get_product_info::handle(&f.catalog, get(None).build()).await,
    );
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "private, max-age=5");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

    let again = http_edge::http::into_response(
        get_product_info::handle(&f.catalog, get(Some(&etag)).build()).await,
    );
    assert_eq!(again.status(), 304);
    assert!(again.body().as_ref().is_empty());
    assert_eq!(again.headers()["etag"], etag.as_str());
    let weak = format!("\"other\", W/{etag}");
    assert_eq!(
        http_edge::http::into_response(
            get_product_info::handle(&f.catalog, get(Some(&weak)).build()).await
        )
        .status(),
        304
    );

    // Stock moved: a shopper's representation (availability only, issue
    // 29.6) did not change, so the tag holds; an admin's, with the
    // counters, did.
    let admin_get = || {
        ApiRequest::get("/products/{productId}")
            .path_param("productId", "p1")
            .as_admin("a")
    };
    let admin_tag = http_edge::http::into_response(
        get_product_info::handle(&f.catalog, admin_get().build()).await,
    )
    .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    f.reserve("p1", 1).await;
    let shopper = http_edge::http::into_response(
        get_product_info::handle(&f.catalog, get(Some(&etag)).build()).await,
    );
    assert_eq!(shopper.status(), 304);
    let changed = http_edge::http::into_response(
        get_product_info::handle(
            &f.catalog,
            admin_get().header("if-none-match", &admin_tag).build(),
        )
        .await,
    );
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], admin_tag.as_str());

    let list = http_edge::http::into_response(
        list_products::handle(
            &f.catalog,
            ApiRequest::get("/products").as_user("u1").build(),
        )
        .await,
    );
    let list_tag = list.headers()["etag"].to_str().unwrap().to_owned();
    let cached = ApiRequest::get("/products")
        .as_user("u1")
        .header("if-none-match", &list_tag);
    assert_eq!(
        http_edge::http::into_response(list_products::handle(&f.catalog, cached.build()).await)
            .status(),
        304
    );
}

/// Issue 25: `stockShards` through the API: 1 to 64, never fewer than the
/// product has, named when wrong; the product and the list answer the sums,
/// admins see the shard count, shoppers only the availability.
#[tokio::test]
async fn stock_shards_through_the_api() {
    let f = fixture().await;
    let (status, created) = f
        .put(
            "hot",
            json!({"name": "Hot", "category": "food", "price": 100, "stock": 30, "stockShards": 4}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["stock"].as_i64(), created["stockShards"].as_i64()),
        (Some(30), Some(4))
    );
    for (body, needle) in [
        (json!({"newStock": 5, "stockShards": 0}), "from 1 to 64"),
        (json!({"newStock": 5, "stockShards": 65}), "from 1 to 64"),
        (json!({"newStock": 5, "stockShards": 1.5}), "stockShards"),
        (json!({"newStock": 5, "stockShards": "8"}), "stockShards"),
        (json!({"newStock": 5, "stockShards": 2}), "can only grow"),
        (json!({"newStock": 5, "stockShards": 1}), "can only grow"),
    ] {
        let (status, answer) = f.set_stock("hot", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(error_code(&answer), "INVALID_FIELD", "{body}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("stockShards") && message.contains(needle),
            "{body} -> {answer}"
        );
    }
    let (status, answer) = f
        .put(
            "hot",
            json!({"name": "Hot", "category": "food", "price": 100, "stock": 3, "stockShards": 1}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (_, unchanged) = f.get("hot").await;
    assert_eq!(
        (unchanged["stock"].as_i64(), unchanged["version"].as_i64()),
        (Some(30), Some(1))
    );

    let (status, grown) = f
        .set_stock("hot", json!({"newStock": 64, "stockShards": 64}))
        .await;
    assert_eq!(status, 200, "{grown}");
    assert_eq!(
        (grown["stock"].as_i64(), grown["stockShards"].as_i64()),
        (Some(64), Some(64))
    );
    assert_eq!(f.db.shard_counters("hot").await, vec![(1, 0, 0); 64]);
    let (status, kept) = f.set_stock("hot", json!({"newStock": 9})).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(
        (kept["stock"].as_i64(), kept["stockShards"].as_i64()),
        (Some(9), Some(64))
    );

    let (_, shopper) = f.list(ApiRequest::get("/products").as_user("u1")).await;
    let hot = &shopper["items"][0];
    assert_eq!(hot["availability"], "LOW_STOCK", "{hot}");
    assert!(hot.get("stockShards").is_none() && hot.get("stock").is_none());
    let (_, admin) = f.list(ApiRequest::get("/products").as_admin("a")).await;
    assert_eq!(admin["items"][0]["stock"], 9);
}
