//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) and what
//! comes with them: base32 secrets, the `otpauth://` URI authenticator apps read, its QR code
//! (SVG for the enrolment page, Unicode blocks for the terminal), and recovery codes with their
//! keyed hashes. Codes are computed by `totp-rs`; which step a code belongs to (one step of
//! clock skew either way, never a step at or before the last one used) is decided here.
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;

/// Seconds per step.
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "comfy-warden";

/// A TOTP secret (raw bytes). Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// 160 random bits, the size RFC 4226 recommends for HMAC-SHA-1.
    pub fn generate() -> Secret {
        let mut bytes = vec![0u8; 20];
        rand::rng().fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// Parses base32 (RFC 4648) as written in secret files and shown by apps: case, spaces,
    /// dashes and `=` padding do not matter. At least 80 bits (what older apps made).
    pub fn from_base32(text: &str) -> Result<Secret, String> {
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &cleaned)
            .ok_or_else(|| "the TOTP secret is not valid base32 (A-Z, 2-7)".to_string())?;
        if bytes.len() < 10 {
            return Err(
                "the TOTP secret is too short: it needs at least 16 base32 characters (80 bits)"
                    .into(),
            );
        }
        Ok(Secret(bytes))
    }

    /// Base32 without padding, as apps expect it.
    pub fn to_base32(&self) -> String {
        base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &self.0)
    }

    fn totp(&self) -> totp_rs::TOTP {
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, DIGITS, 0, STEP, self.0.clone())
    }

    /// The code of one time step.
    pub fn code_at_step(&self, step: u64) -> String {
        self.totp().generate(step.saturating_mul(STEP))
    }

    /// The step `code` belongs to, among the current one and one either side, if it is later
    /// than `after` (the last step used; a code is accepted once). Compared in constant time.
    pub fn matching_step(&self, code: &str, now_secs: u64, after: Option<u64>) -> Option<u64> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now = now_secs / STEP;
        let mut found = None;
        for step in [now.saturating_sub(1), now, now + 1] {
            let expected = self.code_at_step(step);
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.as_bytes()).into();
            if same && after.is_none_or(|a| step > a) && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

/// The `otpauth://totp/…` URI of a secret, for a QR code or for apps that take a link.
pub fn otpauth_uri(user: &str, secret: &Secret) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let label = format!("{ISSUER}:{user}");
    format!(
        "otpauth://totp/{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        utf8_percent_encode(&label, NON_ALPHANUMERIC),
        secret.to_base32(),
        utf8_percent_encode(ISSUER, NON_ALPHANUMERIC),
    )
}

/// The QR code of `data` as an inline `<svg>` element (no XML prologue), black on white.
pub fn qr_svg(data: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(data.as_bytes()).map_err(|e| e.to_string())?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(220, 220)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].to_owned())
}

/// The QR code of `data` in Unicode half blocks, for a terminal (light on dark works too: the
/// quiet zone is drawn).
pub fn qr_terminal(data: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(data.as_bytes()).map_err(|e| e.to_string())?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .build())
}

/// The alphabet of recovery codes: lower-case letters and digits without look-alikes
/// (no 0/o, 1/l/i).
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Ten fresh recovery codes, `xxxx-xxxx-xxxx-xxxx` (16 symbols of 31, about 79 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let symbols: Vec<char> = (0..16)
                .map(|_| {
                    let i = (rng.next_u32() as usize) % RECOVERY_ALPHABET.len();
                    RECOVERY_ALPHABET.get(i).copied().map_or('2', char::from)
                })
                .collect();
            symbols
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A typed recovery code as it is hashed: lower case, without spaces and dashes; `None` when
/// it cannot be one.
pub fn normalise_recovery_code(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == 16 && s.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(s)
}

/// The stored form of a recovery code: HMAC-SHA-256 keyed with the user's random salt. The
/// codes carry about 79 random bits, so a slow password hash would add nothing against an
/// offline search, and would cost up to ten argon2 runs per attempt.
pub fn recovery_hash(salt: &[u8], normalised: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(salt) else {
        return String::new();
    };
    mac.update(b"comfy-warden recovery code\0");
    mac.update(normalised.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8 digits there; the last 6 digits are the 6-digit code).
    #[test]
    fn rfc_6238_vectors() {
        let secret = Secret(b"12345678901234567890".to_vec());
        for (t, code) in [
            (59u64, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(secret.code_at_step(t / STEP), code, "t={t}");
        }
    }

    #[test]
    fn one_step_of_skew_and_never_twice() {
        let s = Secret::generate();
        let now = 1_700_000_015;
        let step = now / STEP;
        for d in [-1i64, 0, 1] {
            let st = (step as i64 + d) as u64;
            assert_eq!(s.matching_step(&s.code_at_step(st), now, None), Some(st));
        }
        assert_eq!(s.matching_step(&s.code_at_step(step + 2), now, None), None);
        assert_eq!(s.matching_step(&s.code_at_step(step - 2), now, None), None);
        let c = s.code_at_step(step);
        assert_eq!(s.matching_step(&c, now, Some(step)), None, "replay");
        assert_eq!(
            s.matching_step(&s.code_at_step(step - 1), now, Some(step)),
            None,
            "older than the last used"
        );
        assert_eq!(s.matching_step("12345", now, None), None);
        assert_eq!(s.matching_step("abcdef", now, None), None);
    }

    #[test]
    fn base32_round_trip_and_leniency() {
        let s = Secret::generate();
        let b = s.to_base32();
        assert_eq!(b.len(), 32);
        assert_eq!(Secret::from_base32(&b).unwrap(), s);
        let spaced = format!(" {} \n", b.to_lowercase());
        assert_eq!(Secret::from_base32(&spaced).unwrap(), s);
        assert!(Secret::from_base32("not base32!").is_err());
        assert!(Secret::from_base32("AAAA").is_err(), "too short");
        assert_eq!(format!("{s:?}"), "Secret(…)");
    }

    #[test]
    fn uri_and_qr() {
        let s = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        let uri = otpauth_uri("alice@example.org", &s);
        assert_eq!(
            uri,
            "otpauth://totp/comfy%2Dwarden%3Aalice%40example%2Eorg?secret=JBSWY3DPEHPK3PXP&issuer=comfy%2Dwarden&algorithm=SHA1&digits=6&period=30"
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(qr_terminal(&uri).unwrap().contains('█'));
    }

    #[test]
    fn recovery_codes() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut uniq = codes.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 19);
            let n = normalise_recovery_code(&c.to_uppercase()).unwrap();
            assert_eq!(n, c.replace('-', ""));
            assert_eq!(recovery_hash(b"salt", &n), recovery_hash(b"salt", &n));
            assert_ne!(recovery_hash(b"salt", &n), recovery_hash(b"other", &n));
        }
        assert_eq!(normalise_recovery_code("123456"), None);
    }
}
