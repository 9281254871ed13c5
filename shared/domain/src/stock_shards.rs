//! A hot product's orderable stock split over shard items (issue 25).
//!
//! On AWS one item lives in one partition, which takes at most 1,000 write
//! units a second; every order of a product writes its stock. Split over N
//! items, each order writes one of them, so the product takes N times the
//! orders. Shard 0 is the product item itself (N = 1 is the layout every
//! product had before), shards 1…N−1 are items of their own; each carries
//! its own `stock`, `reserved` and `sold`, and the product's are their sums.
//!
//! Units never change shard while an order holds them: an order records
//! where it took its units ([`ShardUnits`]) and gives them back there.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Most shards a product's stock may be split into: a whole order's
/// transaction (at most 100 items) still fits a line split over all of them.
pub const MAX_STOCK_SHARDS: u32 = 64;

/// Units of one line taken from (or given back to) one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardUnits {
    pub shard: u32,
    pub quantity: i64,
}

/// One shard item's counters, as stored (shards 1…N−1; shard 0's are the
/// product item's own).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardCounters {
    #[serde(default)]
    pub product_id: String,
    pub shard: u32,
    #[serde(default)]
    pub stock: i64,
    #[serde(default)]
    pub reserved: i64,
    #[serde(default)]
    pub sold: i64,
    /// The product's version (its price) the shard was last written at:
    /// a reservation is conditional on it, as on the product item's.
    #[serde(default)]
    pub version: i64,
}

/// Checks an admin's `stockShards`: 1 to [`MAX_STOCK_SHARDS`], and never
/// fewer than the product has (`current`): orders hold units on every shard
/// it has, and give them back there.
pub fn validate_stock_shards(requested: i64, current: u32) -> Result<u32, FieldError> {
    let max = i64::from(MAX_STOCK_SHARDS);
    if !(1..=max).contains(&requested) {
        return Err(FieldError::new(
            "stockShards",
            format!("must be an integer from 1 to {max}, got {requested}"),
        ));
    }
    let requested = requested as u32;
    if requested < current {
        return Err(FieldError::new(
            "stockShards",
            format!(
                "can only grow: the product has {current} shards and orders hold units on each of them"
            ),
        ));
    }
    Ok(requested)
}

/// `total` spread over `shards` as evenly as whole units go: the first
/// `total % shards` shards hold one more.
pub fn even_shares(total: i64, shards: u32) -> Vec<i64> {
    let n = i64::from(shards.max(1));
    (0..n)
        .map(|k| total / n + i64::from(k < total % n))
        .collect()
}

/// A small deterministic generator (SplitMix64): the caller seeds it with
/// randomness, tests with a constant.
struct Picks(u64);

impl Picks {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % below.max(1) as u64) as usize
    }
}

/// Two different shards of `shards` drawn at random (one if there is
/// one): the shards an order reads besides the product.
pub fn sample_two(shards: u32, seed: u64) -> Vec<u32> {
    let n = shards.max(1) as usize;
    let mut picks = Picks(seed);
    let a = picks.next(n);
    if n == 1 {
        return vec![a as u32];
    }
    let b = (a + 1 + picks.next(n - 1)) % n;
    vec![a as u32, b as u32]
}

/// Where a line's `quantity` units come from, given the stock of the
/// shards read (`(shard, stock)`: every shard, or a sample of them), or
/// `None` if they hold fewer together.
///
/// One shard when one can hold the line: of two different ones drawn at
/// random among those that can, the fuller. Choosing the fuller of two
/// keeps the shards even as they drain (the "power of two choices"), so
/// they empty at about the same time and the load stays spread; that is
/// this design's rebalancing step, paid for by no extra write, and it needs
/// no more than two shards read. When no single shard can hold the line it
/// is split, fullest shards first (the fewest items in the transaction):
/// units left anywhere are sold, never refused.
pub fn allocate(candidates: &[(u32, i64)], quantity: i64, seed: u64) -> Option<Vec<ShardUnits>> {
    let total: i64 = candidates.iter().map(|(_, stock)| (*stock).max(0)).sum();
    if quantity <= 0 || total < quantity {
        return None;
    }
    let holders: Vec<(u32, i64)> = candidates
        .iter()
        .copied()
        .filter(|&(_, stock)| stock >= quantity)
        .collect();
    if !holders.is_empty() {
        let drawn = sample_two(holders.len() as u32, seed);
        let (shard, _) = drawn
            .iter()
            .map(|&i| holders[i as usize])
            .max_by_key(|&(_, stock)| stock)?;
        return Some(vec![ShardUnits { shard, quantity }]);
    }
    let mut fullest: Vec<(u32, i64)> = candidates
        .iter()
        .copied()
        .filter(|&(_, stock)| stock > 0)
        .collect();
    fullest.sort_by_key(|&(_, stock)| std::cmp::Reverse(stock));
    let mut parts = Vec::new();
    let mut left = quantity;
    for (shard, stock) in fullest {
        let take = stock.min(left);
        parts.push(ShardUnits {
            shard,
            quantity: take,
        });
        left -= take;
        if left == 0 {
            break;
        }
    }
    Some(parts)
}

/// Units `skip..skip + take` of a line whose units came from `parts` (in
/// that order). Partial refunds give back the units after those already
/// refunded, so each shard gets back at most what the order took from it.
pub fn units_between(parts: &[ShardUnits], skip: i64, take: i64) -> Vec<ShardUnits> {
    let mut out = Vec::new();
    let (mut skip, mut take) = (skip, take);
    for part in parts {
        if take == 0 {
            break;
        }
        let here = (part.quantity - skip).max(0);
        skip = (skip - part.quantity).max(0);
        let moved = here.min(take);
        if moved > 0 {
            out.push(ShardUnits {
                shard: part.shard,
                quantity: moved,
            });
            take -= moved;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shard read: (k, stock[k]).
    fn all(stock: &[i64]) -> Vec<(u32, i64)> {
        stock
            .iter()
            .enumerate()
            .map(|(k, s)| (k as u32, *s))
            .collect()
    }

    fn units(parts: &[(u32, i64)]) -> Vec<ShardUnits> {
        parts
            .iter()
            .map(|&(shard, quantity)| ShardUnits { shard, quantity })
            .collect()
    }

    #[test]
    fn shares_are_even_and_add_up() {
        assert_eq!(even_shares(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(even_shares(3, 4), vec![1, 1, 1, 0]);
        assert_eq!(even_shares(0, 2), vec![0, 0]);
        assert_eq!(even_shares(7, 1), vec![7]);
        for total in [0, 1, 63, 64, 1_000_000_000] {
            let shares = even_shares(total, 64);
            assert_eq!(shares.iter().sum::<i64>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn shard_counts_outside_one_to_sixty_four_or_below_the_current_are_refused() {
        assert_eq!(validate_stock_shards(1, 1), Ok(1));
        assert_eq!(validate_stock_shards(64, 16), Ok(64));
        for bad in [0, -1, 65] {
            let err = validate_stock_shards(bad, 1).unwrap_err();
            assert_eq!(err.field, "stockShards");
            assert!(err.message.contains("from 1 to 64"), "{}", err.message);
        }
        let err = validate_stock_shards(4, 16).unwrap_err();
        assert!(err.message.contains("only grow"), "{}", err.message);
    }

    #[test]
    fn a_line_one_shard_can_hold_takes_the_fuller_of_two_random_holders() {
        let stock = [5, 0, 9, 2];
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let parts = allocate(&all(&stock), 2, seed).unwrap();
            assert_eq!(parts.len(), 1);
            assert!(stock[parts[0].shard as usize] >= 2);
            seen.insert(parts[0].shard);
        }
        // Shard 1 cannot hold it; shard 3 only when drawn twice.
        assert!(seen.contains(&0) && seen.contains(&2) && !seen.contains(&1));
    }

    #[test]
    fn drawing_the_fuller_of_two_keeps_shards_even_as_they_drain() {
        let mut stock = vec![100_i64; 16];
        for seed in 0..1500 {
            let parts = allocate(&all(&stock), 1, seed * 7919).unwrap();
            stock[parts[0].shard as usize] -= 1;
        }
        // One random shard per order would leave a spread of about 30
        // units here (3 standard deviations of 1,500 draws over 16).
        let (lo, hi) = (stock.iter().min().unwrap(), stock.iter().max().unwrap());
        assert!(hi - lo <= 4, "spread {lo}..{hi}: {stock:?}");
    }

    #[test]
    fn a_line_no_shard_can_hold_is_split_fullest_first_and_never_refused_while_units_remain() {
        assert_eq!(
            allocate(&all(&[1, 3, 0, 2]), 5, 0),
            Some(units(&[(1, 3), (3, 2)]))
        );
        assert_eq!(
            allocate(&all(&[1, 1, 1, 1]), 4, 9),
            Some(units(&[(0, 1), (1, 1), (2, 1), (3, 1)]))
        );
        assert_eq!(allocate(&all(&[1, 1, 1, 1]), 5, 9), None);
        assert_eq!(allocate(&all(&[0, 0]), 1, 3), None);
        assert_eq!(allocate(&all(&[4]), 0, 3), None);
    }

    #[test]
    fn a_sample_is_two_different_shards_and_covers_them_all() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..500 {
            let two = sample_two(16, seed);
            assert_eq!(two.len(), 2);
            assert_ne!(two[0], two[1]);
            assert!(two.iter().all(|k| *k < 16));
            seen.extend(two);
        }
        assert_eq!(seen.len(), 16);
        assert_eq!(sample_two(1, 7), vec![0]);
    }

    #[test]
    fn drawing_the_fuller_of_a_two_shard_sample_keeps_shards_even() {
        let mut stock = vec![100_i64; 16];
        for seed in 0..1500_u64 {
            let sample: Vec<(u32, i64)> = sample_two(16, seed * 31)
                .into_iter()
                .map(|k| (k, stock[k as usize]))
                .collect();
            let parts = allocate(&sample, 1, seed).unwrap();
            stock[parts[0].shard as usize] -= 1;
        }
        let (lo, hi) = (stock.iter().min().unwrap(), stock.iter().max().unwrap());
        assert!(hi - lo <= 4, "spread {lo}..{hi}: {stock:?}");
    }

    #[test]
    fn slices_of_a_lines_units_follow_its_parts() {
        let parts = units(&[(2, 3), (5, 2)]);
        assert_eq!(units_between(&parts, 0, 5), parts);
        assert_eq!(units_between(&parts, 0, 1), units(&[(2, 1)]));
        assert_eq!(units_between(&parts, 1, 3), units(&[(2, 2), (5, 1)]));
        assert_eq!(units_between(&parts, 3, 2), units(&[(5, 2)]));
        assert_eq!(units_between(&parts, 4, 1), units(&[(5, 1)]));
        assert_eq!(units_between(&parts, 5, 0), vec![]);
    }
}
