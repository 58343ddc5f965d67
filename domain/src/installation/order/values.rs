//! Value types of orders: line items, statuses, payment providers.

use serde::{Deserialize, Serialize};

use crate::installation::isr::InstallationType;

/// One line of an order. Amounts are integer minor units (cents) of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineItem {
    pub sku: String,
    /// The product's catalogue description (not personal data).
    pub description: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    /// ISO 4217 code, e.g. `USD`, `ZWG`, `KES`.
    pub currency: String,
    /// What installing this product means, if it is installed on site.
    pub installable: Option<InstallationType>,
    /// The capacity one unit adds to the installed system, in watts (a solar panel's peak
    /// watts); `None` for what adds none (an inverter, a battery, a mount). When any installable
    /// item of an order states one, the installation's size is the sum of these (see
    /// [`crate::installation::system_size_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_w: Option<u32>,
}

impl LineItem {
    /// `quantity × unit price`, or `None` on overflow.
    pub fn line_total_minor(&self) -> Option<i64> {
        self.unit_price_minor.checked_mul(i64::from(self.quantity))
    }
}

/// Whether `code` looks like an ISO 4217 currency code: three capital ASCII letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// An order's status: `placed → paid → fulfilled`, or `cancelled`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    #[default]
    Placed,
    Paid,
    Fulfilled,
    Cancelled,
}

impl OrderStatus {
    /// The status as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
        }
    }

    /// From its stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Placed, Self::Paid, Self::Fulfilled, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// Who took a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProvider {
    Paynow,
    Mpesa,
    Stripe,
    Cash,
}

impl PaymentProvider {
    /// The provider as stored in read models and shown in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paynow => "paynow",
            Self::Mpesa => "mpesa",
            Self::Stripe => "stripe",
            Self::Cash => "cash",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_three_capital_letters() {
        assert!(is_currency_code("USD"));
        assert!(!is_currency_code("usd"));
        assert!(!is_currency_code("US"));
        assert!(!is_currency_code("USDT"));
    }

    #[test]
    fn a_line_total_that_overflows_is_none() {
        let item = LineItem {
            capacity_w: None,
            sku: "s".into(),
            description: "d".into(),
            quantity: 3,
            unit_price_minor: i64::MAX / 2,
            currency: "USD".into(),
            installable: None,
        };
        assert_eq!(item.line_total_minor(), None);
        assert_eq!(
            LineItem {
                unit_price_minor: 250,
                ..item
            }
            .line_total_minor(),
            Some(750)
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [
            OrderStatus::Placed,
            OrderStatus::Paid,
            OrderStatus::Fulfilled,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }
}
