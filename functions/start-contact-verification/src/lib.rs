//! `POST /me/contact-verifications` `{channel: "sms" | "email"}`: sends a
//! one-time code to the phone number or e-mail address in the caller's
//! preferences, which is proven once the code comes back through
//! `POST /me/contact-verifications/confirm`. 202 with where it went
//! (masked) and until when it is good; 200 if that destination is already
//! verified; 409 when the preferences hold none; 429 within a minute of the
//! last code or past the channel's daily cap (codes count towards it).

use adapters::notifications::sns::{Email, Sms};
use adapters::notifications::{DailyCap, Notifications, code_hash};
use domain::clock;
use domain::notifications::verification::{
    CODE_TTL_SECONDS, Contact, PendingCode, RESEND_AFTER_SECONDS, SmsCountries, StartVerification,
    VerificationError, code_message, mask, new_code,
};
use http_edge::http::{json, json_body};
use http_edge::{ApiResult, Caller};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::Serialize;

pub struct CodeSender {
    pub store: Notifications,
    pub sms: Sms,
    pub email: Email,
    pub countries: SmsCountries,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sent {
    channel: Contact,
    destination: String,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

pub async fn handle(sender: &CodeSender, req: Request) -> ApiResult {
    let caller = Caller::from_request(&req)?;
    let StartVerification { channel } = json_body(&req)?;
    let user_id = caller.user_id.as_str();
    let state = sender.store.contact_state(user_id).await?;
    let preferences = &state.preferences;
    let destination = preferences
        .destination(channel)
        .ok_or(VerificationError::NoDestination(channel))?;
    if channel == Contact::Sms {
        sender.countries.check(destination)?;
    }
    if preferences.verified.of(channel) {
        let already = Sent {
            channel,
            destination: mask(channel, destination),
            verified: true,
            expires_at: None,
        };
        return Ok(json(StatusCode::OK, &already));
    }

    let now = clock::now();
    let epoch = now.unix_timestamp();
    if let Some(last) = state.pending.get(&channel)
        && last.sent_at > epoch - RESEND_AFTER_SECONDS
    {
        let wait = last.sent_at + RESEND_AFTER_SECONDS - epoch;
        return Err(VerificationError::TooSoon {
            retry_after_seconds: wait,
        }
        .into());
    }
    let code = new_code();
    let pending = PendingCode {
        destination: destination.to_owned(),
        code_hash: code_hash(user_id, destination, &code),
        sent_at: epoch,
        expires_at: epoch + CODE_TTL_SECONDS,
        attempts: 0,
    };
    if !sender.store.put_code(user_id, channel, &pending).await? {
        // Another request sent one first.
        return Err(VerificationError::TooSoon {
            retry_after_seconds: RESEND_AFTER_SECONDS,
        }
        .into());
    }
    // The cap after the one-a-minute write: racing requests, refused there,
    // do not use up the day's messages.
    let cap = sender.cap(channel);
    if !cap.take(user_id, now).await? {
        return Err(VerificationError::DailyCapReached {
            contact: channel,
            cap: cap.per_day,
            retry_after_seconds: DailyCap::seconds_to_reset(now),
        }
        .into());
    }
    sender
        .send(channel, destination, preferences.locale, &code, &pending)
        .await?;
    let sent = Sent {
        channel,
        destination: mask(channel, destination),
        verified: false,
        expires_at: Some(clock::rfc3339(now + time_seconds(CODE_TTL_SECONDS))),
    };
    Ok(json(StatusCode::ACCEPTED, &sent))
}

fn time_seconds(seconds: i64) -> std::time::Duration {
    std::time::Duration::from_secs(seconds.unsigned_abs())
}

impl CodeSender {
    fn cap(&self, channel: Contact) -> &DailyCap {
        match channel {
            Contact::Sms => &self.sms.cap,
            Contact::Email => &self.email.cap,
        }
    }

    async fn send(
        &self,
        channel: Contact,
        destination: &str,
        locale: domain::notifications::Locale,
        code: &str,
        pending: &PendingCode,
    ) -> Result<(), VerificationError> {
        let (title, body) = code_message(locale, code);
        let sent = match channel {
            Contact::Sms => self.sms.send(destination, &body).await,
            Contact::Email => {
                let id = format!("verification#{}", pending.sent_at);
                self.email.send(destination, &title, &body, &id).await
            }
        };
        sent.map_err(|e| VerificationError::NotSent(e.to_string()))
    }
}
