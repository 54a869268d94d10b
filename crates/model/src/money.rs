//! Money as integer minor units plus an ISO 4217 currency code. Never floats.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// An ISO 4217 alphabetic currency code, e.g. `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

crate::string_schema!(Currency, "ISO 4217 currency code.", "EUR");

impl Currency {
    /// Parses a three-letter upper-case code.
    pub fn parse(code: &str) -> Result<Self, String> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(format!("`{code}` is not a currency code; use three upper-case letters such as EUR or USD"));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // The constructor only admits ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point (ISO 4217 minor unit). Two unless listed.
    pub fn exponent(&self) -> u32 {
        match self.as_str() {
            "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "XOF" | "XAF" | "UGX" | "PYG" => 0,
            "BHD" | "KWD" | "JOD" | "OMR" | "TND" | "LYD" | "IQD" => 3,
            _ => 2,
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money: `amount_minor` is in the currency's minor unit (cents for EUR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
pub struct Money {
    /// Amount in minor units, e.g. 123450 for EUR 1,234.50.
    pub amount_minor: i64,
    pub currency: Currency,
}

/// Accepts both the API object and the text form `"1234.50 EUR"` used in fleet files.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Object {
            amount_minor: i64,
            currency: Currency,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Object(Object),
        }
        match Repr::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected an amount such as \"1234.50 EUR\" or {\"amount_minor\": 123450, \"currency\": \"EUR\"}",
            )
        })? {
            Repr::Text(text) => Money::parse(&text).map_err(serde::de::Error::custom),
            Repr::Object(o) => Ok(Money { amount_minor: o.amount_minor, currency: o.currency }),
        }
    }
}

impl Money {
    /// Parses `"1234.50 EUR"` (or `"EUR 1234.50"`), refusing more decimals than the currency has.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (amount, code) = match parts.as_slice() {
            [a, c] if c.chars().all(|ch| ch.is_ascii_alphabetic()) => (*a, *c),
            [c, a] if c.chars().all(|ch| ch.is_ascii_alphabetic()) => (*a, *c),
            _ => return Err(format!("`{text}` is not an amount; write it as \"1234.50 EUR\"")),
        };
        let currency = Currency::parse(code)?;
        let amount_minor = parse_decimal(amount, currency.exponent()).ok_or_else(|| {
            format!(
                "`{amount}` is not a valid {currency} amount (at most {} decimals, no separators)",
                currency.exponent()
            )
        })?;
        Ok(Self { amount_minor, currency })
    }
}

/// Parses `-12.5` into minor units with `exponent` decimals, exactly, or `None`.
fn parse_decimal(text: &str, exponent: u32) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > exponent as usize || (digits.contains('.') && frac.is_empty()) {
        return None;
    }
    let scale = 10i64.checked_pow(exponent)?;
    let whole: i64 = whole.parse().ok()?;
    let mut frac_value: i64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    frac_value *= 10i64.checked_pow(exponent - frac.len() as u32)?;
    let value = whole.checked_mul(scale)?.checked_add(frac_value)?;
    Some(if negative { -value } else { value })
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        if exp == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let scale = 10u64.pow(exp);
        write!(f, "{sign}{}.{:0width$} {}", abs / scale, abs % scale, self.currency, width = exp as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for (text, minor, shown) in [
            ("1234.50 EUR", 123450, "1234.50 EUR"),
            ("EUR 7", 700, "7.00 EUR"),
            ("-0.05 USD", -5, "-0.05 USD"),
            ("1500 JPY", 1500, "1500 JPY"),
            ("1.234 KWD", 1234, "1.234 KWD"),
        ] {
            let money = Money::parse(text).expect(text);
            assert_eq!(money.amount_minor, minor, "{text}");
            assert_eq!(money.to_string(), shown);
        }
    }

    #[test]
    fn refuses_ambiguous_amounts() {
        for bad in ["12.345 EUR", "1,000 EUR", "12 eur", "EUR", "1.5 JPY", "12. EUR", ".5 EUR", "1 2 EUR"] {
            assert!(Money::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
