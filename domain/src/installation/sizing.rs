//! Sizing rules of an installation opened from an order's items: its type and its system size.
//! Pure domain rules, used by the installation process manager (`commands`) when a paid order
//! opens an installation, and by anyone who needs to know what an order will install.

use super::isr::InstallationType;
use super::order::LineItem;

/// The installation type of an order's installable items: the most comprehensive one present
/// (hybrid, then solar, then Starlink, then custom furniture); `None` without installable items.
pub fn installation_type_of(items: &[LineItem]) -> Option<InstallationType> {
    let present = |t: InstallationType| items.iter().any(|i| i.installable == Some(t));
    [
        InstallationType::Hybrid,
        InstallationType::Solar,
        InstallationType::Starlink,
        InstallationType::CustomFurniture,
    ]
    .into_iter()
    .find(|t| present(*t))
}

/// The watts a SKU names in one of its `-`/`_`-separated parts (`kit-5kw` → 5 000,
/// `panel_550w` → 550), if any.
fn watts_in_sku(sku: &str) -> Option<u64> {
    sku.split(|c: char| !c.is_ascii_alphanumeric()).find_map(|part| {
        let part = part.to_ascii_lowercase();
        if let Some(n) = part.strip_suffix("kw") {
            n.parse::<u64>().ok().map(|n| n.saturating_mul(1_000))
        } else {
            part.strip_suffix('w').and_then(|n| n.parse::<u64>().ok())
        }
    })
}

/// The nominal size of a type when the items name none (the payout tiers need one).
fn nominal_size_w(installation_type: InstallationType) -> u32 {
    match installation_type {
        InstallationType::Solar => 3_000,
        InstallationType::Hybrid => 5_000,
        InstallationType::Starlink => 100,
        InstallationType::CustomFurniture => 1_000,
    }
}

/// The system size of an installation opened from `items`, in watts:
/// - when any installable item states its capacity (`capacity_w`), Σ quantity × capacity over
///   the installable items that state one (ten 550 W panels and an inverter stating none:
///   5 500 W);
/// - otherwise (orders placed before capacities were asked for), Σ quantity × the watts each
///   installable item's SKU names (`solar-kit-5kw`, `panel-550w`);
/// - otherwise the type's nominal size (staff correct it with the installation's correction
///   command before commissioning).
///
/// Never zero; saturates at `u32::MAX`.
pub fn system_size_of(items: &[LineItem], installation_type: InstallationType) -> u32 {
    let installable = || items.iter().filter(|i| i.installable.is_some());
    let stated = installable().any(|i| i.capacity_w.is_some());
    let total: u64 = installable()
        .filter_map(|i| {
            let watts = if stated {
                i.capacity_w.map(u64::from)
            } else {
                watts_in_sku(&i.sku)
            };
            watts.map(|w| w.saturating_mul(u64::from(i.quantity)))
        })
        .fold(0u64, u64::saturating_add);
    if total == 0 {
        nominal_size_w(installation_type)
    } else {
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, quantity: u32, installable: Option<InstallationType>) -> LineItem {
        LineItem {
            sku: sku.into(),
            description: "d".into(),
            quantity,
            unit_price_minor: 100,
            currency: "USD".into(),
            installable,
            capacity_w: None,
        }
    }

    #[test]
    fn the_type_of_mixed_items_is_the_most_comprehensive_one() {
        let items = vec![
            item("router", 1, Some(InstallationType::Starlink)),
            item("kit-5kw", 1, Some(InstallationType::Solar)),
            item("cable", 3, None),
        ];
        assert_eq!(installation_type_of(&items), Some(InstallationType::Solar));
        assert_eq!(installation_type_of(&items[2..]), None);
    }

    #[test]
    fn the_system_size_sums_the_watts_skus_name_or_falls_back_to_the_nominal_size() {
        let items = vec![
            item("solar-kit-5kw", 1, Some(InstallationType::Solar)),
            item("panel_550W", 2, Some(InstallationType::Solar)),
            item("cable-10w", 9, None),
        ];
        assert_eq!(system_size_of(&items, InstallationType::Solar), 6_100);
        let plain = vec![item("dish", 1, Some(InstallationType::Starlink))];
        assert_eq!(system_size_of(&plain, InstallationType::Starlink), 100);
    }

    #[test]
    fn stated_capacities_win_over_skus_and_an_item_stating_none_adds_none() {
        let panels = LineItem {
            capacity_w: Some(550),
            ..item("panel-550w", 10, Some(InstallationType::Solar))
        };
        // The inverter's SKU names 5 kW, but it adds no capacity to the array.
        let inverter = item("inverter-5kw", 1, Some(InstallationType::Solar));
        // A delivered item's capacity does not count.
        let spare = LineItem {
            capacity_w: Some(550),
            ..item("spare-panel", 2, None)
        };
        let items = vec![panels, inverter.clone(), spare];
        assert_eq!(system_size_of(&items, InstallationType::Solar), 5_500);
        // Without any stated capacity, the SKUs are read as before.
        assert_eq!(system_size_of(&[inverter], InstallationType::Solar), 5_000);
    }
}
