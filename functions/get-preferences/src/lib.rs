//! `GET /me/preferences`: the caller's notification locale and channels
//! (zh-CN and inbox only until they change them), and which of the phone
//! number and e-mail address are verified.

use adapters::notifications::Notifications;
use domain::notifications::PreferencesView;
use http_edge::http::json;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(notifications: &Notifications, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let preferences = notifications.preferences(&caller.user_id).await?;
    Ok(json(StatusCode::OK, &PreferencesView::from(&preferences)))
}
