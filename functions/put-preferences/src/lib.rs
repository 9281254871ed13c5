//! `PUT /me/preferences`: replaces the caller's locale (`zh-CN` or `en`),
//! channels (`sms`, `email`; the inbox is always on) and the phone number
//! and email address they need. 400 names the first bad field.

use adapters::notifications::Notifications;
use domain::notifications::Preferences;
use http_edge::http::{json, json_body};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(notifications: &Notifications, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let preferences: Preferences = json_body(&req)?;
    preferences.validate()?;
    notifications
        .set_preferences(&caller.user_id, &preferences)
        .await?;
    Ok(json(StatusCode::OK, &preferences))
}
