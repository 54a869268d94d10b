//! OPC UA values as samples, without I/O: a status code becomes the sample's quality
//! (Treaty's quality has the same layout), a variant its value.

use model::sample::{Quality, Sample, Severity};
use opcua::types::{DataValue, StatusCode};

/// The quality of an OPC UA status code: the same severity and sub-code bits.
pub fn quality(status: StatusCode) -> Quality {
    let bits = status.bits();
    let severity = if status.is_bad() {
        Severity::Bad
    } else if status.is_uncertain() {
        Severity::Uncertain
    } else {
        Severity::Good
    };
    Quality::new(severity, ((bits >> 16) & 0x3fff) as u16)
}

/// A data value as a sample (value scaled; non-numeric values are bad, type mismatch).
pub(super) fn sample(value: &DataValue, scale: f64, offset: f64, now: i64) -> Sample {
    let ts = value
        .source_timestamp
        .as_ref()
        .or(value.server_timestamp.as_ref())
        .map_or(now, |t| t.as_chrono().timestamp_millis());
    let status = value.status.unwrap_or(StatusCode::Good);
    let number = value.value.as_ref().and_then(|v| match v {
        opcua::types::Variant::Boolean(b) => Some(f64::from(u8::from(*b))),
        v => v.as_f64(),
    });
    match number {
        Some(v) if v.is_finite() => Sample { ts, value: v * scale + offset, quality: quality(status) },
        // Bad_TypeMismatch when the value is there but not a number.
        _ if status.is_good() && value.value.is_some() => {
            Sample { ts, value: f64::NAN, quality: Quality::new(Severity::Bad, 0x0074) }
        }
        _ => Sample { ts, value: f64::NAN, quality: if status.is_good() { Quality::BAD } else { quality(status) } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_keep_their_severity_and_sub_code() {
        assert_eq!(quality(StatusCode::Good), Quality::GOOD);
        let q = quality(StatusCode::BadSensorFailure);
        assert_eq!((q.severity(), q.sub_code()), (Severity::Bad, 0x008C));
        let q = quality(StatusCode::UncertainLastUsableValue);
        assert_eq!(q.severity(), Severity::Uncertain);
        let value = DataValue::new_now(opcua::types::Variant::from("text"));
        assert_eq!(sample(&value, 1.0, 0.0, 0).quality.sub_code(), 0x0074, "a string is a type mismatch");
        let value = DataValue::new_now(opcua::types::Variant::from(true));
        assert_eq!(sample(&value, 1.0, 0.0, 0).value, 1.0);
        let value = DataValue::new_now(opcua::types::Variant::from(21.5f32));
        assert_eq!(sample(&value, 2.0, 1.0, 0).value, 44.0);
    }
}
