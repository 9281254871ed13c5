//! Proving a contact before it is used (issues 29.3 and 26.3): the SMS and
//! e-mail channels send only to a phone number or address its user has
//! confirmed with a one-time code sent there, so nobody can make the shop
//! message a third party (or pump premium-rate SMS) by typing their number.
//!
//! A code is six digits, lives [`CODE_TTL_SECONDS`], takes at most
//! [`MAX_ATTEMPTS`] guesses and is used once; a new one may be asked for
//! after [`RESEND_AFTER_SECONDS`] and replaces the old. Codes count towards
//! the channel's daily cap like every other message. Changing the number or
//! the address in the preferences makes it unverified again (what was
//! verified is the destination, not the channel).

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, StoreError};
use crate::notifications::Locale;

pub const CODE_TTL_SECONDS: i64 = 600;
pub const MAX_ATTEMPTS: u32 = 5;
pub const RESEND_AFTER_SECONDS: i64 = 60;
pub const CODE_DIGITS: usize = 6;

/// A channel that leaves the system, and so needs a proven destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contact {
    Sms,
    Email,
}

impl Contact {
    pub fn as_str(self) -> &'static str {
        match self {
            Contact::Sms => "sms",
            Contact::Email => "email",
        }
    }

    /// The preferences field that holds this channel's destination.
    pub fn field(self) -> &'static str {
        match self {
            Contact::Sms => "phoneNumber",
            Contact::Email => "email",
        }
    }
}

/// Which destinations in the preferences are proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Verified {
    pub sms: bool,
    pub email: bool,
}

impl Verified {
    pub fn of(self, contact: Contact) -> bool {
        match contact {
            Contact::Sms => self.sms,
            Contact::Email => self.email,
        }
    }
}

/// A code sent and not yet confirmed (stored hashed, never in clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCode {
    pub destination: String,
    pub code_hash: String,
    /// Unix seconds.
    pub sent_at: i64,
    pub expires_at: i64,
    pub attempts: u32,
}

impl PendingCode {
    /// Whether `destination` may still be confirmed with this code at `now`.
    pub fn open_for(&self, destination: &str, now: i64) -> bool {
        self.destination == destination && now < self.expires_at && self.attempts < MAX_ATTEMPTS
    }
}

/// The body of `POST /me/contact-verifications`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartVerification {
    pub channel: Contact,
}

/// The body of `POST /me/contact-verifications/confirm`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfirmVerification {
    pub channel: Contact,
    pub code: String,
}

impl ConfirmVerification {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.code.len() == CODE_DIGITS && self.code.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(FieldError::new(
                "code",
                format!("must be the {CODE_DIGITS} digits that were sent"),
            ))
        }
    }
}

/// A fresh code: six digits from the ULID's 80 random bits, which come from
/// the operating system's CSPRNG through `rand`'s thread generator.
pub fn new_code() -> String {
    let random = ulid::Ulid::new().random();
    format!("{:06}", random % 1_000_000)
}

/// What the code's message says, in the user's locale.
pub fn code_message(locale: Locale, code: &str) -> (String, String) {
    let minutes = CODE_TTL_SECONDS / 60;
    match locale {
        Locale::ZhCn => (
            "验证码".to_owned(),
            format!("您的验证码是 {code}，{minutes} 分钟内有效。如非本人操作，请忽略。"),
        ),
        Locale::En => (
            "Verification code".to_owned(),
            format!(
                "Your verification code is {code}. It expires in {minutes} minutes. If you did not ask for it, ignore this message."
            ),
        ),
    }
}

/// A destination as the API shows it back: enough to recognise, not to read
/// (`+86*******8000`, `l***@example.com`).
pub fn mask(contact: Contact, destination: &str) -> String {
    match contact {
        Contact::Sms => {
            let keep = destination.len().saturating_sub(4);
            let (head, tail) = destination.split_at(keep);
            let shown = head.chars().take(3).collect::<String>();
            format!("{shown}{}{tail}", "*".repeat(head.len().saturating_sub(3)))
        }
        Contact::Email => match destination.split_once('@') {
            Some((local, domain)) => {
                format!("{}***@{domain}", local.chars().next().unwrap_or('*'))
            }
            None => "***".to_owned(),
        },
    }
}

/// The countries SMS may go to, as calling codes (`SMS_COUNTRY_CODES`,
/// e.g. `86,852`): toll fraud pumps premium-rate numbers abroad, so a shop
/// sends only where its customers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsCountries(Vec<String>);

impl SmsCountries {
    /// Comma-separated calling codes of 1–3 digits; `None` if any is not.
    pub fn parse(list: &str) -> Option<Self> {
        let codes: Vec<String> = list
            .split(',')
            .map(|c| c.trim().trim_start_matches('+').to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        let valid = !codes.is_empty()
            && codes
                .iter()
                .all(|c| (1..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()));
        valid.then_some(Self(codes))
    }

    pub fn allows(&self, phone: &str) -> bool {
        let digits = phone.strip_prefix('+').unwrap_or("");
        self.0.iter().any(|code| digits.starts_with(code.as_str()))
    }

    pub fn codes(&self) -> String {
        self.0
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// 400 for a phone number SMS may not go to.
    pub fn check(&self, phone: &str) -> Result<(), FieldError> {
        if self.allows(phone) {
            Ok(())
        } else {
            Err(FieldError::new(
                "phoneNumber",
                format!("SMS go to numbers of {} only", self.codes()),
            ))
        }
    }
}

/// Why a verification step did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerificationError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The preferences hold no phone number (or address) to verify.
    #[error("no {} is set to verify", .0.field())]
    NoDestination(Contact),
    #[error("a code was sent less than {RESEND_AFTER_SECONDS} s ago")]
    TooSoon { retry_after_seconds: i64 },
    #[error("the daily limit of {cap} messages by {} is reached", .contact.as_str())]
    DailyCapReached {
        contact: Contact,
        cap: u32,
        retry_after_seconds: i64,
    },
    /// No code is open for the destination now in the preferences (never
    /// sent, expired, used up, or the destination changed since).
    #[error("no open code for {}", .0.as_str())]
    NoOpenCode(Contact),
    #[error("the code does not match")]
    WrongCode { attempts_left: u32 },
    #[error("the code could not be sent: {0}")]
    NotSent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..50).map(|_| new_code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(codes.len() > 40, "50 codes, {} distinct", codes.len());
    }

    #[test]
    fn confirmations_take_six_digits_only() {
        let confirm = |code: &str| ConfirmVerification {
            channel: Contact::Sms,
            code: code.into(),
        };
        assert!(confirm("012345").validate().is_ok());
        for bad in ["12345", "1234567", "12345a", "", "１２３４５６"] {
            assert_eq!(confirm(bad).validate().unwrap_err().field, "code", "{bad}");
        }
    }

    #[test]
    fn destinations_are_masked() {
        assert_eq!(mask(Contact::Sms, "+8613800138000"), "+86*******8000");
        assert_eq!(mask(Contact::Email, "li@example.com"), "l***@example.com");
    }

    #[test]
    fn sms_countries() {
        let china = SmsCountries::parse("86, +852").unwrap();
        assert!(china.allows("+8613800138000"));
        assert!(china.allows("+85291234567"));
        assert!(!china.allows("+4479460000"));
        assert_eq!(china.check("+15550100").unwrap_err().field, "phoneNumber");
        for bad in ["", "86,x", "1234", ","] {
            assert!(SmsCountries::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_code_is_open_for_its_destination_until_it_expires_or_is_used_up() {
        let pending = PendingCode {
            destination: "+8613800138000".into(),
            code_hash: "h".into(),
            sent_at: 0,
            expires_at: 600,
            attempts: 0,
        };
        assert!(pending.open_for("+8613800138000", 599));
        assert!(!pending.open_for("+8613800138000", 600));
        assert!(!pending.open_for("+8613900139000", 1));
        let used_up = PendingCode {
            attempts: MAX_ATTEMPTS,
            ..pending
        };
        assert!(!used_up.open_for("+8613800138000", 1));
    }
}
