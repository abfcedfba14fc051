//! The [`CostModel`] passes weigh rewrites with, derived from the parameter search: for each lookup
//! precision, the estimated time of one keyswitch + bootstrap on the cheapest secure parameters the
//! search finds for a lone lookup at the default failure probability. The estimate is
//! [`params::pbs_cost_ns`], whose constants (`params::cost`) are fitted to `fhec-bench calibrate`
//! measurements on a 2-vCPU AVX-512 machine; `docs/benchmarks.md` holds the latest figures.

use std::sync::OnceLock;

use fhec_ir::CostModel;

use crate::params::{self, Constraint, NoiseDag, PError};

/// The cost model. Its table is [`DERIVED_LOOKUP_NS`]: the derivation (17 parameter searches,
/// ~0.8 s at 2^-128) ran once when the constants last changed, not on every compile; a test checks
/// that the committed table is what [`derive`] gives today.
pub fn cost_model() -> &'static CostModel {
    static MODEL: OnceLock<CostModel> = OnceLock::new();
    MODEL.get_or_init(|| model_of(DERIVED_LOOKUP_NS.to_vec()))
}

/// [`derive`]'s table, committed (nanoseconds per lookup of 0 to 16 bits). Regenerate with
/// `cargo test --release -p fhec-backend-tfhe committed_cost_table` (the failure prints the new one).
#[allow(clippy::excessive_precision)] // the derivation's f64 values, exactly
pub const DERIVED_LOOKUP_NS: [f64; 17] = [
    4683535.36,
    4683535.36,
    5614481.92,
    8344422.4,
    11644805.120000001,
    26701455.36,
    93641523.2,
    223427543.04000002,
    965620203.5200001,
    2152298577.92,
    6456895733.76,
    19370687201.28,
    58112061603.84,
    174336184811.52,
    523008554434.55994,
    1569025663303.6797,
    4707076989911.039,
];

fn model_of(lookup_ns: Vec<f64>) -> CostModel {
    CostModel {
        lookup_ns,
        leveled_ns: params::cost::LEVELED * 2048.0,
        source: "the parameter search's cost of one lookup per precision (params::pbs_cost_ns, constants fitted by \
                 fhec-bench calibrate)"
            .into(),
    }
}

/// The cost model from the parameter search: 17 searches, one per precision.
pub fn derive() -> CostModel {
    let mut lookup_ns: Vec<f64> = Vec::with_capacity(17);
    let mut beyond = false;
    for bits in 0..=16u32 {
        let dag = NoiseDag {
            constraints: vec![Constraint {
                precision: bits.max(1),
                fresh_weight: 1.0,
                pbs_weight: 1.0,
                lookup: true,
                count: 1,
                origin: format!("a {bits}-bit lookup"),
            }],
        };
        // once a precision is out of reach, every wider one is too: skip their (exhaustive, slow) searches
        let ns = match (!beyond).then(|| params::search(&dag, PError::default())) {
            Some(Ok(s)) => s.ns_per_pbs,
            // beyond what secure parameters reach: keep growing, ×3 per bit
            _ => {
                beyond = true;
                lookup_ns.last().copied().unwrap_or(1e6) * 3.0
            }
        };
        lookup_ns.push(ns);
    }
    model_of(lookup_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_cost_table_is_the_derivation() {
        let d = derive();
        assert_eq!(
            d.lookup_ns,
            DERIVED_LOOKUP_NS.to_vec(),
            "the cost constants or the search changed: set DERIVED_LOOKUP_NS to {:?}",
            d.lookup_ns
        );
    }

    #[test]
    fn lookups_cost_more_with_precision_and_jump_after_four_bits() {
        let m = cost_model();
        for b in 1..16 {
            assert!(m.lookup(b + 1) >= m.lookup(b), "{b}: {:?}", m.lookup_ns);
        }
        // at the default 2^-128 (at 2^-40 the jump was after 5 bits)
        assert_eq!(m.cost_jump(), 4, "{:?}", m.lookup_ns);
        assert!(m.lookup(20) > m.lookup(16));
    }
}
