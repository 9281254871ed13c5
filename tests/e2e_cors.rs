//! CORS through the deployed local stack (issue 23.1): API Gateway answers
//! a browser's preflight from the API's CORS configuration, before the
//! authorizer; only the web app's origin (`E2E_WEB_ORIGIN`, the template's
//! `WebAppOrigins`) is allowed, and an authorized call from it carries the
//! headers a page needs to read the answer.

use reqwest::{Method, StatusCode};
use system_tests::e2e::Stack;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn preflight(stack: &Stack, path: &str, origin: &str, method: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", stack.api_url))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_web_apps_origin_passes_preflight_and_others_get_nothing() {
    let stack = Stack::from_env();
    let origin = system_tests::required_env("E2E_WEB_ORIGIN");
    // Routes with and without the authorizer, as a page calls them.
    for (path, method) in [
        ("/orders", "POST"),
        ("/products", "GET"),
        ("/me/rebates/withdrawals", "POST"),
    ] {
        let allowed = preflight(&stack, path, &origin, method).await;
        assert!(
            allowed.status().is_success(),
            "{path}: {}",
            allowed.status()
        );
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            Some(origin.as_str()),
            "{path}"
        );
        let headers = header(&allowed, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for needed in ["authorization", "content-type", "idempotency-key"] {
            assert!(headers.contains(needed), "{path}: {headers}");
        }
        let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains(method), "{path}: {methods}");

        let foreign = preflight(&stack, path, "https://evil.example", method).await;
        assert_eq!(
            header(&foreign, "access-control-allow-origin"),
            None,
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_authorized_call_from_the_page_can_read_its_answer() {
    let stack = Stack::from_env();
    let origin = system_tests::required_env("E2E_WEB_ORIGIN");
    let response = reqwest::Client::new()
        .get(format!("{}/me/rebates", stack.api_url))
        .header("Origin", &origin)
        .bearer_auth(&stack.user_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(origin.as_str())
    );
    let exposed = header(&response, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for needed in ["etag", "retry-after", "location"] {
        assert!(exposed.contains(needed), "{exposed}");
    }
    // From another origin the answer carries no grant: a browser hides it.
    let response = reqwest::Client::new()
        .get(format!("{}/me/rebates", stack.api_url))
        .header("Origin", "https://evil.example")
        .bearer_auth(&stack.user_token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}
