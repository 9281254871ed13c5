//! `GET /me/preferences`: the caller's notification locale and channels
//! (zh-CN and inbox only until they change them).

use adapters::notifications::Notifications;
use http_edge::http::json;
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;

pub async fn handle(notifications: &Notifications, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let preferences = notifications.preferences(&caller.user_id).await?;
    Ok(json(StatusCode::OK, &preferences))
}
