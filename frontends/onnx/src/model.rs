//! Reading an ONNX file: bounds and checks first (the file is outside data), then the graph in
//! topological order with the nodes that no output needs pruned (petgraph).

use std::collections::{HashMap, HashSet};

use ndarray::{ArrayD, IxDyn};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};
use prost::Message;

use crate::proto;
use crate::OnnxError;

/// Largest ONNX file read (bytes).
pub const MAX_FILE_BYTES: usize = 1 << 30;
/// Most nodes in a graph.
pub const MAX_NODES: usize = 100_000;
/// Most elements of one tensor (initializer or attribute): 512 MiB as f64.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 26;
/// Opsets of the default domain read.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=23;

/// An attribute value, typed.
#[derive(Clone, Debug)]
pub(crate) enum Attr {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Str(String),
    Tensor(ArrayD<f64>),
    Other,
}

/// One node: op, operand and result names, attributes.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub name: String,
    pub op: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, Attr>,
}

impl Node {
    /// Names the node in errors: `Gemm node "fc1"`.
    pub fn what(&self) -> String {
        if self.name.is_empty() {
            format!(
                "{} node (output {:?})",
                self.op,
                self.outputs.first().map_or("", |s| s.as_str())
            )
        } else {
            format!("{} node {:?}", self.op, self.name)
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(_) => Err(OnnxError::Format(format!(
                "{}: attribute `{name}` is not an integer",
                self.what()
            ))),
        }
    }

    pub fn float(&self, name: &str, default: f64) -> Result<f64, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(_) => Err(OnnxError::Format(format!(
                "{}: attribute `{name}` is not a float",
                self.what()
            ))),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(_) => Err(OnnxError::Format(format!(
                "{}: attribute `{name}` is not a list of integers",
                self.what()
            ))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Str(v)) => Ok(Some(v.clone())),
            Some(_) => Err(OnnxError::Format(format!(
                "{}: attribute `{name}` is not a string",
                self.what()
            ))),
        }
    }

    /// Operand `i`, absent when missing or empty (ONNX marks an omitted optional input with "").
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs.get(i).map(|s| s.as_str()).filter(|s| !s.is_empty())
    }
}

/// A graph input: its name and its dimensions (`None`: symbolic, the batch).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphInput {
    pub name: String,
    pub dims: Vec<Option<usize>>,
}

/// An ONNX network, read and checked: nodes in topological order (those no output needs removed),
/// constant tensors (initializers) as f64.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    pub(crate) nodes: Vec<Node>,
    pub(crate) constants: HashMap<String, ArrayD<f64>>,
    /// The ONNX element type of each constant (initializers and Constant nodes' values): the
    /// saturation range of a QuantizeLinear comes from its zero point's type.
    pub(crate) dtypes: HashMap<String, i32>,
    pub(crate) inputs: Vec<GraphInput>,
    pub(crate) outputs: Vec<String>,
    pub(crate) opset: i64,
}

fn format_err(m: impl Into<String>) -> OnnxError {
    OnnxError::Format(m.into())
}

/// An ONNX tensor as f64 (float, double and integer types), checked: dimensions, element count,
/// data length, no external data.
pub(crate) fn tensor(t: &proto::TensorProto) -> Result<ArrayD<f64>, OnnxError> {
    use proto::tensor_proto::{DataLocation, DataType};
    let name = t.name.clone().unwrap_or_default();
    if t.data_location == Some(DataLocation::External as i32) {
        return Err(format_err(format!(
            "tensor {name:?} keeps its data in an external file: save the model with its weights inside \
             (onnx.save_model(model, path, save_as_external_data=False))"
        )));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut count: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| format_err(format!("tensor {name:?} has a negative dimension {d}")))?;
        count = count
            .checked_mul(d)
            .filter(|&c| c <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| format_err(format!("tensor {name:?} has more than {MAX_TENSOR_ELEMENTS} elements")))?;
        dims.push(d);
    }
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let dt = t.data_type.unwrap_or(0);
    let from_raw = |width: usize, f: &dyn Fn(&[u8]) -> f64| -> Result<Vec<f64>, OnnxError> {
        let r = raw.expect("raw data present");
        if r.len() != count * width {
            return Err(format_err(format!(
                "tensor {name:?}: {} bytes of raw data for {count} elements of {width} bytes",
                r.len()
            )));
        }
        Ok(r.chunks_exact(width).map(f).collect())
    };
    let values: Vec<f64> = match DataType::try_from(dt) {
        Ok(DataType::Float) if raw.is_some() => {
            from_raw(4, &|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)?
        }
        Ok(DataType::Float) => t.float_data.iter().map(|&v| v as f64).collect(),
        Ok(DataType::Double) if raw.is_some() => from_raw(8, &|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))?,
        Ok(DataType::Double) => t.double_data.clone(),
        Ok(DataType::Int64) if raw.is_some() => {
            from_raw(8, &|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)?
        }
        Ok(DataType::Int64) => t.int64_data.iter().map(|&v| v as f64).collect(),
        Ok(DataType::Int32) if raw.is_some() => {
            from_raw(4, &|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)?
        }
        Ok(
            DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Uint8 | DataType::Uint16 | DataType::Bool,
        ) if raw.is_none() => t.int32_data.iter().map(|&v| v as f64).collect(),
        Ok(DataType::Int8) => from_raw(1, &|c| c[0] as i8 as f64)?,
        Ok(DataType::Int16) => from_raw(2, &|c| i16::from_le_bytes([c[0], c[1]]) as f64)?,
        Ok(DataType::Uint16) => from_raw(2, &|c| u16::from_le_bytes([c[0], c[1]]) as f64)?,
        Ok(DataType::Uint8) => from_raw(1, &|c| c[0] as f64)?,
        Ok(DataType::Bool) => from_raw(1, &|c| (c[0] != 0) as u8 as f64)?,
        Ok(d @ (DataType::Uint4 | DataType::Int4)) => nibbles(&name, t, raw, count, d == DataType::Int4)?,
        other => {
            return Err(OnnxError::Unsupported(format!(
                "tensor {name:?} has element type {}: fhec reads float, double and integer tensors",
                other.map_or_else(|_| dt.to_string(), |d| d.as_str_name().to_string())
            )))
        }
    };
    if values.len() != count {
        return Err(format_err(format!(
            "tensor {name:?} has {} values for dimensions {dims:?}",
            values.len()
        )));
    }
    ArrayD::from_shape_vec(IxDyn(&dims), values).map_err(|e| format_err(format!("tensor {name:?}: {e}")))
}

/// The values of a UINT4 / INT4 tensor: two per byte of `raw_data`, or two per `int32_data` entry
/// (the first in the 4 low bits, as ONNX packs them); an odd count leaves a high nibble of padding,
/// which must be 0. INT4 is sign-extended.
fn nibbles(
    name: &str,
    t: &proto::TensorProto,
    raw: Option<&[u8]>,
    count: usize,
    signed: bool,
) -> Result<Vec<f64>, OnnxError> {
    let bytes: Vec<u8> = match raw {
        Some(r) => r.to_vec(),
        None => t
            .int32_data
            .iter()
            .map(|&v| {
                u8::try_from(v).map_err(|_| {
                    format_err(format!(
                        "tensor {name:?}: int32_data entry {v} is not two packed 4-bit values"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let need = count.div_ceil(2);
    if bytes.len() != need {
        return Err(format_err(format!(
            "tensor {name:?}: {} bytes of packed 4-bit data for {count} elements (expected {need})",
            bytes.len()
        )));
    }
    if count % 2 == 1 && bytes[need - 1] >> 4 != 0 {
        return Err(format_err(format!(
            "tensor {name:?}: the padding nibble after its last 4-bit value is not 0"
        )));
    }
    let value = |n: u8| {
        if signed && n >= 8 {
            f64::from(n) - 16.0
        } else {
            f64::from(n)
        }
    };
    Ok((0..count)
        .map(|i| value((bytes[i / 2] >> (4 * (i % 2))) & 0xF))
        .collect())
}

fn attr(a: &proto::AttributeProto) -> Result<Attr, OnnxError> {
    use proto::attribute_proto::AttributeType as T;
    let ty = a.r#type.and_then(|t| T::try_from(t).ok());
    Ok(match ty {
        Some(T::Int) => Attr::Int(a.i.unwrap_or(0)),
        Some(T::Float) => Attr::Float(a.f.unwrap_or(0.0) as f64),
        Some(T::Ints) => Attr::Ints(a.ints.clone()),
        Some(T::Floats) => Attr::Floats(a.floats.iter().map(|&f| f as f64).collect()),
        Some(T::String) => Attr::Str(String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned()),
        Some(T::Tensor) => match &a.t {
            Some(t) => Attr::Tensor(tensor(t)?),
            None => return Err(format_err("a tensor attribute without its tensor")),
        },
        _ => Attr::Other,
    })
}

impl OnnxModel {
    /// Reads an ONNX file (`ModelProto` bytes). Checks sizes before allocating from them, refuses
    /// external data, other domains than the default one (and `ai.onnx.ml`, whose tree ensembles
    /// `fhec-trees` reads) and opsets outside [`OPSETS`]; orders the nodes topologically (a cycle is
    /// an error) and drops the nodes that no graph output needs.
    pub fn from_bytes(bytes: &[u8]) -> Result<OnnxModel, OnnxError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(format_err(format!(
                "the ONNX file has {} bytes, more than the {MAX_FILE_BYTES} fhec reads",
                bytes.len()
            )));
        }
        let m = proto::ModelProto::decode(bytes).map_err(|e| format_err(format!("not an ONNX model: {e}")))?;
        let mut opset = None;
        for o in &m.opset_import {
            match o.domain.as_deref().unwrap_or("") {
                "" | "ai.onnx" => opset = o.version,
                _ => {}
            }
        }
        let opset = opset.ok_or_else(|| format_err("the model imports no opset of the default ONNX domain"))?;
        if !OPSETS.contains(&opset) {
            return Err(OnnxError::Unsupported(format!(
                "opset {opset} of the default domain: fhec reads opsets {} to {} (re-export the model)",
                OPSETS.start(),
                OPSETS.end()
            )));
        }
        let g = m.graph.ok_or_else(|| format_err("the model has no graph"))?;
        if g.node.len() > MAX_NODES {
            return Err(format_err(format!(
                "the graph has {} nodes, more than the {MAX_NODES} fhec reads",
                g.node.len()
            )));
        }
        let mut constants = HashMap::new();
        let mut dtypes = HashMap::new();
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            dtypes.insert(name.clone(), t.data_type.unwrap_or(0));
            constants.insert(name, tensor(t)?);
        }
        for n in g.node.iter().filter(|n| n.op_type.as_deref() == Some("Constant")) {
            let value = n.attribute.iter().find(|a| a.name.as_deref() == Some("value"));
            if let (Some(t), Some(out)) = (value.and_then(|a| a.t.as_ref()), n.output.first()) {
                dtypes.insert(out.clone(), t.data_type.unwrap_or(0));
            }
        }
        let mut inputs = Vec::new();
        for vi in &g.input {
            let name = vi.name.clone().unwrap_or_default();
            if constants.contains_key(&name) {
                continue; // an initializer listed as an input (older exporters)
            }
            let Some(proto::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return Err(OnnxError::Unsupported(format!("graph input {name:?} is not a tensor")));
            };
            let shape = t
                .shape
                .as_ref()
                .ok_or_else(|| OnnxError::Unsupported(format!("graph input {name:?} has no shape (unknown rank)")))?;
            let dims = shape
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => Some(v as usize),
                    _ => None,
                })
                .collect();
            inputs.push(GraphInput { name, dims });
        }
        let outputs: Vec<String> = g.output.iter().map(|o| o.name.clone().unwrap_or_default()).collect();
        let mut nodes = Vec::with_capacity(g.node.len());
        for n in &g.node {
            let domain = n.domain.as_deref().unwrap_or("");
            let op = n.op_type.clone().unwrap_or_default();
            if crate::qop::handles(domain, &op) {
                // quantised operators (QOperator format, QONNX): their QDQ form
                let mut attrs = HashMap::new();
                for a in &n.attribute {
                    attrs.insert(a.name.clone().unwrap_or_default(), attr(a)?);
                }
                let node = Node {
                    name: n.name.clone().unwrap_or_default(),
                    op,
                    inputs: n.input.clone(),
                    outputs: n.output.clone(),
                    attrs,
                };
                let mut rw = crate::qop::Rewriter {
                    constants: &mut constants,
                    dtypes: &mut dtypes,
                };
                nodes.extend(rw.rewrite(domain, node)?);
                continue;
            }
            if !matches!(domain, "" | "ai.onnx") {
                return Err(OnnxError::Unsupported(format!(
                    "{op} node {:?} is in domain {domain:?}: fhec's network import reads the default ONNX domain, \
                     onnxruntime's quantised operators (com.microsoft QLinear*, QGemm) and QONNX Quant nodes \
                     (tree ensembles of ai.onnx.ml: fhec.sklearn / fhec-trees)",
                    n.name.as_deref().unwrap_or("")
                )));
            }
            let mut attrs = HashMap::new();
            for a in &n.attribute {
                attrs.insert(a.name.clone().unwrap_or_default(), attr(a)?);
            }
            nodes.push(Node {
                name: n.name.clone().unwrap_or_default(),
                op,
                inputs: n.input.clone(),
                outputs: n.output.clone(),
                attrs,
            });
        }
        let nodes = order(nodes, &constants, &inputs, &outputs)?;
        Ok(OnnxModel {
            nodes,
            constants,
            dtypes,
            inputs,
            outputs,
            opset,
        })
    }

    /// The graph's inputs (initializers excluded).
    pub fn inputs(&self) -> &[GraphInput] {
        &self.inputs
    }

    /// The graph's output names.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// The default domain's opset.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The ops of the graph, in topological order.
    pub fn ops(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.op.as_str()).collect()
    }

    /// The graph in Graphviz DOT (nodes in topological order, edges by tensor).
    pub fn to_dot(&self) -> String {
        let mut g: DiGraph<String, String> = DiGraph::new();
        let mut producer: HashMap<&str, NodeIndex> = HashMap::new();
        for i in &self.inputs {
            let ix = g.add_node(format!("input {}", i.name));
            producer.insert(&i.name, ix);
        }
        for n in &self.nodes {
            let ix = g.add_node(if n.name.is_empty() {
                n.op.clone()
            } else {
                format!("{} {}", n.op, n.name)
            });
            for i in n.inputs.iter().filter(|i| !i.is_empty()) {
                if let Some(&p) = producer.get(i.as_str()) {
                    g.add_edge(p, ix, i.clone());
                }
            }
            for o in &n.outputs {
                producer.insert(o, ix);
            }
        }
        format!("{}", petgraph::dot::Dot::new(&g))
    }
}

/// Orders `nodes` topologically and keeps those some output depends on. Every operand must be a
/// graph input, a constant or another node's result.
fn order(
    nodes: Vec<Node>,
    constants: &HashMap<String, ArrayD<f64>>,
    inputs: &[GraphInput],
    outputs: &[String],
) -> Result<Vec<Node>, OnnxError> {
    let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(nodes.len(), nodes.len());
    let ix: Vec<NodeIndex> = (0..nodes.len()).map(|i| g.add_node(i)).collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    // the second and later outputs of a node (Dropout's mask, BatchNormalization's training statistics)
    // are not computed: reading one is an error, not a missing value at evaluation
    let mut secondary: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for (k, o) in n.outputs.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
            if producer.contains_key(o.as_str()) || secondary.contains_key(o.as_str()) {
                return Err(format_err(format!("tensor {o:?} is produced by two nodes")));
            }
            if k == 0 {
                producer.insert(o, i);
            } else {
                secondary.insert(o, i);
            }
        }
    }
    let unsupported_output = |name: &str, i: usize| {
        OnnxError::Unsupported(format!(
            "{name:?} is used, a secondary output of {}: fhec computes the first output of a node only",
            nodes[i].what()
        ))
    };
    let known: HashSet<&str> = inputs
        .iter()
        .map(|i| i.name.as_str())
        .chain(constants.keys().map(|k| k.as_str()))
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        for name in n.inputs.iter().filter(|s| !s.is_empty()) {
            match producer.get(name.as_str()) {
                Some(&p) => {
                    g.add_edge(ix[p], ix[i], ());
                }
                None if known.contains(name.as_str()) => {}
                None if secondary.contains_key(name.as_str()) => {
                    return Err(unsupported_output(name, secondary[name.as_str()]))
                }
                None => {
                    return Err(format_err(format!(
                        "{}: operand {name:?} is neither a graph input, a constant nor a node's result",
                        n.what()
                    )))
                }
            }
        }
    }
    let sorted = petgraph::algo::toposort(&g, None).map_err(|c| {
        format_err(format!(
            "the graph has a cycle through {}: ONNX graphs are acyclic",
            nodes[g[c.node_id()]].what()
        ))
    })?;
    // nodes some output depends on: reachable backwards from the outputs' producers
    let mut needed = vec![false; nodes.len()];
    let rev = Reversed(&g);
    for o in outputs {
        match producer.get(o.as_str()) {
            Some(&p) => {
                let mut dfs = Dfs::new(rev, ix[p]);
                while let Some(v) = dfs.next(rev) {
                    needed[g[v]] = true;
                }
            }
            None if known.contains(o.as_str()) => {}
            None if secondary.contains_key(o.as_str()) => return Err(unsupported_output(o, secondary[o.as_str()])),
            None => return Err(format_err(format!("graph output {o:?} is not computed by any node"))),
        }
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(sorted
        .into_iter()
        .map(|v| g[v])
        .filter(|&i| needed[i])
        .map(|i| slots[i].take().expect("each node once"))
        .collect())
}
