//! Page tokens: a listing's `LastEvaluatedKey` as an opaque, URL-safe
//! `nextToken`, and back, checked for shape and owner before any read.

use adapters::db::Item;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lambda_http::http::StatusCode;

use crate::error::ApiError;

/// DynamoDB's limit on a sort key's size (a partition key may take 2048).
const MAX_KEY_BYTES: usize = 1024;

/// 400 for a `nextToken` the API did not issue (to this caller).
pub fn invalid() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_NEXT_TOKEN",
        "nextToken is not a token this API issued to you",
    )
}

/// [`decode`] for a listing of one owner's items: a token whose
/// `owner_attribute` is not `owner` (another user's listing) is refused.
pub fn decode_owned(
    token: &str,
    expected_names: &[&str],
    owner_attribute: &str,
    owner: &str,
) -> Result<Item, ApiError> {
    let key = decode(token, expected_names)?;
    match key.get(owner_attribute) {
        Some(AttributeValue::S(value)) if value == owner => Ok(key),
        _ => Err(invalid()),
    }
}

/// One page of a listing, as every listing answers it:
/// `{"items": [...], "nextToken": "..."}` (no token on the last page).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

impl<T> Page<T> {
    /// The page of `items` whose query stopped at `last_key`.
    pub fn new(items: Vec<T>, last_key: Option<&Item>) -> Self {
        Self {
            items,
            next_token: last_key.map(encode),
        }
    }
}

/// Turns DynamoDB's `LastEvaluatedKey` into an opaque, URL-safe token.
pub fn encode(key: &Item) -> String {
    let map: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .filter_map(|(name, value)| {
            let encoded = match value {
                AttributeValue::S(s) => serde_json::json!({ "S": s }),
                AttributeValue::N(n) => serde_json::json!({ "N": n }),
                // Key attributes are only ever strings or numbers.
                _ => return None,
            };
            Some((name.clone(), encoded))
        })
        .collect();
    URL_SAFE_NO_PAD.encode(serde_json::Value::Object(map).to_string())
}

/// Reads a token made by [`encode`]; anything else, including a
/// token whose key attributes differ from `expected_names`, is a 400.
///
/// Every key attribute of every table and index is a string (the template
/// declares no other; tests/template.rs checks it), so a token holding any
/// other type is refused here rather than reaching DynamoDB, whose
/// ValidationException would be a 500 (`{"N": "NaN"}`, `{"N": "inf"}`).
pub fn decode(token: &str, expected_names: &[&str]) -> Result<Item, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let object = value.as_object().ok_or_else(invalid)?;
    if object.len() != expected_names.len()
        || !expected_names.iter().all(|n| object.contains_key(*n))
    {
        return Err(invalid());
    }
    object
        .iter()
        .map(|(name, encoded)| {
            let attr = match encoded.as_object().map(|o| (o.len(), o.get("S"))) {
                Some((1, Some(serde_json::Value::String(s))))
                    if !s.is_empty() && s.len() <= MAX_KEY_BYTES =>
                {
                    AttributeValue::S(s.clone())
                }
                _ => return Err(invalid()),
            };
            Ok((name.clone(), attr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_token_round_trips() {
        let key: Item = [
            ("productId".to_owned(), AttributeValue::S("p-1".into())),
            (
                "createdAt".to_owned(),
                AttributeValue::S("2026-11-22T00:00:00.000Z".into()),
            ),
        ]
        .into();
        let token = encode(&key);
        assert!(!token.contains('='), "url-safe, unpadded");
        assert_eq!(decode(&token, &["productId", "createdAt"]).unwrap(), key);
    }

    #[test]
    fn foreign_tokens_are_rejected() {
        for token in [
            "",
            "!!!",
            "bm90IGpzb24",
            &URL_SAFE_NO_PAD.encode(r#"{"other":{"S":"x"}}"#),
        ] {
            let err = decode(token, &["productId"]).unwrap_err();
            assert_eq!(err.code, "INVALID_NEXT_TOKEN", "{token}");
        }
        // Issue 29.4: anything but a non-empty string is refused before it
        // can reach DynamoDB (which answers NaN or inf with a 500).
        for forged in [
            r#"{"productId":{"B":"x"}}"#,
            r#"{"productId":{"N":"NaN"}}"#,
            r#"{"productId":{"N":"inf"}}"#,
            r#"{"productId":{"N":"1"}}"#,
            r#"{"productId":{"S":""}}"#,
            r#"{"productId":{"S":"x","N":"1"}}"#,
            r#"{"productId":{"S":5}}"#,
        ] {
            let token = URL_SAFE_NO_PAD.encode(forged);
            let err = decode(&token, &["productId"]).unwrap_err();
            assert_eq!(err.code, "INVALID_NEXT_TOKEN", "{forged}");
        }
        let long = format!(r#"{{"productId":{{"S":"{}"}}}}"#, "x".repeat(1025));
        assert!(decode(&URL_SAFE_NO_PAD.encode(long), &["productId"]).is_err());
    }
}
