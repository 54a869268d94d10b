//! Service contracts attached to assets. The economics (rating, wear pricing, SLA credits)
//! arrive in a later issue; the records and their parameters exist now.

use crate::date::Date;
use crate::money::Money;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A service contract between the manufacturer and one customer, covering some assets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub id: String,
    pub customer: String,
    /// Asset paths covered; all must belong to `customer`.
    pub assets: Vec<String>,
    pub start: Date,
    /// Last day covered (inclusive).
    pub end: Date,
    /// Availability promised, in basis points (9950 = 99.50%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_availability_bp: Option<u32>,
    pub pricing: Pricing,
}

/// How the contract is priced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pricing {
    /// A fixed fee per period, whatever happens.
    FixedFee { fee: Money, period: BillingPeriod },
    /// A base fee scaled by the assets' measured wear index, within bounds.
    ConditionBased {
        base_fee: Money,
        period: BillingPeriod,
        /// Lowest multiplier of the base fee, in basis points (8000 = 0.8x).
        min_factor_bp: u32,
        /// Highest multiplier of the base fee, in basis points (13000 = 1.3x).
        max_factor_bp: u32,
    },
    /// Pay per metered unit ("power by the hour"), with SLA credits.
    OutcomeBased {
        /// Counter of the asset model that is metered, e.g. `run_hours`.
        counter: String,
        /// Price per unit of the counter.
        rate: Money,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minimum_fee: Option<Money>,
        period: BillingPeriod,
        /// Credit, in basis points of the period's charge, per percentage point of availability missed.
        #[serde(default)]
        sla_credit_bp_per_point: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingPeriod {
    Monthly,
    Quarterly,
    Yearly,
}

impl Pricing {
    pub fn kind(&self) -> &'static str {
        match self {
            Pricing::FixedFee { .. } => "fixed_fee",
            Pricing::ConditionBased { .. } => "condition_based",
            Pricing::OutcomeBased { .. } => "outcome_based",
        }
    }

    /// Every amount in the pricing, with its field name, for currency checks.
    pub fn amounts(&self) -> Vec<(&'static str, Money)> {
        match self {
            Pricing::FixedFee { fee, .. } => vec![("pricing.fee", *fee)],
            Pricing::ConditionBased { base_fee, .. } => vec![("pricing.base_fee", *base_fee)],
            Pricing::OutcomeBased { rate, minimum_fee, .. } => {
                let mut v = vec![("pricing.rate", *rate)];
                v.extend(minimum_fee.map(|m| ("pricing.minimum_fee", m)));
                v
            }
        }
    }
}
