//! Customer passwords are stored as argon2id PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`),
//! never in plain text. `smppgw hash-password` prints one with [`hash_password`]; a bind checks it with
//! [`verify_password`].
//!
//! Parameters follow the OWASP password storage cheat sheet's first argon2id choice: 19 MiB of memory
//! (m=19456 KiB), 2 passes (t=2), one lane (p=1). That costs a bind a few milliseconds of one core in
//! a release build, which is affordable since binds are rare next to submits, while making an
//! offline guess as costly. Hashes made with other parameters verify too (the parameters are read
//! from the string), within the ceilings of [`super::limits`].

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use super::limits;

/// Memory cost in KiB (OWASP: 19 MiB).
pub const HASH_M_COST_KIB: u32 = 19_456;
/// Time cost: passes over the memory (OWASP: 2).
pub const HASH_T_COST: u32 = 2;
/// Parallelism: lanes (OWASP: 1; verification runs on the session's core).
pub const HASH_P_COST: u32 = 1;

const _: () = assert!(HASH_M_COST_KIB <= limits::ARGON2_M_COST_KIB_MAX);
const _: () = assert!(HASH_T_COST <= limits::ARGON2_T_COST_MAX);
const _: () = assert!(HASH_P_COST <= limits::ARGON2_P_COST_MAX);

fn hasher() -> Argon2<'static> {
    // The constants are valid argon2 parameters (checked by the tests), so this cannot fail.
    let params = Params::new(HASH_M_COST_KIB, HASH_T_COST, HASH_P_COST, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` into an argon2id PHC string with a fresh random salt from the operating
/// system's generator (getrandom), for a customer's `password_hash`.
///
/// # Panics
/// If the operating system's random number generator fails, which leaves no safe way to go on.
#[must_use]
pub fn hash_password(password: &str) -> String {
    hasher()
        .hash_password(password.as_bytes())
        .expect("argon2id hashing failed: the OS random number generator is unavailable")
        .to_string()
}

/// Whether `password` matches the PHC string `phc`.
///
/// Never panics: an unparsable string, an algorithm other than argon2, or parameters above the
/// ceilings in [`super::limits`] (which would let a bad config make every bind cost seconds or
/// gigabytes) all give `false`. The comparison of the digests is constant-time.
#[must_use]
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    match parse_phc(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

/// Parses and checks a stored hash: what load-time validation and [`verify_password`] accept.
pub(crate) fn parse_phc(phc: &str) -> Result<PasswordHash, String> {
    if phc.len() > limits::PASSWORD_HASH_LEN_MAX {
        return Err(format!("it is longer than {} characters", limits::PASSWORD_HASH_LEN_MAX));
    }
    if !phc.starts_with('$') {
        return Err("it is not a PHC string (it looks like a plain-text password)".to_owned());
    }
    let hash = PasswordHash::new(phc).map_err(|e| format!("it is not a valid PHC string ({e})"))?;
    let algorithm = hash.algorithm.as_str();
    if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") {
        return Err(format!("its algorithm is '{algorithm}', not argon2id"));
    }
    let params = Params::try_from(&hash).map_err(|e| format!("its argon2 parameters are invalid ({e})"))?;
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err("it has no salt or no hash".to_owned());
    }
    if params.m_cost() > limits::ARGON2_M_COST_KIB_MAX
        || params.t_cost() > limits::ARGON2_T_COST_MAX
        || params.p_cost() > limits::ARGON2_P_COST_MAX
    {
        return Err(format!(
            "its cost (m={}, t={}, p={}) exceeds the ceiling m={}, t={}, p={} every bind would pay",
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            limits::ARGON2_M_COST_KIB_MAX,
            limits::ARGON2_T_COST_MAX,
            limits::ARGON2_P_COST_MAX
        ));
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_valid_argon2_parameters() {
        assert!(Params::new(HASH_M_COST_KIB, HASH_T_COST, HASH_P_COST, None).is_ok());
    }

    #[test]
    fn expensive_hashes_are_refused() {
        let phc = "$argon2id$v=19$m=4194304,t=2,p=1$ENggucOembGX9/vuMPDhfw$2A/dtH1zYea7MNgqtG8h5w+ys83rrdLZeradOIUCA1Q";
        assert!(parse_phc(phc).unwrap_err().contains("exceeds the ceiling"));
        assert!(!verify_password(phc, b"demo"));
    }
}
