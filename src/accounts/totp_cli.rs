//! `comfy-warden user totp NAME` (enrol a second factor: a new secret in the state directory,
//! shown as an `otpauth://` URI, a QR code in the terminal and a key to type; it takes effect
//! only once a code from the app is typed back), `user totp-reset NAME` (remove it) and
//! `user recovery-codes NAME` (ten new recovery codes). The state lives in
//! `state_dir/totp/NAME.json` (`auth::second_factor`); a running daemon reads it at the next
//! sign-in, so nothing needs a reload. Changes are written to the audit file when one is set.
use crate::auth::second_factor as sf;
use crate::auth::totp::{self, Secret};
use crate::clock::now_secs;
use crate::config::Snapshot;
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Codes typed before enrolment gives up.
const ATTEMPTS: usize = 3;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Writes one audit event to `log.audit_file` (if set), as the daemon would.
fn audit(snap: &Snapshot, event: &'static str, user: &str, message: &'static str) {
    use tracing_subscriber::layer::SubscriberExt;
    let Some(path) = &snap.log.audit_file else {
        return;
    };
    let file = match crate::ops::audit::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "warning: cannot open the audit file {}: {e}",
                path.display()
            );
            return;
        }
    };
    let subscriber =
        tracing_subscriber::registry().with(crate::ops::audit::AuditLayer::new(Some(file)));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "audit", event, user, via = "cli", "{message}");
    });
}

/// Refuses what cannot be enrolled here: unknown users, secrets from users.toml, users who
/// already have a second factor.
fn check_enrollable(snap: &Snapshot, name: &str) -> Result<(), String> {
    let Some(user) = snap.user(name) else {
        return Err(format!("no user {name:?}"));
    };
    if user.totp_secret.is_some() {
        return Err(format!(
            "{name}'s TOTP secret comes from totp_secret_file in {}; change it there",
            super::source_file(&snap.files, user).display()
        ));
    }
    match sf::load(&snap.files.state_dir, name) {
        Ok(Some(r)) if r.secret.is_some() => Err(format!(
            "{name} already has a second factor; `comfy-warden user totp-reset {name}` removes it"
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot read the second-factor state: {e}")),
    }
}

/// `user totp NAME`: the code is read from stdin (one per line, up to three tries).
pub fn enrol(snap: &Snapshot, name: &str) -> ExitCode {
    if let Err(e) = check_enrollable(snap, name) {
        return fail(e);
    }
    let secret = Secret::generate();
    let uri = totp::otpauth_uri(name, &secret);
    let mut out = std::io::stdout().lock();
    let qr = totp::qr_terminal(&uri).unwrap_or_default();
    let _ = writeln!(
        out,
        "Scan this QR code with an authenticator app (TOTP, SHA-1, 6 digits, 30 s):\n\n{qr}\n\
         or open this URI on the device:\n  {uri}\n\
         or type this key:\n  {}\n",
        secret.to_base32()
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    for attempt in 1..=ATTEMPTS {
        let _ = write!(out, "Code shown by the app: ");
        let _ = out.flush();
        let Some(Ok(line)) = lines.next() else {
            return fail("no code was entered; nothing was changed");
        };
        let Some(step) = secret.matching_step(&line, now_secs(), None) else {
            let _ = writeln!(
                out,
                "That code is not right (is the device's clock right?){}",
                if attempt < ATTEMPTS {
                    "; try again."
                } else {
                    "."
                }
            );
            continue;
        };
        return match sf::enrol(&snap.files.state_dir, name, &secret, step) {
            Ok(Ok(codes)) => {
                audit(snap, "totp_enrolled", name, "second factor set up");
                let _ = writeln!(
                    out,
                    "\nThe second factor of {name} is set up ({}).\n\
                     Recovery codes (each works once in place of a code; they are not shown again):",
                    sf::path(&snap.files.state_dir, name).display()
                );
                for c in codes {
                    let _ = writeln!(out, "  {c}");
                }
                ExitCode::SUCCESS
            }
            Ok(Err(sf::AlreadyEnrolled)) => fail(format_args!(
                "{name} got a second factor meanwhile; nothing was changed"
            )),
            Err(e) => fail(format_args!("cannot write the second-factor state: {e}")),
        };
    }
    fail("no right code was entered; nothing was changed")
}

/// One line for `user show`: where the user's second factor comes from, if anywhere.
pub fn describe(state_dir: &std::path::Path, user: &crate::config::User) -> String {
    let record = sf::load(state_dir, &user.name);
    let left = |r: &Option<sf::Record>| r.as_ref().map(|r| r.recovery.len()).unwrap_or(0);
    let mut s = match &record {
        Err(e) => format!("unreadable state ({e}): no sign-in"),
        Ok(_) if user.totp_secret.is_some() => "TOTP (totp_secret_file)".to_string(),
        Ok(Some(r)) if r.secret.is_some() => format!(
            "TOTP (enrolled, {})",
            sf::path(state_dir, &user.name).display()
        ),
        Ok(_) => "none".to_string(),
    };
    if let Ok(r) = &record
        && s != "none"
    {
        s.push_str(&format!(", {} recovery codes left", left(r)));
    }
    if user.require_totp {
        s.push_str(" (required by a role)");
    }
    s
}

/// `user totp-reset NAME`.
pub fn reset(snap: &Snapshot, name: &str) -> ExitCode {
    let Some(user) = snap.user(name) else {
        return fail(format_args!("no user {name:?}"));
    };
    let removed = match sf::reset(&snap.files.state_dir, name) {
        Ok(r) => r,
        Err(e) => return fail(format_args!("cannot remove the second-factor state: {e}")),
    };
    if removed {
        audit(snap, "totp_reset", name, "second factor removed");
        println!("removed the second factor of {name} (secret, recovery codes)");
    } else {
        println!("{name} had no second factor set up through comfy-warden");
    }
    if user.totp_secret.is_some() {
        println!(
            "note: {name} still has totp_secret_file in {}; remove it there to sign in without a code",
            super::source_file(&snap.files, user).display()
        );
    } else if user.require_totp {
        println!("{name}'s role requires a second factor: they set one up at their next sign-in");
    }
    ExitCode::SUCCESS
}

/// `user recovery-codes NAME`: replaces the recovery codes of a user with a second factor.
pub fn recovery_codes(snap: &Snapshot, name: &str) -> ExitCode {
    let Some(user) = snap.user(name) else {
        return fail(format_args!("no user {name:?}"));
    };
    if !matches!(sf::need(&snap.files.state_dir, user), Ok(sf::Need::Code(_))) {
        return fail(format_args!("{name} has no second factor"));
    }
    match sf::new_recovery_codes(&snap.files.state_dir, name) {
        Ok(codes) => {
            audit(snap, "recovery_codes_replaced", name, "new recovery codes");
            println!("New recovery codes of {name} (the old ones no longer work):");
            for c in codes {
                println!("  {c}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("cannot write the second-factor state: {e}")),
    }
}
