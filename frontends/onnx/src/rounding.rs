//! Automatic choice of the rounding bits (docs/onnx.md, "Automatic rounding"): the fewest bits an
//! accumulator keeps before its lookup such that the quantised network stays within a tolerance of
//! its finely rounded form on the calibration set.

use fhec_ir::interp;
use fhec_quant::InputSpec;
use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use crate::{OnnxError, OnnxModel, PtqOptions, QuantizedNetwork};

/// Bits tried, in order (fewest first: the cheapest lookups).
pub const AUTO_ROUNDING_CANDIDATES: std::ops::RangeInclusive<u32> = 2..=8;
/// The reference's rounding: the finest the tables allow, up to this.
pub const AUTO_ROUNDING_REFERENCE: u32 = 12;
/// Calibration rows the choice evaluates (the first ones).
pub const AUTO_ROUNDING_ROWS: usize = 512;
/// The default tolerance: 1 % of the calibration rows may change their top class (or, for one
/// output, a mean error of 1 % of the reference's range).
pub const DEFAULT_ROUNDING_TOLERANCE: f64 = 0.01;

/// One candidate of the choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundingTrial {
    pub bits: u32,
    /// Rows whose top class differs from the reference's (several outputs), or the mean absolute
    /// error over the reference's range (one output). `None`: the candidate could not be quantised.
    pub error: Option<f64>,
    /// Why the candidate was refused after quantising: the build the caller checks candidates
    /// with (a compile: no secure parameters for its lookups) failed with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infeasible: Option<String>,
}

/// Why [`OnnxModel::choose_rounding_bits_with`]'s build of a candidate failed.
#[derive(Clone, Debug, PartialEq)]
pub enum BuildFailure<E> {
    /// The candidate is too wide (no secure parameters for its lookups): a narrower one may build.
    Infeasible(String),
    /// Any other failure: the choice stops and returns it.
    Failed(E),
}

/// What [`OnnxModel::choose_rounding_bits`] chose, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundingChoice {
    pub bits: u32,
    pub tolerance: f64,
    /// The reference's rounding bits.
    pub reference_bits: u32,
    /// Rows evaluated.
    pub rows: usize,
    /// Every candidate tried, in order.
    pub trials: Vec<RoundingTrial>,
    /// Whether a candidate met the tolerance and built. Else `bits` is the one of least error among
    /// those that built (with [`OnnxModel::choose_rounding_bits_with`], a candidate within the
    /// tolerance may have been refused: its trial says why).
    pub met: bool,
}

/// The dequantised outputs of `q`'s integer program on `x` (the first axis the rows), row by row.
pub(crate) fn run_quantized(q: &QuantizedNetwork, x: &ArrayD<f64>) -> Result<Vec<Vec<f64>>, OnnxError> {
    let verified = fhec_ir::verify(&q.module)
        .map_err(|e| OnnxError::Unsupported(e.iter().map(|d| d.message.as_str()).collect::<Vec<_>>().join("; ")))?;
    let InputSpec::Features { quantizer, .. } = &q.spec.inputs[0] else {
        return Err(OnnxError::Unsupported("a network takes features".into()));
    };
    let dq = q.spec.outputs[0]
        .as_ref()
        .ok_or_else(|| OnnxError::Unsupported("a network's output is dequantised".into()))?;
    let f: usize = x.shape()[1..].iter().product();
    let mut out = Vec::with_capacity(x.shape()[0]);
    for row in x.axis_iter(Axis(0)) {
        let flat: Vec<f64> = row.iter().copied().collect();
        let qx = quantizer
            .quantize(&flat)
            .map_err(|e| OnnxError::Calibration(e.to_string()))?
            .values;
        let a = ArrayD::from_shape_vec(IxDyn(&[1, f]), qx).map_err(|e| OnnxError::Shape(e.to_string()))?;
        let y = interp::eval(&verified, &[a]).map_err(|e| OnnxError::Unsupported(e.to_string()))?;
        let ints: Vec<i64> = y[0].iter().copied().collect();
        let (values, _) = q
            .spec
            .output_values(0, &ints, ints.len())
            .map_err(|e| OnnxError::Shape(e.to_string()))?;
        out.push(
            values
                .iter()
                .enumerate()
                .map(|(c, &v)| dq.scale[c] * v as f64 + dq.offset[c])
                .collect(),
        );
    }
    Ok(out)
}

fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) },
        )
        .0
}

/// How far `y` is from `reference`: top-class disagreement for several outputs, else the mean
/// absolute error over the reference's range.
fn distance(y: &[Vec<f64>], reference: &[Vec<f64>]) -> f64 {
    let n = reference.len().max(1) as f64;
    if reference.first().is_some_and(|r| r.len() > 1) {
        let differ = y.iter().zip(reference).filter(|(a, b)| argmax(a) != argmax(b)).count();
        differ as f64 / n
    } else {
        let (lo, hi) = reference
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let range = (hi - lo).max(f64::MIN_POSITIVE);
        let e: f64 = y.iter().zip(reference).map(|(a, b)| (a[0] - b[0]).abs()).sum();
        e / n / range
    }
}

impl OnnxModel {
    /// Chooses the rounding bits for `opts.n_bits`: the fewest of [`AUTO_ROUNDING_CANDIDATES`]
    /// whose quantised network stays within `tolerance` of the network rounded to
    /// [`AUTO_ROUNDING_REFERENCE`] bits (or the finest its tables allow) on the first
    /// [`AUTO_ROUNDING_ROWS`] calibration rows: top-class disagreement for several outputs, mean
    /// absolute error over the output's range for one. Fewer bits are cheaper lookups and fewer
    /// extractions. The parameter search may still find no secure parameters for the choice:
    /// [`OnnxModel::choose_rounding_bits_with`] checks that.
    pub fn choose_rounding_bits(
        &self,
        calibration: &ArrayD<f64>,
        opts: &PtqOptions,
        tolerance: f64,
    ) -> Result<RoundingChoice, OnnxError> {
        Ok(self
            .choose_rounding_bits_with(calibration, opts, tolerance, |_| Ok::<(), BuildFailure<()>>(()))?
            .0)
    }

    /// [`OnnxModel::choose_rounding_bits`], each candidate it would choose checked by `build` (the
    /// caller's compile): the first within the tolerance that builds wins. One that is infeasible
    /// (no secure parameters for its lookups) is recorded with the reason, and the wider roundings
    /// after it are not tried (their lookups are wider still); the choice then falls back to the
    /// candidates tried before it, least error first, the first that builds (`met = false`). Returns
    /// the choice and what `build` gave for it: the infeasibility of the least-error candidate when
    /// none builds, or the first [`BuildFailure::Failed`] at once (with the choice so far).
    pub fn choose_rounding_bits_with<T, E>(
        &self,
        calibration: &ArrayD<f64>,
        opts: &PtqOptions,
        tolerance: f64,
        mut build: impl FnMut(&QuantizedNetwork) -> Result<T, BuildFailure<E>>,
    ) -> Result<(RoundingChoice, Result<T, BuildFailure<E>>), OnnxError> {
        if !(0.0..=1.0).contains(&tolerance) {
            return Err(OnnxError::Options(format!(
                "the rounding tolerance must be in [0, 1], got {tolerance}"
            )));
        }
        if calibration.ndim() == 0 || calibration.shape()[0] == 0 {
            return Err(OnnxError::Calibration("the calibration set is empty".into()));
        }
        let rows = calibration.shape()[0].min(AUTO_ROUNDING_ROWS);
        let sample = calibration.slice_axis(Axis(0), (0..rows).into()).to_owned();
        let with = |bits: u32| PtqOptions {
            rounding_bits: bits,
            ..*opts
        };
        // the reference: the finest rounding whose tables fit
        let mut reference = None;
        for bits in (*AUTO_ROUNDING_CANDIDATES.end()..=AUTO_ROUNDING_REFERENCE).rev() {
            if let Ok(q) = self.quantize(calibration, &with(bits)) {
                reference = Some((bits, run_quantized(&q, &sample)?));
                break;
            }
        }
        let (reference_bits, want) = match reference {
            Some(r) => r,
            None => {
                // nothing quantises at a fine rounding: the coarsest candidate's error says why
                let bits = *AUTO_ROUNDING_CANDIDATES.start();
                let q = self.quantize(calibration, &with(bits))?;
                (bits, run_quantized(&q, &sample)?)
            }
        };
        let choice = |bits: u32, met: bool, trials: Vec<RoundingTrial>| RoundingChoice {
            bits,
            tolerance,
            reference_bits,
            rows,
            trials,
            met,
        };
        let mut trials = Vec::new();
        // the quantised candidates, by index in `trials`
        let mut networks: Vec<Option<QuantizedNetwork>> = Vec::new();
        for bits in AUTO_ROUNDING_CANDIDATES.filter(|&b| b <= reference_bits) {
            let q = self.quantize(calibration, &with(bits)).ok();
            let error = match &q {
                Some(q) => Some(distance(&run_quantized(q, &sample)?, &want)),
                None => None,
            };
            trials.push(RoundingTrial {
                bits,
                error,
                infeasible: None,
            });
            networks.push(q);
            if error.is_some_and(|e| e <= tolerance) {
                let last = trials.len() - 1;
                match build(networks[last].as_ref().expect("quantised")) {
                    Ok(t) => return Ok((choice(bits, true, trials), Ok(t))),
                    Err(BuildFailure::Infeasible(why)) => {
                        trials[last].infeasible = Some(why);
                        break;
                    }
                    Err(failed) => return Ok((choice(bits, false, trials), Err(failed))),
                }
            }
        }
        // none within the tolerance builds: the others, least error first
        let mut order: Vec<usize> = (0..trials.len())
            .filter(|&i| trials[i].error.is_some() && trials[i].infeasible.is_none())
            .collect();
        order.sort_by(|&a, &b| {
            let (ea, eb) = (
                trials[a].error.unwrap_or(f64::INFINITY),
                trials[b].error.unwrap_or(f64::INFINITY),
            );
            ea.total_cmp(&eb).then(trials[a].bits.cmp(&trials[b].bits))
        });
        for &i in &order {
            let bits = trials[i].bits;
            match build(networks[i].as_ref().expect("quantised")) {
                Ok(t) => return Ok((choice(bits, false, trials), Ok(t))),
                Err(BuildFailure::Infeasible(why)) => trials[i].infeasible = Some(why),
                Err(failed) => return Ok((choice(bits, false, trials), Err(failed))),
            }
        }
        // nothing builds: the least error (or the reference), with its failure
        let least = (0..trials.len())
            .filter(|&i| trials[i].error.is_some())
            .min_by(|&a, &b| {
                let (ea, eb) = (
                    trials[a].error.unwrap_or(f64::INFINITY),
                    trials[b].error.unwrap_or(f64::INFINITY),
                );
                ea.total_cmp(&eb).then(trials[a].bits.cmp(&trials[b].bits))
            });
        let (bits, why) = match least {
            Some(i) => (
                trials[i].bits,
                trials[i].infeasible.clone().unwrap_or_else(|| "not built".into()),
            ),
            None => (reference_bits, "no candidate quantises".into()),
        };
        Ok((choice(bits, false, trials), Err(BuildFailure::Infeasible(why))))
    }
}
