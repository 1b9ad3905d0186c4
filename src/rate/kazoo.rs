//! KAZOO's per-leg formula (kapps_call_util:calculate_call/1 and calculate_call/5).
//!
//! KAZOO computes in IEEE doubles, because Erlang's `/` always yields a float, and truncates at
//! the end. `Rounding::Kazoo` reproduces that on purpose, in the same operation order, so that
//! reconciliation matches KAZOO to the unit (R=22, RI=1, RM=0, 300 s costs 109 there, not the
//! exact 110). `Rounding::Exact` is the same formula in exact integer arithmetic, truncated once.

/// Which arithmetic the formula uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// KAZOO's double arithmetic, bit for bit.
    #[default]
    Kazoo,
    /// Exact integer arithmetic, rounded down once at the end.
    Exact,
}

/// A leg's rating inputs as KAZOO reads them; `None` is an absent value, which takes KAZOO's
/// default (60 for the increment, 0 for everything else).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inputs {
    pub billing_seconds: Option<i64>,
    pub billing_seconds_offset: Option<i64>,
    pub rate_nocharge_time: Option<i64>,
    pub rate: Option<i64>,
    pub rate_increment: Option<i64>,
    pub rate_minimum: Option<i64>,
    pub surcharge: Option<i64>,
    pub discount_percentage: Option<i64>,
}

/// What KAZOO charges for a leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    /// The seconds KAZOO bills (ceil to the increment, or the minimum).
    pub billed_seconds: i64,
    /// Units (1/10,000 of the currency), after the discount.
    pub cost_units: i64,
}

/// Rates one leg.
pub fn rate(inp: &Inputs, rounding: Rounding) -> Charge {
    let nocharge = inp.rate_nocharge_time.unwrap_or(0);
    let secs = inp
        .billing_seconds
        .unwrap_or(0)
        .saturating_sub(inp.billing_seconds_offset.unwrap_or(0));
    // Unanswered, or within the no-charge time (inclusive): nothing is charged.
    if secs <= 0 || secs <= nocharge {
        return Charge::default();
    }
    let r = inp.rate.unwrap_or(0);
    let ri = match inp.rate_increment.unwrap_or(60) {
        0 => 60,
        ri => ri,
    };
    let rm = inp.rate_minimum.unwrap_or(0);
    let sur = inp.surcharge.unwrap_or(0);
    let disc = inp.discount_percentage.unwrap_or(0);
    match rounding {
        Rounding::Kazoo => kazoo(r, ri, rm, sur, disc, secs),
        Rounding::Exact => exact(r, ri, rm, sur, disc, secs),
    }
}

/// `kz_term:ceiling/1` of a non-negative float.
fn ceiling(x: f64) -> i64 {
    let t = x.trunc();
    if x - t == 0.0 {
        t as i64
    } else {
        t as i64 + 1
    }
}

// KAZOO's double arithmetic on purpose: each line is one Erlang expression, evaluated in the
// same order (`A + B + C` is `(A + B) + C`; integer operands are promoted to doubles).
fn kazoo(r: i64, ri: i64, rm: i64, sur: i64, disc: i64, secs: i64) -> Charge {
    let (rf, rif, rmf) = (r as f64, ri as f64, rm as f64);
    let (billed, cost) = if secs <= rm {
        // {RM, trunc(Sur + ((RM / 60) * R))}
        (rm, (sur as f64 + (rmf / 60.0) * rf).trunc() as i64)
    } else {
        // {ceiling(Secs / RI) * RI,
        //  trunc(Sur + ((RM / 60) * R) + (ceiling((Secs - RM) / RI) * ((RI / 60) * R)))}
        let billed = ceiling(secs as f64 / rif).saturating_mul(ri);
        let steps = ceiling((secs - rm) as f64 / rif) as f64;
        let cost = (sur as f64 + (rmf / 60.0) * rf) + steps * ((rif / 60.0) * rf);
        (billed, cost.trunc() as i64)
    };
    // Discount = trunc((DiscountPercentage * 0.01) * Cost); total = trunc(Cost - Discount).
    let discount = ((disc as f64 * 0.01) * cost as f64).trunc() as i64;
    Charge {
        billed_seconds: billed,
        cost_units: cost.saturating_sub(discount),
    }
}

/// The same formula over the rationals: cost = (60 Sur + RM R + ceil((s - RM)/RI) RI R) / 60,
/// rounded down; discount = cost D / 100, rounded down.
fn exact(r: i64, ri: i64, rm: i64, sur: i64, disc: i64, secs: i64) -> Charge {
    let (r, ri, rm, sur, secs) = (
        i128::from(r),
        i128::from(ri),
        i128::from(rm),
        i128::from(sur),
        i128::from(secs),
    );
    let (billed, sixtieths) = if secs <= rm {
        (rm, 60 * sur + rm * r)
    } else {
        let steps = (secs - rm + ri - 1) / ri;
        (
            (secs + ri - 1) / ri * ri,
            60 * sur + rm * r + steps * ri * r,
        )
    };
    let cost = sixtieths / 60;
    let discount = cost * i128::from(disc) / 100;
    let clamp = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
    Charge {
        billed_seconds: clamp(billed),
        cost_units: clamp(cost - discount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(r: i64, ri: Option<i64>, rm: Option<i64>, secs: i64) -> Inputs {
        Inputs {
            billing_seconds: Some(secs),
            rate: Some(r),
            rate_increment: ri,
            rate_minimum: rm,
            ..Inputs::default()
        }
    }

    fn both(inp: &Inputs) -> (Charge, Charge) {
        (rate(inp, Rounding::Kazoo), rate(inp, Rounding::Exact))
    }

    fn charge(billed_seconds: i64, cost_units: i64) -> Charge {
        Charge {
            billed_seconds,
            cost_units,
        }
    }

    #[test]
    fn billing_doc_worked_examples() {
        // R=2262, RI=60, RM=60: 7 s -> 2262; 61 s -> 4524; with RI=6, 61 s -> 2488.
        let c = both(&leg(2262, Some(60), Some(60), 7));
        assert_eq!(c, (charge(60, 2262), charge(60, 2262)));
        let c = both(&leg(2262, Some(60), Some(60), 61));
        assert_eq!(c, (charge(120, 4524), charge(120, 4524)));
        // 2262 + ceil(1/6) * (0.1 * 2262) = 2262 + 226.2 -> 2488; charged ceil(61/6)*6 = 66.
        let c = both(&leg(2262, Some(6), Some(60), 61));
        assert_eq!(c, (charge(66, 2488), charge(66, 2488)));
        // RM=30, RI=60, 65 s: charged 120 s but cost = trunc(0.5R + 1R).
        let c = both(&leg(2262, Some(60), Some(30), 65));
        assert_eq!(c, (charge(120, 3393), charge(120, 3393)));
    }

    #[test]
    fn double_arithmetic_differs_from_exact_where_kazoo_does() {
        // (1/60)*22 = 0.3666..., times 300 = 109.99999999999999 in doubles.
        let (k, e) = both(&leg(22, Some(1), Some(0), 300));
        assert_eq!(k, charge(300, 109));
        assert_eq!(e, charge(300, 110));
    }

    #[test]
    fn unanswered_and_nocharge_legs_cost_nothing() {
        assert_eq!(
            rate(&leg(2262, None, None, 0), Rounding::Kazoo),
            Charge::default()
        );
        let mut l = leg(2262, None, None, 10);
        l.rate_nocharge_time = Some(10);
        assert_eq!(rate(&l, Rounding::Kazoo), Charge::default());
        // Above the no-charge time the FULL duration is charged.
        l.billing_seconds = Some(11);
        assert_eq!(rate(&l, Rounding::Kazoo), charge(60, 2262));
        // The offset is taken off first.
        let mut o = leg(600, None, None, 70);
        o.billing_seconds_offset = Some(20);
        assert_eq!(rate(&o, Rounding::Kazoo), charge(60, 600));
        o.billing_seconds_offset = Some(70);
        assert_eq!(rate(&o, Rounding::Kazoo), Charge::default());
    }

    #[test]
    fn defaults_surcharge_and_discount() {
        // No increment -> 60; increment 0 -> 60; no minimum -> 0.
        assert_eq!(
            rate(&leg(600, None, None, 61), Rounding::Kazoo),
            charge(120, 1200)
        );
        assert_eq!(
            rate(&leg(600, Some(0), None, 61), Rounding::Kazoo),
            charge(120, 1200)
        );
        // A surcharge is added once; with no rate it is all there is.
        let mut s = leg(0, None, None, 30);
        s.rate = None;
        s.surcharge = Some(500);
        assert_eq!(rate(&s, Rounding::Kazoo), charge(60, 500));
        // 10% off 1200 -> 120 off; 7% off 1201: (7 * 0.01) * 1201 = 84.07 -> 84.
        let mut d = leg(600, None, None, 61);
        d.discount_percentage = Some(10);
        assert_eq!(rate(&d, Rounding::Kazoo), charge(120, 1080));
        d.surcharge = Some(1);
        d.discount_percentage = Some(7);
        assert_eq!(both(&d), (charge(120, 1117), charge(120, 1117)));
    }
}
