//! `POST /me/contact-verifications/confirm` `{channel, code}`: proves the
//! phone number or e-mail address a code was sent to. 200 once it matches
//! (the code is then used up); 400 naming `code` with the attempts left
//! when it does not; 409 when no code is open for the destination now in
//! the preferences (never sent, expired, used up, or the destination
//! changed since). Each code takes at most five guesses.

use adapters::notifications::{Notifications, code_hash};
use domain::clock;
use domain::notifications::verification::{
    ConfirmVerification, Contact, MAX_ATTEMPTS, VerificationError, mask,
};
use http_edge::http::{json, json_body};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Confirmed {
    channel: Contact,
    destination: String,
    verified: bool,
}

pub async fn handle(store: &Notifications, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let confirmation: ConfirmVerification = json_body(&req)?;
    confirmation.validate()?;
    let channel = confirmation.channel;
    let user_id = caller.user_id.as_str();
    let state = store.contact_state(user_id).await?;
    let no_open_code = VerificationError::NoOpenCode(channel);
    let destination = state
        .preferences
        .destination(channel)
        .ok_or_else(|| no_open_code.clone())?;
    let now = clock::now().unix_timestamp();
    let pending = state
        .pending
        .get(&channel)
        .filter(|p| p.open_for(destination, now))
        .ok_or_else(|| no_open_code.clone())?;
    if code_hash(user_id, destination, &confirmation.code) != pending.code_hash {
        store.count_wrong_guess(user_id, channel, pending).await?;
        let attempts_left = MAX_ATTEMPTS.saturating_sub(pending.attempts + 1);
        return Err(VerificationError::WrongCode { attempts_left }.into());
    }
    // Conditional on the code as read: a guess counted or a new code sent
    // meanwhile wins, and this one must be tried again.
    if !store.confirm(user_id, channel, pending).await? {
        return Err(no_open_code.into());
    }
    let confirmed = Confirmed {
        channel,
        destination: mask(channel, destination),
        verified: true,
    };
    Ok(json(StatusCode::OK, &confirmed))
}
