//! Quantised operators rewritten, at reading, into the QDQ form fhec reads (docs/onnx.md, "QOperator
//! graphs and QONNX"): onnxruntime's QOperator format (`QLinearConv`, `QLinearMatMul`, and its
//! `com.microsoft` `QGemm`, `QLinearAdd`, `QLinearMul`, `QLinearSigmoid`, `QLinearLeakyRelu`,
//! `QLinearAveragePool`, `QLinearGlobalAveragePool`, `QLinearConcat`) and QONNX `Quant` nodes.
//!
//! A QOperator node is, by its definition, DequantizeLinear of its quantised operands, the float op,
//! and QuantizeLinear of the result; it becomes those nodes (names derived from the original node's,
//! so errors still name it). A QONNX `Quant` is QuantizeLinear → Clip to its bit width →
//! DequantizeLinear; on a constant (weights) it is folded into the constant. Dynamic quantisation
//! (scales computed from the data at run time) has no encrypted counterpart and is refused.

use std::collections::HashMap;

use ndarray::ArrayD;

use crate::float::broadcast;
use crate::model::{Attr, Node};
use crate::proto::tensor_proto::DataType;
use crate::OnnxError;

/// Domains of QONNX's custom ops (and FINN's older name for them).
pub(crate) const QONNX_DOMAINS: &[&str] = &["qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas"];

/// The quantised operators read (listed in the unsupported-op error).
pub(crate) const QUANTISED_OPS: &[&str] = &[
    "QLinearConv",
    "QLinearMatMul",
    "com.microsoft QGemm",
    "com.microsoft QLinearAdd",
    "com.microsoft QLinearMul",
    "com.microsoft QLinearSigmoid",
    "com.microsoft QLinearLeakyRelu",
    "com.microsoft QLinearAveragePool",
    "com.microsoft QLinearGlobalAveragePool",
    "com.microsoft QLinearConcat",
    "QONNX Quant",
];

/// What the rewriting reads and adds to: the graph's constants and their element types.
pub(crate) struct Rewriter<'a> {
    pub constants: &'a mut HashMap<String, ArrayD<f64>>,
    pub dtypes: &'a mut HashMap<String, i32>,
}

fn unsupported(n: &Node, m: impl std::fmt::Display) -> OnnxError {
    OnnxError::Unsupported(format!("{}: {m}", n.what()))
}

/// Whether `rewrite` handles the node (domain, op).
pub(crate) fn handles(domain: &str, op: &str) -> bool {
    match domain {
        "" | "ai.onnx" => matches!(
            op,
            "QLinearConv" | "QLinearMatMul" | "MatMulInteger" | "ConvInteger" | "DynamicQuantizeLinear"
        ),
        "com.microsoft" => op.starts_with("QLinear") || matches!(op, "QGemm" | "DynamicQuantizeMatMul"),
        d => QONNX_DOMAINS.contains(&d),
    }
}

impl Rewriter<'_> {
    /// The standard nodes that compute `n` (a node [`handles`] accepts).
    pub fn rewrite(&mut self, domain: &str, n: Node) -> Result<Vec<Node>, OnnxError> {
        let mut out = Vec::new();
        match (domain, n.op.as_str()) {
            (d, "Quant") if QONNX_DOMAINS.contains(&d) => self.quant(n, &mut out)?,
            (d, op) if QONNX_DOMAINS.contains(&d) => {
                return Err(unsupported(
                    &n,
                    format!(
                    "QONNX op {op} (fhec reads QONNX `Quant` nodes; BipolarQuant, Trunc and others are not supported)"
                ),
                ))
            }
            (_, "DynamicQuantizeLinear" | "MatMulInteger" | "ConvInteger" | "DynamicQuantizeMatMul") => {
                return Err(unsupported(
                    &n,
                    "dynamic quantisation computes its scales from the data at run time, which an encrypted program \
                     cannot: quantise the model statically (QDQ or QOperator format, with a calibration set)",
                ))
            }
            (_, "QLinearMatMul") => {
                let a = self.dq(&n, 0, None, &mut out)?;
                let b = self.dq(&n, 3, Some(-1), &mut out)?;
                let y = self.tmp(&n, "matmul");
                out.push(self.node(&n, "MatMul", vec![a, b], &y, HashMap::new()));
                self.q(&n, &y, 6, &mut out)?;
            }
            (_, "QLinearConv") => {
                let x = self.dq(&n, 0, None, &mut out)?;
                let w = self.dq(&n, 3, Some(0), &mut out)?;
                let mut ins = vec![x, w];
                if let Some(b) = n.input(8) {
                    ins.push(self.bias(&n, b, 1, 4, 1.0, &mut out)?);
                }
                let y = self.tmp(&n, "conv");
                let attrs = n.attrs.clone();
                out.push(self.node(&n, "Conv", ins, &y, attrs));
                self.q(&n, &y, 6, &mut out)?;
            }
            ("com.microsoft", "QGemm") => {
                let trans_b = n.int("transB", 0)?;
                let a = self.dq(&n, 0, None, &mut out)?;
                let b = self.dq(&n, 3, Some(if trans_b != 0 { 0 } else { 1 }), &mut out)?;
                let alpha = n.float("alpha", 1.0)?;
                let mut ins = vec![a, b];
                if let Some(c) = n.input(6) {
                    ins.push(self.bias(&n, c, 1, 4, alpha, &mut out)?);
                }
                let mut attrs = HashMap::new();
                for k in ["alpha", "transA", "transB"] {
                    if let Some(v) = n.attrs.get(k) {
                        attrs.insert(k.to_string(), v.clone());
                    }
                }
                if n.input(7).is_some() {
                    let y = self.tmp(&n, "gemm");
                    out.push(self.node(&n, "Gemm", ins, &y, attrs));
                    self.q(&n, &y, 7, &mut out)?;
                } else {
                    let y = n.outputs.first().cloned().unwrap_or_default();
                    out.push(self.node(&n, "Gemm", ins, &y, attrs)); // float output
                }
            }
            ("com.microsoft", op @ ("QLinearAdd" | "QLinearMul")) => {
                let a = self.dq(&n, 0, None, &mut out)?;
                let b = self.dq(&n, 3, None, &mut out)?;
                let y = self.tmp(&n, "arith");
                out.push(self.node(&n, &op[7..], vec![a, b], &y, HashMap::new()));
                self.q(&n, &y, 6, &mut out)?;
            }
            (
                "com.microsoft",
                op @ ("QLinearSigmoid" | "QLinearLeakyRelu" | "QLinearAveragePool" | "QLinearGlobalAveragePool"),
            ) => {
                if n.int("channels_last", 0)? != 0 {
                    return Err(unsupported(&n, "channels_last = 1 (fhec reads NCHW pooling)"));
                }
                let x = self.dq(&n, 0, None, &mut out)?;
                let y = self.tmp(&n, "f");
                let mut attrs = n.attrs.clone();
                attrs.remove("channels_last");
                if op == "QLinearAveragePool" {
                    // its windows divide by the kernel's size, ceil_mode's extra included
                    attrs.insert(crate::conv::FULL_KERNEL_DIVISOR.to_string(), Attr::Int(1));
                }
                out.push(self.node(&n, &op[7..], vec![x], &y, attrs));
                self.q(&n, &y, 3, &mut out)?;
            }
            ("com.microsoft", "QLinearConcat") => {
                if n.inputs.len() < 5 || !(n.inputs.len() - 2).is_multiple_of(3) {
                    return Err(unsupported(
                        &n,
                        "expected Y_scale, Y_zero_point and (X, X_scale, X_zero_point) triples",
                    ));
                }
                let mut ins = Vec::new();
                for k in 0..(n.inputs.len() - 2) / 3 {
                    ins.push(self.dq(&n, 2 + 3 * k, None, &mut out)?);
                }
                let y = self.tmp(&n, "concat");
                let mut attrs = HashMap::new();
                attrs.insert("axis".to_string(), Attr::Int(n.int("axis", 0)?));
                out.push(self.node(&n, "Concat", ins, &y, attrs));
                self.q(&n, &y, 0, &mut out)?;
            }
            (_, op) => {
                return Err(unsupported(
                    &n,
                    format!(
                        "quantised operator {op} of domain {domain:?} (fhec reads {})",
                        QUANTISED_OPS.join(", ")
                    ),
                ))
            }
        }
        Ok(out)
    }

    fn tmp(&self, n: &Node, what: &str) -> String {
        format!("{}::{what}", n.outputs.first().map_or("", |s| s.as_str()))
    }

    fn node(&self, n: &Node, op: &str, inputs: Vec<String>, output: &str, attrs: HashMap<String, Attr>) -> Node {
        let base = if n.name.is_empty() {
            n.outputs.first().cloned().unwrap_or_default()
        } else {
            n.name.clone()
        };
        Node {
            name: format!("{base} ({} as {op})", n.op),
            op: op.to_string(),
            inputs,
            outputs: vec![output.to_string()],
            attrs,
        }
    }

    fn operand<'n>(&self, n: &'n Node, i: usize, what: &str) -> Result<&'n str, OnnxError> {
        n.input(i)
            .ok_or_else(|| unsupported(n, format!("missing {what} (operand {i})")))
    }

    /// `DequantizeLinear(operand i, operand i+1, operand i+2)`: the name of its float result.
    fn dq(&mut self, n: &Node, i: usize, axis: Option<i64>, out: &mut Vec<Node>) -> Result<String, OnnxError> {
        let x = self.operand(n, i, "a quantised operand")?.to_string();
        let s = self.operand(n, i + 1, "a scale")?.to_string();
        let mut ins = vec![x.clone(), s];
        if let Some(z) = n.input(i + 2) {
            ins.push(z.to_string());
        }
        let mut attrs = HashMap::new();
        if let Some(a) = axis {
            attrs.insert("axis".to_string(), Attr::Int(a));
        }
        let y = format!("{x}::dq::{}", self.tmp(n, "in"));
        out.push(self.node(n, "DequantizeLinear", ins, &y, attrs));
        Ok(y)
    }

    /// `QuantizeLinear(y, operand i, operand i+1)` into the node's output.
    fn q(&mut self, n: &Node, y: &str, i: usize, out: &mut Vec<Node>) -> Result<(), OnnxError> {
        let s = self.operand(n, i, "the output scale")?.to_string();
        let mut ins = vec![y.to_string(), s];
        if let Some(z) = n.input(i + 1) {
            ins.push(z.to_string());
        }
        let o = n.outputs.first().cloned().unwrap_or_default();
        out.push(self.node(n, "QuantizeLinear", ins, &o, HashMap::new()));
        Ok(())
    }

    /// The int32 bias `b` of a QLinearConv / QGemm, dequantised with the scale
    /// `alpha · scale(operand sa) · scale(operand sb)` and zero point 0.
    fn bias(
        &mut self,
        n: &Node,
        b: &str,
        sa: usize,
        sb: usize,
        alpha: f64,
        out: &mut Vec<Node>,
    ) -> Result<String, OnnxError> {
        let get = |c: &HashMap<String, ArrayD<f64>>, i: usize| -> Result<ArrayD<f64>, OnnxError> {
            n.input(i)
                .and_then(|name| c.get(name).cloned())
                .ok_or_else(|| unsupported(n, format!("operand {i} (a scale) must be an initializer")))
        };
        let (a, w) = (get(self.constants, sa)?, get(self.constants, sb)?);
        let s = broadcast(n, &a, &w, |x, y| alpha * x * y)?;
        if s.ndim() > 1 {
            return Err(unsupported(n, "scales of rank above 1"));
        }
        let name = format!("{b}::scale::{}", self.tmp(n, "bias"));
        self.constants.insert(name.clone(), s);
        self.dtypes.insert(name.clone(), DataType::Double as i32);
        let y = format!("{b}::dq::{}", self.tmp(n, "bias"));
        let mut attrs = HashMap::new();
        attrs.insert("axis".to_string(), Attr::Int(0));
        out.push(self.node(n, "DequantizeLinear", vec![b.to_string(), name], &y, attrs));
        Ok(y)
    }

    /// QONNX `Quant(x, scale, zeropt, bitwidth)` {signed, narrow, rounding_mode}.
    fn quant(&mut self, n: Node, out: &mut Vec<Node>) -> Result<(), OnnxError> {
        let c = |i: usize, what: &str| -> Result<ArrayD<f64>, OnnxError> {
            n.input(i)
                .and_then(|name| self.constants.get(name).cloned())
                .ok_or_else(|| unsupported(&n, format!("the {what} (operand {i}) must be a constant")))
        };
        let (scale, zero, bits) = (c(1, "scale")?, c(2, "zero point")?, c(3, "bit width")?);
        let b = match bits.iter().copied().collect::<Vec<f64>>()[..] {
            [b] if b.fract() == 0.0 && (1.0..=16.0).contains(&b) => b as u32,
            _ => return Err(unsupported(&n, "the bit width must be one integer from 1 to 16")),
        };
        let mode = n.string("rounding_mode")?.unwrap_or_else(|| "ROUND".into());
        if !mode.eq_ignore_ascii_case("ROUND") {
            return Err(unsupported(
                &n,
                format!("rounding_mode {mode} (fhec reads ROUND: to nearest, ties to even)"),
            ));
        }
        let (signed, narrow) = (n.int("signed", 1)? != 0, n.int("narrow", 0)? != 0);
        let (lo, hi) = if signed {
            (-(1i64 << (b - 1)) + i64::from(narrow), (1i64 << (b - 1)) - 1)
        } else {
            (0, (1i64 << b) - 1 - i64::from(narrow))
        };
        if lo > hi {
            return Err(unsupported(&n, "an empty integer range (1 bit, narrow)"));
        }
        if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) || zero.iter().any(|z| z.fract() != 0.0) {
            return Err(unsupported(
                &n,
                "scales must be positive and finite, zero points integers",
            ));
        }
        let x = self.operand(&n, 0, "the input")?.to_string();
        let y = n.outputs.first().cloned().unwrap_or_default();
        if let Some(v) = self.constants.get(&x).cloned() {
            // weights: folded
            let q = broadcast(&n, &v, &scale, |v, s| v / s)?;
            let q = broadcast(&n, &q, &zero, |q, z| {
                (q.round_ties_even() + z).clamp(lo as f64, hi as f64) - z
            })?;
            let r = broadcast(&n, &q, &scale, |q, s| q * s)?;
            self.constants.insert(y.clone(), r);
            self.dtypes.insert(y, DataType::Double as i32);
            return Ok(());
        }
        if scale.len() != 1 || zero.len() != 1 {
            return Err(unsupported(
                &n,
                "a Quant of a computed tensor must have one scale and zero point (per-channel activation quantisers are \
                 not supported)",
            ));
        }
        let (s0, z0) = (
            scale.iter().next().copied().unwrap_or(1.0),
            zero.iter().next().copied().unwrap_or(0.0),
        );
        let base = format!("{y}::quant");
        let (sn, zn, lon, hin) = (
            format!("{base}::s"),
            format!("{base}::z"),
            format!("{base}::lo"),
            format!("{base}::hi"),
        );
        let scalar = |v: f64| ArrayD::from_elem(ndarray::IxDyn(&[]), v);
        // the zero point's type sets QuantizeLinear's saturation: 16 bits hold every QONNX width here
        let ztype = if signed { DataType::Int16 } else { DataType::Uint16 };
        let zrange = if signed {
            i16::MIN as f64..=i16::MAX as f64
        } else {
            0.0..=u16::MAX as f64
        };
        if !zrange.contains(&z0) {
            return Err(unsupported(
                &n,
                format!("zero point {z0} outside the integers of {b} bits"),
            ));
        }
        // Q saturates to the zero point's 16-bit type, then the Clip to the bit width's integers
        // (QONNX: clip(round(x / scale + zeropt), min, max), min and max not shifted by zeropt)
        for (name, v, t) in [
            (&sn, s0, DataType::Double),
            (&zn, z0, ztype),
            (&lon, lo as f64, DataType::Double),
            (&hin, hi as f64, DataType::Double),
        ] {
            self.constants.insert(name.clone(), scalar(v));
            self.dtypes.insert(name.clone(), t as i32);
        }
        let (qn, cn) = (format!("{base}::q"), format!("{base}::c"));
        out.push(self.node(
            &n,
            "QuantizeLinear",
            vec![x, sn.clone(), zn.clone()],
            &qn,
            HashMap::new(),
        ));
        out.push(self.node(&n, "Clip", vec![qn, lon, hin], &cn, HashMap::new()));
        out.push(self.node(&n, "DequantizeLinear", vec![cn, sn, zn], &y, HashMap::new()));
        Ok(())
    }
}
