//! The pure mappings between the document's abstract limits and cgroup v2's files.

use crate::state::cgroup::{CPU_SHARES_MAX, CPU_SHARES_MIN};
use crate::state::types::Limit;

/// cgroup v2 `cpu.weight` bounds (Documentation/admin-guide/cgroup-v2.rst).
pub const CPU_WEIGHT_MIN: u64 = 1;
pub const CPU_WEIGHT_MAX: u64 = 10_000;

/// cgroup v1 `cpu.shares` to cgroup v2 `cpu.weight`, as current OCI runtimes convert it.
///
/// The formula is the one in opencontainers/cgroups `ConvertCPUSharesToCgroupV2Value`
/// (utils.go), used by runc since 1.3.2/1.4 and by crun since 1.23, and described in the
/// Kubernetes blog post "New conversion formula for cgroup v1 CPU shares to v2 CPU weight"
/// (2026-01-30): a quadratic in log2 space through (2, 1), (1024, 100) and (262144, 10000),
///
/// ```text
/// l = log2(shares);  weight = ceil(10 ^ ((l*l + 125*l) / 612 - 7/34))
/// ```
///
/// so the v1 default 1024 maps to the v2 default 100. The older linear formula,
/// `1 + (shares - 2) * 9999 / 262142`, mapped 1024 to 39, quietly giving every container well
/// under the default weight of anything the host itself started under v2.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares <= CPU_SHARES_MIN {
        return CPU_WEIGHT_MIN;
    }
    if shares >= CPU_SHARES_MAX {
        return CPU_WEIGHT_MAX;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(CPU_WEIGHT_MIN, CPU_WEIGHT_MAX)
}

/// A `cpu.shares` value that maps to `weight`, for `show` on a v2 host: applying the shown
/// document gives exactly that weight again. Several share values map to one weight; the
/// roundest of them (most trailing zero bits) is chosen, so 100 shows as 1024 and 59 as 512.
/// Weights no share value reaches give the nearest share value above.
pub fn weight_to_shares(weight: u64) -> u64 {
    let first_at_least = |w: u64| {
        let (mut lo, mut hi) = (CPU_SHARES_MIN, CPU_SHARES_MAX);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if shares_to_weight(mid) >= w {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    };
    let lo = first_at_least(weight);
    if shares_to_weight(lo) != weight {
        return lo;
    }
    let hi = if weight >= CPU_WEIGHT_MAX { CPU_SHARES_MAX } else { first_at_least(weight + 1) - 1 };
    (lo..=hi).max_by_key(|s| (s.trailing_zeros(), std::cmp::Reverse(*s))).unwrap_or(lo)
}

/// cgroup v2 `memory.swap.max` for a memory+swap limit: swap alone, `memsw - memory`.
/// Validation guarantees memory is bytes whenever memsw is; anything else means no swap limit.
pub fn swap_for_v2(memory: Option<Limit>, memory_swap: Limit) -> Limit {
    match (memory, memory_swap) {
        (Some(Limit::Bytes(m)), Limit::Bytes(s)) => Limit::Bytes(s.saturating_sub(m)),
        _ => Limit::Max,
    }
}

/// The document's memory+swap for what cgroup v2 holds: `memory.swap.max` is swap alone, so
/// memory+swap is their sum, and "max" when swap is unlimited; `None` when no document value
/// gives that swap file (a bounded swap beside no or an unlimited memory limit). The inverse of
/// `swap_for_v2`, for `show`, the audit and LXC's translation of a v2 config line.
pub fn memsw_from_v2(memory: Option<Limit>, swap: Limit) -> Option<Limit> {
    match (memory, swap) {
        (_, Limit::Max) => Some(Limit::Max),
        (Some(Limit::Bytes(m)), Limit::Bytes(s)) => Some(Limit::Bytes(m.saturating_add(s))),
        _ => None,
    }
}

/// What the kernel keeps of a byte limit: memory cgroup limits are counted in pages and a
/// written value is rounded down to a page (`page_counter_memparse`), so 1000000 reads back as
/// 999424 with 4 KiB pages.
pub fn page_rounded(bytes: u64) -> u64 {
    let page = page_size();
    bytes - bytes % page
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of the runc/crun formula (computed with it, and the 1024 -> 100 anchor
    /// the formula was fitted to).
    #[test]
    fn shares_to_weight_table() {
        let table = [
            (2, 1),
            (3, 2),
            (10, 4),
            (100, 17),
            (128, 21),
            (256, 35),
            (512, 59),
            (1000, 99),
            (1024, 100),
            (2048, 174),
            (4096, 303),
            (10000, 627),
            (100000, 4340),
            (262143, 10000),
            (262144, 10000),
        ];
        for (shares, weight) in table {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn the_old_linear_formula_is_not_used() {
        assert_ne!(shares_to_weight(1024), 1 + (1024 - 2) * 9999 / 262142);
    }

    #[test]
    fn weight_is_monotonic_and_in_range() {
        let mut last = 0;
        for s in CPU_SHARES_MIN..=CPU_SHARES_MAX {
            let w = shares_to_weight(s);
            assert!(w >= last && (CPU_WEIGHT_MIN..=CPU_WEIGHT_MAX).contains(&w), "shares {s} -> {w}");
            last = w;
        }
    }

    #[test]
    fn weight_to_shares_round_trips_through_the_weight() {
        for s in [2, 3, 100, 512, 1024, 4096, 262144] {
            let w = shares_to_weight(s);
            assert_eq!(shares_to_weight(weight_to_shares(w)), w);
        }
        assert_eq!(weight_to_shares(100), 1024);
        assert_eq!(weight_to_shares(59), 512);
        assert_eq!(weight_to_shares(10000), 262144);
        assert_eq!(weight_to_shares(1), 2);
    }

    #[test]
    fn swap_is_memsw_minus_memory() {
        assert_eq!(swap_for_v2(Some(Limit::Bytes(512 << 20)), Limit::Bytes(1 << 30)), Limit::Bytes(512 << 20));
        assert_eq!(swap_for_v2(Some(Limit::Bytes(1 << 30)), Limit::Bytes(1 << 30)), Limit::Bytes(0));
        assert_eq!(swap_for_v2(Some(Limit::Bytes(1 << 30)), Limit::Max), Limit::Max);
    }

    #[test]
    fn limits_round_down_to_pages() {
        if page_size() == 4096 {
            assert_eq!(page_rounded(1_000_000), 999_424);
        }
        assert_eq!(page_rounded(512 << 20), 512 << 20);
    }
}
