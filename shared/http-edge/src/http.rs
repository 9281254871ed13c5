//! Request parsing and response building for API Gateway HTTP API handlers.
//!
//! Handlers return [`ApiResult`]; [`serve`] turns every outcome, error or not,
//! into a well-formed JSON response so that no client mistake can surface as
//! a Lambda error (which API Gateway would turn into an opaque 500).

use std::future::Future;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::ApiError;
use adapters::metrics;

pub type ApiResult = Result<Response<Body>, ApiError>;

/// Largest request body any route accepts (API Gateway itself allows 10 MB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Runs a handler on the Lambda runtime, answering every error as JSON.
///
/// Every log line of a request carries its operation (the route), API
/// Gateway's request id and the correlation id (the runtime's own span adds
/// the Lambda request id); its metrics are flushed once it has answered.
pub async fn serve<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = ApiResult> + Send,
{
    lambda_http::run(lambda_http::service_fn(move |req: Request| {
        let span = request_span(&req);
        let request_id = req.lambda_context_ref().map(|c| c.request_id.clone());
        let answer = handler(req).instrument(span.clone());
        async move {
            let response = into_response(answer.await);
            span.in_scope(|| tracing::info!(status = response.status().as_u16(), "answered"));
            metrics::flush(request_id.as_deref().unwrap_or_default());
            Ok::<_, lambda_http::Error>(response)
        }
    }))
    .await
}

/// The tracing span of one API request.
fn request_span(req: &Request) -> tracing::Span {
    let (operation, api_request_id) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            ctx.route_key.clone().unwrap_or_default(),
            ctx.request_id.clone().unwrap_or_default(),
        ),
        _ => Default::default(),
    };
    tracing::info_span!(
        "request",
        operation,
        apiRequestId = api_request_id,
        correlationId = correlation_id(req),
    )
}

/// The response for a handler's outcome, with the headers every answer
/// carries: `X-Content-Type-Options: nosniff`, and `Cache-Control:
/// no-store` unless the handler chose its caching (only the catalog's
/// answers do): orders, payments, preferences, rebates, notifications and
/// every error are private and must not be kept by any cache.
pub fn into_response(result: ApiResult) -> Response<Body> {
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            if err.status.is_server_error() {
                tracing::error!(code = err.code, message = %err.message, "request failed");
            } else {
                tracing::info!(
                    status = err.status.as_u16(),
                    code = err.code,
                    "request rejected"
                );
            }
            let mut response = json(err.status, &err.body());
            if let Some(seconds) = err.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A JSON response with the given status.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    // Serializing our own plain data types cannot fail; if it ever did, an
    // empty-object body is a better answer than a panic in the runtime.
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// How long clients may reuse a catalog answer without asking again. Short:
/// stock moves with every order. `private`: answers sit behind a token.
pub const CATALOG_CACHE_CONTROL: &str = "private, max-age=5";

/// A JSON answer with an `ETag` (a hash of the exact body) that answers a
/// matching `If-None-Match` with `304 Not Modified` and no body.
pub fn cacheable_json<T: Serialize + ?Sized>(
    req: &Request,
    value: &T,
    cache_control: &'static str,
) -> Response<Body> {
    use sha2::{Digest, Sha256};
    let mut response = json(StatusCode::OK, value);
    let digest = Sha256::digest(response.body().as_ref());
    let etag: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{etag}\"");
    let matches = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    if matches {
        response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

/// 201 with a `Location` header for the created resource.
pub fn created<T: Serialize + ?Sized>(value: &T, location: &str) -> Response<Body> {
    let mut response = json(StatusCode::CREATED, value);
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A response whose JSON body was stored earlier (idempotent replays).
pub fn stored_json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The id that ties this request to the events and logs it causes: the
/// caller's `X-Correlation-Id` when it is sane, else API Gateway's request id.
pub fn correlation_id(req: &Request) -> String {
    let from_header = req
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()));
    if let Some(id) = from_header {
        return id.to_owned();
    }
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) if ctx.request_id.is_some() => {
            ctx.request_id.clone().unwrap_or_default()
        }
        _ => domain::ids::new_id(),
    }
}

/// The API's public URL, `https://host[/stage]`, where providers send their
/// notifications: `PUBLIC_API_URL` when an operator set one (a custom
/// domain, CloudFront), else the host and stage API Gateway served this
/// request on. Derived per request because the template cannot hand the API's
/// own URL to a function behind it (that reference would be circular).
pub fn public_base_url(req: &Request) -> String {
    if let Ok(url) = std::env::var("PUBLIC_API_URL")
        && !url.trim().is_empty()
    {
        return url.trim().trim_end_matches('/').to_owned();
    }
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let host = ctx.domain_name.as_deref().unwrap_or("localhost");
            match ctx.stage.as_deref() {
                None | Some("$default") | Some("") => format!("https://{host}"),
                Some(stage) => format!("https://{host}/{stage}"),
            }
        }
        _ => "https://localhost".to_owned(),
    }
}

/// Parses the JSON body into `T`, naming the offending field on failure.
///
/// Rejects bodies over [`MAX_BODY_BYTES`] (413), a body with a missing or
/// non-JSON `Content-Type` (415), an empty or syntactically broken body (400
/// `MALFORMED_JSON`) and wrong, missing or unknown fields (400
/// `INVALID_FIELD`).
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    match req.headers().get(header::CONTENT_TYPE) {
        Some(content_type) => {
            let value = content_type.to_str().unwrap_or("");
            if !is_json_media_type(value) {
                return Err(ApiError::unsupported_media_type(value));
            }
        }
        // A body of unstated type is not assumed to be JSON; no body at
        // all is better told as the missing object below.
        None if !empty => return Err(ApiError::missing_media_type()),
        None => {}
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    if empty {
        return Err(ApiError::malformed_json(
            "request body is empty; a JSON object is required",
        ));
    }
    parse_json(bytes)
}

/// Deserializes a JSON object from `bytes`, mapping serde's errors onto the
/// conventions' codes.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde's derived structs also accept a JSON array of the fields in
    // order (`[5]` would set the first field): every body here is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::invalid_field("body", "must be a JSON object"),
                Err(e) => ApiError::malformed_json(format!("request body is not valid JSON: {e}")),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        use serde_json::error::Category;
        // A field error found before a later syntax error must not hide it:
        // broken JSON is reported as such (checked only on this error path).
        let syntax_ok = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        match inner.classify() {
            Category::Data if syntax_ok => field_error(&path, &inner),
            // serde_json reports a non-string where an enum is expected
            // (`{"locale": null}`, `{"paymentMethod": 5}`) as a syntax
            // error, though the JSON is valid: it is the field's value that
            // is wrong.
            Category::Syntax if syntax_ok => ApiError::invalid_field(
                field_name(&path),
                "has a value of the wrong type: expected one of its allowed strings",
            ),
            Category::Data => ApiError::malformed_json("request body is not valid JSON"),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::malformed_json(format!("request body is not valid JSON: {inner}"))
            }
        }
    })?;
    de.end()
        .map_err(|e| ApiError::malformed_json(format!("request body is not valid JSON: {e}")))?;
    Ok(value)
}

fn field_name(path: &str) -> &str {
    if path == "." || path.is_empty() {
        "body"
    } else {
        path
    }
}

/// Builds the 400 for a data error at `path`, naming the field.
fn field_error(path: &str, err: &serde_json::Error) -> ApiError {
    // serde's own text ends with " at line L column C", which only helps
    // when reading raw JSON; the field path is the useful part here.
    let text = err.to_string();
    let text = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(head, _)| head);
    let field = if path == "." || path.is_empty() {
        // Missing fields are reported at the parent; the name is in backticks.
        text.split('`').nth(1).unwrap_or("body").to_owned()
    } else {
        path.to_owned()
    };
    ApiError::invalid_field(&field, text)
}

fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A path parameter that the route template guarantees.
pub fn path_param(req: &Request, name: &str) -> Result<String, ApiError> {
    req.path_parameters()
        .first(name)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid_field(name, "path parameter is missing"))
}

/// An optional query string parameter.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters().first(name).map(str::to_owned)
}

/// Parses an optional `limit` query parameter within `1..=max`.
pub fn limit_param(req: &Request, default: i32, max: i32) -> Result<i32, ApiError> {
    match query_param(req, "limit") {
        None => Ok(default),
        Some(raw) => raw
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "limit",
                    format!("must be an integer from 1 to {max}, got {raw:?}"),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Stock {
        new_stock: i64,
    }

    fn err_of(body: &str) -> ApiError {
        parse_json::<Stock>(body.as_bytes()).unwrap_err()
    }

    /// The domain's request shapes, parsed as handlers parse them: a wrong
    /// field is named in the 400.
    #[test]
    fn domain_requests_name_the_wrong_field() {
        use domain::catalog::ProductDraft;
        use domain::orders::CreateOrderRequest;
        use domain::payments::InitiatePaymentRequest;
        use domain::rebates::RebateRules;
        let field = |e: ApiError| e.details["field"].as_str().unwrap_or_default().to_owned();
        let e = parse_json::<ProductDraft>(
            br#"{"name":"Tea","category":"food","price":19.99,"stock":1}"#,
        )
        .unwrap_err();
        assert_eq!(field(e), "price");
        for body in [
            &br#"{"orderId":"o1","paymentMethod":"BITCOIN"}"#[..],
            br#"{"orderId":"o1"}"#,
        ] {
            let e = parse_json::<InitiatePaymentRequest>(body).unwrap_err();
            assert_eq!(field(e), "paymentMethod");
        }
        let e = parse_json::<RebateRules>(br#"{"defaultRate": 100}"#).unwrap_err();
        assert!(e.message.contains("defaultRate"), "{}", e.message);
        let e = parse_json::<RebateRules>(br#"{"defaultRateBps": -1}"#).unwrap_err();
        assert_eq!(field(e), "defaultRateBps");
        let e =
            parse_json::<CreateOrderRequest>(br#"{"productId":"a","quantity":1.5}"#).unwrap_err();
        assert!(e.message.contains("quantity"), "{}", e.message);
    }

    #[test]
    fn valid_body_parses() {
        assert_eq!(
            parse_json::<Stock>(br#"{"newStock": 5}"#)
                .unwrap()
                .new_stock,
            5
        );
    }

    #[test]
    fn wrong_type_names_field() {
        let e = err_of(r#"{"newStock": "5"}"#);
        assert_eq!(e.code, "INVALID_FIELD");
        assert_eq!(e.details["field"], "newStock");
    }

    #[test]
    fn fraction_names_field() {
        let e = err_of(r#"{"newStock": 1.5}"#);
        assert_eq!(e.details["field"], "newStock");
    }

    #[test]
    fn missing_field_names_field() {
        let e = err_of("{}");
        assert_eq!(e.code, "INVALID_FIELD");
        assert_eq!(e.details["field"], "newStock");
        assert!(e.message.contains("missing field"), "{}", e.message);
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let e = err_of(r#"{"newStock": 1, "colour": "red"}"#);
        assert_eq!(e.code, "INVALID_FIELD");
        assert!(e.message.contains("colour"), "{}", e.message);
    }

    #[test]
    fn syntax_error_is_malformed() {
        assert_eq!(err_of(r#"{"newStock": "#).code, "MALFORMED_JSON");
        assert_eq!(err_of("{} trailing").code, "MALFORMED_JSON");
    }

    #[test]
    fn non_object_bodies_are_rejected() {
        for body in ["[5]", "5", "\"x\"", "null", "true"] {
            let e = err_of(body);
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "INVALID_FIELD"),
                "{body}"
            );
            assert_eq!(e.details["field"], "body");
        }
        assert_eq!(err_of("[5").code, "MALFORMED_JSON");
    }

    #[test]
    fn huge_number_names_field() {
        let e = err_of(r#"{"newStock": 1e400}"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
    }

    /// Issue 29.8: every answer says nosniff; private ones are no-store,
    /// the catalog's keep their own caching.
    #[test]
    fn every_answer_carries_the_security_headers() {
        let private = into_response(Ok(json(StatusCode::OK, &serde_json::json!({}))));
        let error = into_response(Err(ApiError::forbidden("no")));
        for response in [&private, &error] {
            assert_eq!(response.headers()["x-content-type-options"], "nosniff");
            assert_eq!(response.headers()["cache-control"], "no-store");
        }
        let req = lambda_http::http::Request::builder()
            .body(Body::Empty)
            .unwrap();
        let catalog = into_response(Ok(cacheable_json(&req, &1, CATALOG_CACHE_CONTROL)));
        assert_eq!(catalog.headers()["x-content-type-options"], "nosniff");
        assert_eq!(catalog.headers()["cache-control"], CATALOG_CACHE_CONTROL);
    }

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut builder = lambda_http::http::Request::builder();
        if let Some(value) = content_type {
            builder = builder.header(header::CONTENT_TYPE, value);
        }
        builder.body(Body::Text(body.to_owned())).unwrap()
    }

    /// Issue 27.6: a body without a Content-Type is 415, like any non-JSON one.
    #[test]
    fn a_body_needs_a_json_content_type() {
        let ok: Stock =
            json_body(&request(Some("application/json"), r#"{"newStock": 1}"#)).unwrap();
        assert_eq!(ok.new_stock, 1);
        for content_type in [None, Some("text/plain")] {
            let err = json_body::<Stock>(&request(content_type, r#"{"newStock": 1}"#)).unwrap_err();
            assert_eq!(
                (err.status.as_u16(), err.code),
                (415, "UNSUPPORTED_MEDIA_TYPE")
            );
        }
        // No body and no type: the missing object is the clearer answer.
        let err = json_body::<Stock>(&request(None, "")).unwrap_err();
        assert_eq!(err.code, "MALFORMED_JSON");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct WithEnum {
        locale: Option<Locale>,
    }

    #[derive(Debug, serde::Deserialize)]
    enum Locale {
        #[serde(rename = "en")]
        En,
    }

    /// Issues 27.8 and 28.7: valid JSON with a non-string where an enum is
    /// expected names the field; it is not "not valid JSON".
    #[test]
    fn a_non_string_enum_value_names_the_field() {
        for body in [
            r#"{"locale": 5}"#,
            r#"{"locale": true}"#,
            r#"{"locale": []}"#,
        ] {
            let err = parse_json::<WithEnum>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, "INVALID_FIELD", "{body}");
            assert_eq!(err.details["field"], "locale", "{body}");
        }
        assert!(parse_json::<WithEnum>(br#"{"locale": "en"}"#).is_ok());
        let broken = parse_json::<WithEnum>(br#"{"locale": 5"#).unwrap_err();
        assert_eq!(broken.code, "MALFORMED_JSON");
    }
}
