//! Kubernetes resource quantities (`250m`, `1.5`, `64Mi`, `1G`, `1e6`) as exact integers:
//! CPU in millicores and memory in bytes, rounded up as the API machinery's `MilliValue`
//! and `Value` round. Pure: no I/O.
//!
//! The grammar is the API's: an optional sign, a decimal number (`1`, `1.5`, `.5`, `5.`),
//! then one suffix: binary (`Ki` .. `Ei`), decimal (`n`, `u`, `m`, none, `k`, `M`, `G`,
//! `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The most significant digits a quantity may carry: more cannot be held exactly.
const MAX_DIGITS: usize = 38;
/// The largest decimal exponent taken: beyond it every value is out of range anyway.
const MAX_EXPONENT: i32 = 60;

/// Why a quantity cannot be read. The messages complete "`<field> <value>`: ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Nothing was given.
    #[error("is empty; expected a quantity such as 250m, 1.5, 64Mi or 1G")]
    Empty,
    /// Not a number with one of the API's suffixes.
    #[error(
        "is not a quantity; expected a number with an optional suffix (m, k, M, G, T, Ki, Mi, \
         Gi, Ti, or an exponent such as e6), e.g. 250m, 1.5, 64Mi or 1G"
    )]
    Malformed,
    /// Requests and limits cannot be negative.
    #[error("must be greater than or equal to 0")]
    Negative,
    /// Does not fit in 63 bits once scaled.
    #[error("is too large")]
    TooLarge,
}

/// A parsed quantity: `digits × 10^exp10 × 2^exp2`, non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    digits: u128,
    exp10: i32,
    exp2: u32,
}

/// CPU in millicores, rounded up (`250m` → 250, `1.5` → 1500, `0.0001` → 1).
pub fn cpu_millis(quantity: &Quantity) -> Result<i64, QuantityError> {
    parse(&quantity.0)?.scaled_up(3)
}

/// Memory (or any count) in whole units, rounded up (`64Mi` → 67108864, `1G` →
/// 1000000000, `1e6` → 1000000).
pub fn memory_bytes(quantity: &Quantity) -> Result<i64, QuantityError> {
    parse(&quantity.0)?.scaled_up(0)
}

fn parse(text: &str) -> Result<Exact, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() == 0 || fraction.contains('.') {
        return Err(QuantityError::Malformed);
    }
    let significant = format!("{whole}{fraction}");
    let significant = significant.trim_start_matches('0');
    if significant.len() > MAX_DIGITS {
        return Err(QuantityError::TooLarge);
    }
    let digits = if significant.is_empty() {
        0
    } else {
        significant
            .parse::<u128>()
            .map_err(|_| QuantityError::Malformed)?
    };
    let fraction_digits = i32::try_from(fraction.len()).map_err(|_| QuantityError::TooLarge)?;
    let (exp10, exp2) = suffix_scale(suffix)?;
    if negative && digits != 0 {
        return Err(QuantityError::Negative);
    }
    Ok(Exact {
        digits,
        exp10: exp10 - fraction_digits,
        exp2,
    })
}

/// The suffix as powers of ten and two.
fn suffix_scale(suffix: &str) -> Result<(i32, u32), QuantityError> {
    let scale = match suffix {
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "" => (0, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        _ => {
            // `e3`, `E-2`: a decimal exponent (a lone `E` is exa, matched above).
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .ok_or(QuantityError::Malformed)?;
            let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Malformed);
            }
            let value: i32 = exponent.parse().map_err(|_| QuantityError::TooLarge)?;
            if value.abs() > MAX_EXPONENT {
                return Err(QuantityError::TooLarge);
            }
            (value, 0)
        }
    };
    Ok(scale)
}

impl Exact {
    /// `self × 10^scale`, rounded up to an integer.
    fn scaled_up(self, scale: i32) -> Result<i64, QuantityError> {
        let n = self
            .digits
            .checked_mul(1u128 << self.exp2)
            .ok_or(QuantityError::TooLarge)?;
        let exp = self.exp10 + scale;
        let value = if exp >= 0 {
            10u128
                .checked_pow(exp.unsigned_abs())
                .and_then(|p| n.checked_mul(p))
                .ok_or(QuantityError::TooLarge)?
        } else {
            match 10u128.checked_pow(exp.unsigned_abs()) {
                Some(p) => n.div_ceil(p),
                // Smaller than any unit, but not zero: one unit, as rounding up gives.
                None => u128::from(n != 0),
            }
        };
        i64::try_from(value).map_err(|_| QuantityError::TooLarge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity(text.to_owned())
    }

    #[test]
    fn cpu_reads_cores_and_millicores() {
        let cases = [
            ("250m", 250),
            ("1", 1000),
            ("2", 2000),
            ("1.5", 1500),
            (".5", 500),
            ("5.", 5000),
            ("+1", 1000),
            ("0", 0),
            ("-0", 0),
            ("0.0001", 1),
            ("1500u", 2),
            ("100n", 1),
            ("1e-3", 1),
            ("2e2", 200_000),
            ("1k", 1_000_000),
            ("0.1m", 1),
        ];
        for (text, millis) in cases {
            assert_eq!(cpu_millis(&q(text)), Ok(millis), "{text}");
        }
    }

    #[test]
    fn memory_reads_binary_decimal_and_exponent_suffixes() {
        let cases = [
            ("64Mi", 64 << 20),
            ("1Gi", 1 << 30),
            ("0.5Gi", 1 << 29),
            ("1.5Ki", 1536),
            ("1G", 1_000_000_000),
            ("128M", 128_000_000),
            ("1e6", 1_000_000),
            ("1E6", 1_000_000),
            ("1e+3", 1000),
            ("1E", 1_000_000_000_000_000_000),
            ("1k", 1000),
            ("100m", 1),
            ("12345", 12345),
            ("4Ei", 4 << 60),
        ];
        for (text, bytes) in cases {
            assert_eq!(memory_bytes(&q(text)), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_quantities_say_why() {
        let cases = [
            ("", QuantityError::Empty),
            ("64MB", QuantityError::Malformed),
            ("1.2.3", QuantityError::Malformed),
            ("abc", QuantityError::Malformed),
            ("m", QuantityError::Malformed),
            ("1 Gi", QuantityError::Malformed),
            ("1e", QuantityError::Malformed),
            ("1e1.5", QuantityError::Malformed),
            ("1ki", QuantityError::Malformed),
            ("-1", QuantityError::Negative),
            ("-250m", QuantityError::Negative),
            ("8Ei", QuantityError::TooLarge),
            ("1e100", QuantityError::TooLarge),
            ("99999999999999999999", QuantityError::TooLarge),
        ];
        for (text, error) in cases {
            assert_eq!(memory_bytes(&q(text)), Err(error), "{text:?}");
        }
        assert!(QuantityError::Malformed.to_string().contains("64Mi"));
    }
}
