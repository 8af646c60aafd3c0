//! Money as exact integers of minor units.
//!
//! The contract speaks in JSON numbers of major units with at most two decimals
//! (`500`, `12.5`, `0.01`). We never let such a number pass through a float on the
//! way in: [`Money::parse_decimal`] reads the literal's text digit by digit, so
//! `0.1 + 0.2` is exactly `0.30` and `0.001` is refused instead of rounded.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Minor units per major unit (piastres per pound, cents per dollar).
pub const MINOR_PER_MAJOR: i64 = 100;
/// The largest amount a single command may carry: 1,000,000,000 major units.
pub const MAX_AMOUNT: Money = Money(1_000_000_000 * MINOR_PER_MAJOR);
/// The most a wallet may hold: 100,000,000,000 major units (10^13 minor units), a
/// hundred times the largest single amount. A credit (or an initial balance) that
/// would take a balance above it is refused `LIMIT_EXCEEDED`.
///
/// Why this number: it is far inside `i64` (≈ 9.2 × 10^18 minor units), so no sum of
/// a balance and an amount can overflow, and far inside JSON's exact-integer range
/// (2^53 ≈ 9.007 × 10^15), so every balance up to it renders exactly (see
/// [`Money::to_json_number`]: up to 10^13 minor units a value has at most 15
/// significant digits). A compensation may lift a balance a little past it (see
/// `WalletCommand::ReturnFunds`); the headroom above it up to 2^53 is 900 times the cap.
pub const MAX_BALANCE: Money = Money(100_000_000_000 * MINOR_PER_MAJOR);

/// An exact amount in minor units. Balances are `Money` too; they are never negative
/// because the wallet's rules never let them be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a JSON number")]
    NotANumber,
    #[error("amount must be greater than 0")]
    NotPositive,
    #[error("amount must have at most 2 decimal places")]
    TooPrecise,
    #[error("amount must not exceed 1000000000")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_minor(minor: i64) -> Self {
        Money(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Parses the text of a JSON number literal (`12.5`, `1e3`, `-1`) as an amount a
    /// command may carry: strictly positive, at most 2 decimals, at most [`MAX_AMOUNT`].
    pub fn parse_amount(literal: &str) -> Result<Money, AmountError> {
        let money = Self::parse_decimal(literal)?;
        if !money.is_positive() {
            return Err(AmountError::NotPositive);
        }
        if money > MAX_AMOUNT {
            return Err(AmountError::TooLarge);
        }
        Ok(money)
    }

    /// Parses a JSON number literal exactly into minor units. Signs, exponents and
    /// trailing zeros are honoured (`1.50` and `15e-1` are both 150 minor units);
    /// anything finer than a minor unit is an error, never a rounding.
    pub fn parse_decimal(literal: &str) -> Result<Money, AmountError> {
        let text = literal.trim();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => {
                let exp: i64 = unsigned[at + 1..].parse().map_err(|_| AmountError::NotANumber)?;
                (&unsigned[..at], exp)
            }
            None => (unsigned, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) || (mantissa.contains('.') && frac_part.is_empty()) {
            return Err(AmountError::NotANumber);
        }
        // The value is digits × 10^(exponent − frac_len); we want it × 10^2.
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let scale = exponent - frac_part.len() as i64 + 2;
        let minor: i64 = if digits.is_empty() {
            0
        } else if scale >= 0 {
            // Anything with more than 19 significant digits overflows i64 and is too large anyway.
            if digits.len() as i64 + scale > 18 {
                return Err(AmountError::TooLarge);
            }
            let base: i64 = digits.parse().map_err(|_| AmountError::TooLarge)?;
            base * 10_i64.pow(scale as u32)
        } else {
            let drop = (-scale) as usize;
            // Digits below the minor unit must all be zero.
            let (kept, dropped) = if drop >= digits.len() { ("", digits) } else { digits.split_at(digits.len() - drop) };
            if dropped.bytes().any(|b| b != b'0') {
                return Err(AmountError::TooPrecise);
            }
            if kept.len() > 18 {
                return Err(AmountError::TooLarge);
            }
            if kept.is_empty() {
                0
            } else {
                kept.parse().map_err(|_| AmountError::TooLarge)?
            }
        };
        Ok(Money(if negative { -minor } else { minor }))
    }

    /// The amount as a JSON number in major units (`64975` minor → `649.75`).
    ///
    /// Going through `f64` here is exact for what the contract can hold: every amount
    /// up to 10^13 minor units has at most 15 significant digits, so the nearest double
    /// prints back (shortest round-trip form) as exactly that decimal.
    pub fn to_json_number(self) -> serde_json::Value {
        if self.0 % MINOR_PER_MAJOR == 0 {
            serde_json::Value::from(self.0 / MINOR_PER_MAJOR)
        } else {
            serde_json::Value::from(self.0 as f64 / MINOR_PER_MAJOR as f64)
        }
    }

    /// Multiplies by a percentage and rounds *down* to the minor unit.
    pub fn percent_floor(self, percent: u8) -> Money {
        Money(((self.0 as i128 * percent as i128) / 100) as i64)
    }
}

impl fmt::Display for Money {
    /// `649.75`, `10.00`: the form used in error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / MINOR_PER_MAJOR as u64, abs % MINOR_PER_MAJOR as u64)
    }
}

/// An ISO 4217 currency code, upper case, three letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

/// The ISO 4217 currencies (fund codes, precious metals and testing codes left
/// out) whose minor unit is a hundredth. Every amount is counted in hundredths
/// ([`MINOR_PER_MAJOR`]), so a currency with another minor unit, such as JPY (1)
/// or KWD (1/1000), would be mis-stated; those are not offered.
const HUNDREDTHS_CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD",
    "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "MAD", "MDL", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL",
    "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VED", "VES", "WST", "XCD", "XCG", "YER", "ZAR", "ZMW", "ZWG",
];

impl Currency {
    /// `Some` for an ISO 4217 code counted in hundredths (see [`HUNDREDTHS_CURRENCIES`]).
    pub fn parse(code: &str) -> Option<Currency> {
        HUNDREDTHS_CURRENCIES.binary_search(&code).is_ok().then(|| Currency(code.to_string()))
    }
    pub fn egp() -> Currency {
        Currency("EGP".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(s: &str) -> Result<i64, AmountError> {
        Money::parse_amount(s).map(Money::minor)
    }

    #[test]
    fn contract_amounts_parse_to_exact_minor_units() {
        assert_eq!(amount("500"), Ok(50_000));
        assert_eq!(amount("12.5"), Ok(1_250));
        assert_eq!(amount("0.01"), Ok(1));
        assert_eq!(amount("250.25"), Ok(25_025));
        assert_eq!(amount("1.50"), Ok(150));
        assert_eq!(amount("1.500"), Ok(150), "trailing zeros are not extra precision");
        assert_eq!(amount("1e3"), Ok(100_000));
        assert_eq!(amount("15E-1"), Ok(150));
        assert_eq!(amount("1000000000"), Ok(100_000_000_000));
        assert_eq!(amount("0.30"), Ok(30));
    }

    #[test]
    fn bad_amounts_are_refused_not_rounded() {
        assert_eq!(amount("-1"), Err(AmountError::NotPositive));
        assert_eq!(amount("0"), Err(AmountError::NotPositive));
        assert_eq!(amount("0.00"), Err(AmountError::NotPositive));
        assert_eq!(amount("0.001"), Err(AmountError::TooPrecise));
        assert_eq!(amount("1.0000000000000000001"), Err(AmountError::TooPrecise));
        assert_eq!(amount("1e20"), Err(AmountError::TooLarge));
        assert_eq!(amount("1000000000.01"), Err(AmountError::TooLarge));
        assert_eq!(amount("99999999999999999999999"), Err(AmountError::TooLarge));
        assert_eq!(amount("\"abc\""), Err(AmountError::NotANumber));
        assert_eq!(amount("abc"), Err(AmountError::NotANumber));
        assert_eq!(amount("1."), Err(AmountError::NotANumber));
        assert_eq!(amount(".5"), Err(AmountError::NotANumber));
        assert_eq!(amount("1e"), Err(AmountError::NotANumber));
        assert_eq!(amount("null"), Err(AmountError::NotANumber));
    }

    #[test]
    fn json_numbers_print_without_float_artefacts() {
        let cases = [(64_975, "649.75"), (10_000, "100"), (30, "0.3"), (1, "0.01"), (125_050, "1250.5"), (9_999_999_999_999, "99999999999.99")];
        for (minor, printed) in cases {
            assert_eq!(Money::from_minor(minor).to_json_number().to_string(), printed);
        }
        // Every cent value round-trips through its JSON form.
        for minor in (0..200_000).step_by(7) {
            let text = Money::from_minor(minor).to_json_number().to_string();
            assert_eq!(Money::parse_decimal(&text).unwrap().minor(), minor, "{text}");
        }
    }

    #[test]
    fn the_largest_balance_renders_exactly_and_stays_inside_json_integers() {
        assert_eq!(MAX_BALANCE.minor(), 10_000_000_000_000);
        assert!(MAX_BALANCE.minor() < (1_i64 << 53) / 100, "even 100 times the cap is an exact JSON integer of minor units");
        assert!(MAX_BALANCE.checked_add(MAX_AMOUNT).is_some());
        assert_eq!(MAX_BALANCE.to_json_number().to_string(), "100000000000");
        for minor in [MAX_BALANCE.minor() - 1, MAX_BALANCE.minor() - 30, MAX_BALANCE.minor() - 99] {
            let text = Money::from_minor(minor).to_json_number().to_string();
            assert_eq!(Money::parse_decimal(&text).unwrap().minor(), minor, "{text}");
        }
        assert_eq!(Money::from_minor(MAX_BALANCE.minor() - 1).to_json_number().to_string(), "99999999999.99");
    }

    #[test]
    fn display_has_two_decimals() {
        assert_eq!(Money::from_minor(1_000).to_string(), "10.00");
        assert_eq!(Money::from_minor(5).to_string(), "0.05");
        assert_eq!(Money::from_minor(-5).to_string(), "-0.05");
    }

    #[test]
    fn currency_codes_are_three_upper_case_letters() {
        assert!(Currency::parse("EGP").is_some());
        assert!(Currency::parse("egp").is_none());
        assert!(Currency::parse("EGPX").is_none());
        // Well formed, but not a currency, or not one counted in hundredths.
        for code in ["ZZZ", "XAU", "JPY", "KWD"] {
            assert!(Currency::parse(code).is_none(), "{code}");
        }
        assert!(HUNDREDTHS_CURRENCIES.windows(2).all(|pair| pair[0] < pair[1]), "sorted, for the binary search");
    }
}
