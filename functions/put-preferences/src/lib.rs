//! `PUT /me/preferences`: replaces the caller's locale (`zh-CN` or `en`),
//! channels (`sms`, `email`; the inbox is always on) and the phone number
//! and email address they need. 400 names the first bad field. A phone
//! number must be in a country SMS may go to; a new number or address is
//! unverified until its code is confirmed (`/me/contact-verifications`),
//! and its channel stays silent until then.

use adapters::notifications::Notifications;
use domain::notifications::verification::SmsCountries;
use domain::notifications::{Preferences, PreferencesView};
use http_edge::http::{json, json_body};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(
    notifications: &Notifications,
    countries: &SmsCountries,
    req: Request,
) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let preferences: Preferences = json_body(&req)?;
    preferences.validate()?;
    if let Some(phone) = &preferences.phone_number {
        countries.check(phone)?;
    }
    let now_in_force = notifications
        .set_preferences(&caller.user_id, &preferences)
        .await?;
    Ok(json(StatusCode::OK, &PreferencesView::from(&now_in_force)))
}
