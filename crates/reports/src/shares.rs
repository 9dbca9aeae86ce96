//! How one conversion's credit is shared among its touches, under each attribution model. Pure:
//! the stage in [`crate::credit`] feeds it the touches the identity graph holds for the window.

use events::Touchpoint;
use rust_decimal::Decimal;
use time::{Duration, OffsetDateTime};

/// An attribution model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Model {
    /// The matcher's touchpoint (the last click in the window) takes everything.
    LastClick,
    /// The first click in the window takes everything.
    FirstClick,
    /// Equal shares.
    Linear,
    /// 40 % first, 40 % last, 20 % shared by the middle; one touch takes all, two take 50/50.
    PositionBased,
    /// A touch's weight halves every [`HALF_LIFE`] before the conversion.
    TimeDecay,
}

/// The half-life of [`Model::TimeDecay`].
pub const HALF_LIFE: Duration = Duration::days(7);

/// Decimal places a share is rounded to (the last share of a conversion takes the remainder).
pub const SHARE_DP: u32 = 12;

impl Model {
    /// Every model, in the order of their columns and numbers.
    pub const ALL: [Model; 5] = [
        Model::LastClick,
        Model::FirstClick,
        Model::Linear,
        Model::PositionBased,
        Model::TimeDecay,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::LastClick => "last_click",
            Model::FirstClick => "first_click",
            Model::Linear => "linear",
            Model::PositionBased => "position_based",
            Model::TimeDecay => "time_decay",
        }
    }

    /// The model of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Its number in the rollups (and its index in [`Self::ALL`]).
    pub fn number(self) -> i16 {
        match self {
            Model::LastClick => 0,
            Model::FirstClick => 1,
            Model::Linear => 2,
            Model::PositionBased => 3,
            Model::TimeDecay => 4,
        }
    }
}

/// A touch as the models see it: when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    /// When the click happened.
    pub clicked_at: OffsetDateTime,
}

/// The shares of `touches` (in time order, oldest first) in a conversion at `at`, one array per
/// touch indexed like [`Model::ALL`]. `last` and `first` are the indexes of the matcher's
/// touchpoint and first touch, which the single-touch models credit. Each model's shares sum to
/// exactly 1; an empty `touches` answers nothing.
pub fn share(
    at: OffsetDateTime,
    touches: &[Timed],
    last: usize,
    first: usize,
) -> Vec<[Decimal; 5]> {
    let n = touches.len();
    if n == 0 {
        return Vec::new();
    }
    let last = last.min(n - 1);
    let first = first.min(n - 1);
    let mut out = vec![[Decimal::ZERO; 5]; n];
    out[last][0] = Decimal::ONE;
    out[first][1] = Decimal::ONE;
    let linear = split(&vec![Decimal::ONE; n]);
    let position = split(&position_weights(n));
    let decay = split(&decay_weights(at, touches));
    for i in 0..n {
        out[i][2] = linear[i];
        out[i][3] = position[i];
        out[i][4] = decay[i];
    }
    out
}

fn position_weights(n: usize) -> Vec<Decimal> {
    match n {
        1 => vec![Decimal::ONE],
        2 => vec![Decimal::new(5, 1), Decimal::new(5, 1)],
        _ => {
            let middle = Decimal::new(2, 1) / Decimal::from(n - 2);
            let mut w = vec![middle; n];
            w[0] = Decimal::new(4, 1);
            w[n - 1] = Decimal::new(4, 1);
            w
        }
    }
}

fn decay_weights(at: OffsetDateTime, touches: &[Timed]) -> Vec<Decimal> {
    let half_life = HALF_LIFE.as_seconds_f64();
    touches
        .iter()
        .map(|t| {
            let age = (at - t.clicked_at).as_seconds_f64().max(0.0);
            let weight = (-age / half_life).exp2();
            // Past ~2^-90 a weight no longer shows in 28 digits; the floor keeps it positive.
            Decimal::try_from(weight)
                .unwrap_or(Decimal::ZERO)
                .max(Decimal::new(1, 27))
        })
        .collect()
}

/// Normalises weights to shares rounded to [`SHARE_DP`] places, the last taking the remainder so
/// that they sum to exactly 1.
fn split(weights: &[Decimal]) -> Vec<Decimal> {
    let total: Decimal = weights.iter().copied().sum();
    let n = weights.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(n);
    let mut given = Decimal::ZERO;
    for w in &weights[..n - 1] {
        let s = if total.is_zero() {
            Decimal::ZERO
        } else {
            (*w / total).round_dp(SHARE_DP)
        };
        given += s;
        out.push(s);
    }
    out.push(Decimal::ONE - given);
    out
}

/// The channel of a touchpoint: the ad platform of its click id, else its utm source, else
/// `direct` (also for no touchpoint at all).
pub fn channel(touch: Option<&Touchpoint>) -> String {
    match touch {
        Some(t) => channel_of(&t.click_ids, t.utm.as_ref()),
        None => DIRECT.into(),
    }
}

pub use events::{channel_of, DIRECT};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-04-20 12:00 UTC);

    fn timed(days_before: &[i64]) -> Vec<Timed> {
        days_before
            .iter()
            .map(|d| Timed {
                clicked_at: AT - Duration::days(*d),
            })
            .collect()
    }

    fn column(shares: &[[Decimal; 5]], model: Model) -> Vec<String> {
        shares
            .iter()
            .map(|s| s[model.number() as usize].normalize().to_string())
            .collect()
    }

    #[test]
    fn one_touch_takes_everything_under_every_model() {
        let s = share(AT, &timed(&[3]), 0, 0);
        assert_eq!(s, vec![[Decimal::ONE; 5]]);
    }

    #[test]
    fn two_touches_split_half_and_half_by_position() {
        let s = share(AT, &timed(&[10, 1]), 1, 0);
        assert_eq!(column(&s, Model::PositionBased), ["0.5", "0.5"]);
        assert_eq!(column(&s, Model::LastClick), ["0", "1"]);
        assert_eq!(column(&s, Model::FirstClick), ["1", "0"]);
        assert_eq!(column(&s, Model::Linear), ["0.5", "0.5"]);
    }

    #[test]
    fn position_based_gives_forty_twenty_forty() {
        let s = share(AT, &timed(&[20, 10, 5, 1]), 3, 0);
        assert_eq!(
            column(&s, Model::PositionBased),
            ["0.4", "0.1", "0.1", "0.4"]
        );
        let s = share(AT, &timed(&[20, 10, 1]), 2, 0);
        assert_eq!(column(&s, Model::PositionBased), ["0.4", "0.2", "0.4"]);
    }

    #[test]
    fn linear_thirds_put_the_remainder_on_the_last_touch() {
        let s = share(AT, &timed(&[3, 2, 1]), 2, 0);
        assert_eq!(
            column(&s, Model::Linear),
            ["0.333333333333", "0.333333333333", "0.333333333334"]
        );
    }

    #[test]
    fn time_decay_halves_the_weight_every_seven_days() {
        // Weights 1/2 and 1: shares 1/3 and 2/3.
        let s = share(AT, &timed(&[7, 0]), 1, 0);
        assert_eq!(
            column(&s, Model::TimeDecay),
            ["0.333333333333", "0.666666666667"]
        );
    }

    proptest! {
        #[test]
        fn every_models_shares_sum_to_exactly_one(
            ages in proptest::collection::vec(0i64..(90 * 86_400), 1..40),
            last in 0usize..40,
            first in 0usize..40,
        ) {
            let mut ages = ages;
            ages.sort_unstable_by(|a, b| b.cmp(a));
            let touches: Vec<Timed> = ages
                .iter()
                .map(|s| Timed { clicked_at: AT - Duration::seconds(*s) })
                .collect();
            let s = share(AT, &touches, last, first);
            for m in 0..5 {
                let total: Decimal = s.iter().map(|row| row[m]).sum();
                prop_assert_eq!(total, Decimal::ONE);
                prop_assert!(s.iter().all(|row| row[m] >= Decimal::ZERO));
            }
            // Later touches never get less than earlier ones under time decay.
            for pair in s.windows(2).take(s.len().saturating_sub(2)) {
                prop_assert!(pair[0][4] <= pair[1][4]);
            }
        }
    }
}
