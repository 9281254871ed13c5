//! Who is calling, as established by the API Gateway JWT authorizer.
//!
//! The authorizer has already verified the token's signature, issuer,
//! audience (an access token's `client_id`, an ID token's `aud`) and expiry
//! before the function runs; functions read the claims it passes along.
//! The authorizer accepts ID tokens too, whose claims can carry user
//! attributes: only access tokens (`token_use` = `access`, with a
//! `client_id`) are accepted here, and groups come only from their
//! `cognito:groups`. Identity is never taken from a request body.

use std::collections::HashMap;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::error::ApiError;

pub const ADMIN_GROUP: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`: the stable user id.
    pub user_id: String,
    /// A member of the admin group, signed in through the admin console's
    /// app client (see [`admin_app_client`]).
    pub is_admin: bool,
}

/// The app client whose tokens may use admin routes (`ADMIN_APP_CLIENT_ID`,
/// the template's AdminConsoleClient, whose tokens live minutes). Unset
/// only outside Lambda (tests, `cargo run`): then any client's admin counts.
fn admin_app_client() -> Option<&'static str> {
    static CLIENT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            std::env::var("ADMIN_APP_CLIENT_ID")
                .ok()
                .filter(|c| !c.is_empty())
        })
        .as_deref()
}

impl Caller {
    /// The caller of an authorized route; 401 when the request carries no
    /// verified claims (e.g. invoked without the authorizer in front).
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let claims = jwt_claims(req)
            .ok_or_else(|| ApiError::unauthorized("a valid bearer token is required"))?;
        Self::from_claims(claims)
    }

    pub fn from_claims(claims: &HashMap<String, String>) -> Result<Self, ApiError> {
        Self::from_claims_with(claims, admin_app_client())
    }

    fn from_claims_with(
        claims: &HashMap<String, String>,
        admin_client: Option<&str>,
    ) -> Result<Self, ApiError> {
        if claims.get("token_use").map(String::as_str) != Some("access") {
            return Err(ApiError::unauthorized(
                "only access tokens are accepted (send the access token, not the ID or refresh token)",
            ));
        }
        let client_id = claims
            .get("client_id")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the token names no app client"))?;
        let user_id = claims
            .get("sub")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the token has no subject"))?
            .clone();
        let in_group = claims
            .get("cognito:groups")
            .is_some_and(|groups| parse_groups(groups).any(|g| g == ADMIN_GROUP));
        let is_admin = in_group && admin_client.is_none_or(|admin| admin == client_id);
        Ok(Self { user_id, is_admin })
    }

    /// 403 unless the caller is an administrator (through the admin console).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this operation requires the admin role",
            ))
        }
    }

    /// The conventions' rule for a `userId` in a body: absent, or the caller.
    pub fn check_claimed_user(&self, claimed: Option<&str>) -> Result<(), ApiError> {
        match claimed {
            Some(id) if id != self.user_id => Err(ApiError::forbidden(
                "userId in the body does not match the authenticated user",
            )),
            _ => Ok(()),
        }
    }
}

fn jwt_claims(req: &Request) -> Option<&HashMap<String, String>> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => {
            ctx.authorizer.as_ref()?.jwt.as_ref().map(|jwt| &jwt.claims)
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// HTTP APIs flatten the `cognito:groups` array into one string, the names
/// space-separated inside one pair of brackets: `[admin]`, `[admin staff]`.
/// Only that form is read, and names are compared whole: Cognito allows
/// punctuation in group names, so `support,admin`, `"admin"` or `[admin]`
/// are other groups, not admin. Anything not in that form holds no group.
fn parse_groups(raw: &str) -> impl Iterator<Item = &str> {
    raw.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or("")
        .split(' ')
        .filter(|g| !g.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    const ACCESS: [(&str, &str); 2] = [("token_use", "access"), ("client_id", "app")];

    fn access(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut all = claims(&ACCESS);
        all.extend(claims(pairs));
        all
    }

    #[test]
    fn plain_user() {
        let c = Caller::from_claims(&access(&[("sub", "u1")])).unwrap();
        assert_eq!(
            c,
            Caller {
                user_id: "u1".into(),
                is_admin: false
            }
        );
        assert_eq!(c.require_admin().unwrap_err().status.as_u16(), 403);
    }

    #[test]
    fn admin_group_as_api_gateway_flattens_it() {
        for groups in ["[admin]", "[staff admin]", "[admin staff]"] {
            let c =
                Caller::from_claims(&access(&[("sub", "u1"), ("cognito:groups", groups)])).unwrap();
            assert!(c.is_admin, "{groups}");
        }
    }

    /// Issue 29.5: group names are whole, and only the flattened form counts.
    #[test]
    fn lookalike_groups_are_not_admin() {
        for groups in [
            "[administrators]",
            "[staff]",
            "",
            "[]",
            "[support,admin]",
            "[\"admin\"]",
            "[[admin]]",
            "admin",
            "[\"staff\",\"admin\"]",
        ] {
            let c =
                Caller::from_claims(&access(&[("sub", "u1"), ("cognito:groups", groups)])).unwrap();
            assert!(!c.is_admin, "{groups}");
        }
    }

    #[test]
    fn missing_sub_is_unauthorized() {
        let e = Caller::from_claims(&access(&[("cognito:groups", "[admin]")])).unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
    }

    /// Issue 29.1: ID and refresh tokens pass the JWT authorizer (their
    /// audience is the app client) but are not access tokens.
    #[test]
    fn only_access_tokens_are_accepted() {
        for token_use in [None, Some("id"), Some("refresh"), Some("Access")] {
            let mut c = claims(&[
                ("sub", "u1"),
                ("client_id", "app"),
                ("cognito:groups", "[admin]"),
            ]);
            if let Some(t) = token_use {
                c.insert("token_use".into(), t.into());
            }
            let e = Caller::from_claims(&c).unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{token_use:?}");
        }
        let no_client = claims(&[("sub", "u1"), ("token_use", "access")]);
        assert_eq!(
            Caller::from_claims(&no_client).unwrap_err().status.as_u16(),
            401
        );
    }

    #[test]
    fn claimed_user_must_match() {
        let c = Caller {
            user_id: "u1".into(),
            is_admin: false,
        };
        assert!(c.check_claimed_user(None).is_ok());
        assert!(c.check_claimed_user(Some("u1")).is_ok());
        assert_eq!(
            c.check_claimed_user(Some("u2"))
                .unwrap_err()
                .status
                .as_u16(),
            403
        );
    }

    /// Issue 29.2: admin routes take only the admin console's short-lived
    /// tokens; an admin's token from the shop app is a shopper's.
    #[test]
    fn admins_only_through_the_admin_console_client() {
        let admin = |client: &str| {
            let mut c = access(&[("sub", "u1"), ("cognito:groups", "[admin]")]);
            c.insert("client_id".into(), client.into());
            Caller::from_claims_with(&c, Some("console")).unwrap()
        };
        assert!(admin("console").is_admin);
        assert!(!admin("shop").is_admin);
        assert_eq!(admin("shop").user_id, "u1", "still a signed-in shopper");
    }
}
