//! API Gateway HTTP API (payload 2.0) events for calling handlers in-process,
//! parsed by lambda_http exactly as the runtime parses them.

use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};

#[derive(Clone, Debug)]
pub struct ApiRequest {
    method: String,
    route: String,
    path: String,
    path_params: Map<String, Value>,
    query: Vec<(String, String)>,
    headers: Map<String, Value>,
    body: Option<String>,
    claims: Option<Map<String, Value>>,
}

impl ApiRequest {
    /// A request for the route `route` (e.g. `/products/{productId}`).
    pub fn new(method: &str, route: &str) -> Self {
        Self {
            method: method.to_owned(),
            route: route.to_owned(),
            path: route.to_owned(),
            path_params: Map::new(),
            query: Vec::new(),
            headers: Map::new(),
            body: None,
            claims: None,
        }
    }

    pub fn get(route: &str) -> Self {
        Self::new("GET", route)
    }

    pub fn put(route: &str) -> Self {
        Self::new("PUT", route)
    }

    pub fn post(route: &str) -> Self {
        Self::new("POST", route)
    }

    pub fn path_param(mut self, name: &str, value: &str) -> Self {
        self.path = self.path.replace(&format!("{{{name}}}"), value);
        self.path_params.insert(name.to_owned(), value.into());
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    pub fn json(self, body: Value) -> Self {
        self.header("content-type", "application/json")
            .raw_body(&body.to_string())
    }

    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    /// Claims as the JWT authorizer passes them for a plain user.
    pub fn as_user(mut self, sub: &str) -> Self {
        let mut claims = Map::new();
        claims.insert("sub".into(), sub.into());
        claims.insert("token_use".into(), "access".into());
        claims.insert("client_id".into(), "test-app-client".into());
        self.claims = Some(claims);
        self
    }

    /// Claims for a member of the `admin` group (flattened as HTTP APIs do).
    pub fn as_admin(self, sub: &str) -> Self {
        let mut me = self.as_user(sub);
        if let Some(c) = me.claims.as_mut() {
            c.insert("cognito:groups".into(), "[admin]".into());
        }
        me
    }

    /// The event JSON, as API Gateway would send it.
    pub fn event(&self) -> Value {
        let raw_query = self
            .query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let query: Map<String, Value> = self
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let mut event = json!({
            "version": "2.0",
            "routeKey": format!("{} {}", self.method, self.route),
            "rawPath": self.path,
            "rawQueryString": raw_query,
            "headers": self.headers,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "testapi",
                "domainName": "testapi.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "testapi",
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "tests"},
                "requestId": "test-request",
                "routeKey": format!("{} {}", self.method, self.route),
                "stage": "$default",
                "time": "22/Nov/2026:00:00:00 +0000",
                "timeEpoch": 1795305600000u64
            },
            "isBase64Encoded": false
        });
        if !self.path_params.is_empty() {
            event["pathParameters"] = Value::Object(self.path_params.clone());
        }
        if !query.is_empty() {
            event["queryStringParameters"] = Value::Object(query);
        }
        if let Some(body) = &self.body {
            event["body"] = body.as_str().into();
        }
        if let Some(claims) = &self.claims {
            event["requestContext"]["authorizer"] =
                json!({"jwt": {"claims": claims, "scopes": null}});
        }
        event
    }

    pub fn build(&self) -> Request {
        lambda_http::request::from_str(&self.event().to_string())
            .expect("a valid API Gateway v2 event")
    }
}

/// The status and JSON body of a handler's response.
pub fn parts(response: &Response<Body>) -> (u16, Value) {
    let bytes: &[u8] = response.body().as_ref();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).expect("JSON body")
    };
    (response.status().as_u16(), body)
}
