//! The clear semantics of every op, including edge cases: negative values, maximal widths, broadcasting,
//! empty axes, zero-sized dimensions, and values that do not fit their declared type.

#![allow(clippy::cloned_ref_to_slice_refs)] // `&[x.clone()]` reads best in these tables of cases

use fhec_ir::{eval, parse_module, verify, Tensor};
use ndarray::{arr0, array, ArrayD, IxDyn};

/// Parses, verifies and evaluates `src` on `inputs`.
fn run(src: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
    let m = parse_module(src).map_err(|e| e.render("test.fhe", src))?;
    let v = verify(&m).map_err(|es| es.iter().map(|e| e.render("test.fhe", src)).collect::<String>())?;
    eval(&v, inputs).map_err(|e| e.render("test.fhe", src))
}

/// A function applying one op to its arguments: `types` are the argument types.
fn prog(op: &str, attrs: &str, types: &[&str], out: &str) -> String {
    let args: Vec<String> = types.iter().enumerate().map(|(i, t)| format!("%a{i}: {t}")).collect();
    let names: Vec<String> = (0..types.len()).map(|i| format!("%a{i}")).collect();
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(" {{{attrs}}}")
    };
    format!(
        "func.func @main({}) -> {out} {{\n  %r = \"{op}\"({}){attrs} : ({}) -> {out}\n  \"func.return\"(%r) : ({out}) -> ()\n}}\n",
        args.join(", "),
        names.join(", "),
        types.join(", ")
    )
}

fn t<D: ndarray::Dimension>(a: ndarray::Array<i64, D>) -> Tensor {
    a.into_dyn()
}

fn one(op: &str, attrs: &str, types: &[&str], out: &str, inputs: &[Tensor]) -> Tensor {
    let src = prog(op, attrs, types, out);
    match run(&src, inputs) {
        Ok(mut r) => r.remove(0),
        Err(e) => panic!("{op} failed:\n{e}\n{src}"),
    }
}

fn fails(op: &str, attrs: &str, types: &[&str], out: &str, inputs: &[Tensor]) -> String {
    let src = prog(op, attrs, types, out);
    run(&src, inputs).expect_err("expected an error")
}

#[test]
fn add_broadcasts_and_mixes_signs() {
    let r = one(
        "fhe.add",
        "",
        &["tensor<2x1x!fhe.eint<3>>", "tensor<3xi4>"],
        "tensor<2x3x!fhe.esint<5>>",
        &[t(array![[0], [7]]), t(array![-8, 0, 7])],
    );
    assert_eq!(r, t(array![[-8, 0, 7], [-1, 7, 14]]));
}

#[test]
fn add_at_max_width() {
    let max = (1i64 << 32) - 1;
    let r = one(
        "fhe.add",
        "",
        &["!fhe.eint<32>", "!fhe.eint<31>"],
        "!fhe.eint<32>",
        &[t(arr0(max - 5)), t(arr0(5))],
    );
    assert_eq!(r, t(arr0(max)));
    let e = fails(
        "fhe.add",
        "",
        &["!fhe.eint<32>", "!fhe.eint<31>"],
        "!fhe.eint<32>",
        &[t(arr0(max)), t(arr0(1))],
    );
    assert!(e.contains(&format!("fhe.add produced {}", max + 1)), "{e}");
}

#[test]
fn overflow_names_op_value_and_index() {
    let e = fails(
        "fhe.add",
        "",
        &["tensor<2x!fhe.eint<2>>", "tensor<2x!fhe.eint<2>>"],
        "tensor<2x!fhe.eint<2>>",
        &[t(array![1, 3]), t(array![1, 3])],
    );
    assert!(
        e.contains("fhe.add produced 6 at index [1], which does not fit !fhe.eint<2> (0 ..= 3)"),
        "{e}"
    );
    assert!(e.contains("test.fhe:2:"), "{e}");
}

#[test]
fn sub_and_neg_go_negative() {
    let r = one(
        "fhe.sub",
        "",
        &["tensor<3x!fhe.eint<3>>", "tensor<3xui3>"],
        "tensor<3x!fhe.esint<4>>",
        &[t(array![0, 7, 3]), t(array![7, 0, 3])],
    );
    assert_eq!(r, t(array![-7, 7, 0]));
    let r = one(
        "fhe.neg",
        "",
        &["tensor<3x!fhe.esint<4>>"],
        "tensor<3x!fhe.esint<5>>",
        &[t(array![-8, 0, 7])],
    );
    assert_eq!(r, t(array![8, 0, -7]));
    let e = fails(
        "fhe.neg",
        "",
        &["tensor<1x!fhe.esint<4>>"],
        "tensor<1x!fhe.esint<4>>",
        &[t(array![-8])],
    );
    assert!(e.contains("produced 8"), "{e}");
}

#[test]
fn mul_by_clear_either_side() {
    let r = one(
        "fhe.mul",
        "",
        &["tensor<3xi4>", "tensor<2x3x!fhe.eint<4>>"],
        "tensor<2x3x!fhe.esint<8>>",
        &[t(array![-8, 0, 7]), t(array![[15, 15, 15], [1, 2, 3]])],
    );
    assert_eq!(r, t(array![[-120, 0, 105], [-8, 0, 21]]));
}

#[test]
fn mul_eint_signed() {
    let r = one(
        "fhe.mul_eint",
        "",
        &["tensor<3x!fhe.esint<3>>", "tensor<3x!fhe.eint<2>>"],
        "tensor<3x!fhe.esint<5>>",
        &[t(array![-4, 3, -1]), t(array![3, 3, 0])],
    );
    assert_eq!(r, t(array![-12, 9, 0]));
}

#[test]
fn matmul_numpy_rules() {
    let w = "tensor<3x2xi3>";
    let wv = t(array![[1, -1], [2, 0], [-4, 3]]);
    let r = one(
        "fhe.matmul",
        "",
        &["tensor<2x3x!fhe.eint<2>>", w],
        "tensor<2x2x!fhe.esint<8>>",
        &[t(array![[1, 2, 3], [0, 0, 1]]), wv.clone()],
    );
    assert_eq!(r, t(array![[-7, 8], [-4, 3]]));
    // rank-1 on the left
    let r = one(
        "fhe.matmul",
        "",
        &["tensor<3x!fhe.eint<2>>", w],
        "tensor<2x!fhe.esint<8>>",
        &[t(array![1, 2, 3]), wv.clone()],
    );
    assert_eq!(r, t(array![-7, 8]));
    // clear on the left, rank-1 on the right
    let r = one(
        "fhe.matmul",
        "",
        &["tensor<2x3xi3>", "tensor<3x!fhe.eint<2>>"],
        "tensor<2x!fhe.esint<8>>",
        &[t(array![[1, 2, 3], [-1, 0, 1]]), t(array![1, 1, 2])],
    );
    assert_eq!(r, t(array![9, 1]));
    // batch dimensions broadcast
    let r = one(
        "fhe.matmul",
        "",
        &["tensor<2x1x1x2x!fhe.eint<2>>", "tensor<3x2x1xi3>"],
        "tensor<2x3x1x1x!fhe.esint<8>>",
        &[
            t(array![[[[1, 2]]], [[[3, 0]]]]),
            t(array![[[1], [1]], [[2], [0]], [[0], [-1]]]),
        ],
    );
    assert_eq!(r.shape(), &[2, 3, 1, 1]);
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![3, 2, -2, 3, 6, 0]);
    // empty contraction gives zeros
    let r = one(
        "fhe.matmul",
        "",
        &["tensor<2x0x!fhe.eint<2>>", "tensor<0x2xi3>"],
        "tensor<2x2x!fhe.esint<2>>",
        &[ArrayD::zeros(IxDyn(&[2, 0])), ArrayD::zeros(IxDyn(&[0, 2]))],
    );
    assert_eq!(r, ArrayD::zeros(IxDyn(&[2, 2])));
}

#[test]
fn dot_gives_a_scalar() {
    let r = one(
        "fhe.dot",
        "",
        &["tensor<3x!fhe.esint<4>>", "tensor<3xi4>"],
        "!fhe.esint<9>",
        &[t(array![-8, 7, 1]), t(array![-8, -8, 7])],
    );
    assert_eq!(r, t(arr0(64 - 56 + 7)));
}

#[test]
fn sum_axes_keep_dims_and_empty() {
    let x = t(array![[1, 2, 3], [4, 5, 6]]);
    let ty = "tensor<2x3x!fhe.eint<3>>";
    assert_eq!(
        one(
            "fhe.sum",
            "axes = [1], keep_dims = true",
            &[ty],
            "tensor<2x1x!fhe.eint<5>>",
            &[x.clone()]
        ),
        t(array![[6], [15]])
    );
    assert_eq!(
        one("fhe.sum", "axes = [-2]", &[ty], "tensor<3x!fhe.eint<4>>", &[x.clone()]),
        t(array![5, 7, 9])
    );
    assert_eq!(one("fhe.sum", "", &[ty], "!fhe.eint<5>", &[x.clone()]), t(arr0(21)));
    assert_eq!(
        one("fhe.sum", "axes = []", &[ty], "!fhe.eint<5>", &[x.clone()]),
        t(arr0(21))
    );
    assert_eq!(
        one("fhe.sum", "keep_dims = true", &[ty], "tensor<1x1x!fhe.eint<5>>", &[x]),
        t(array![[21]])
    );
    // a sum over a zero-sized axis is 0
    let r = one(
        "fhe.sum",
        "axes = [1]",
        &["tensor<2x0x!fhe.esint<3>>"],
        "tensor<2x!fhe.esint<1>>",
        &[ArrayD::zeros(IxDyn(&[2, 0]))],
    );
    assert_eq!(r, t(array![0, 0]));
}

#[test]
fn conv2d_with_bias_stride_pads_dilation_groups() {
    // 1x1x3x3 input, one 2x2 filter, no padding
    let x = t(ndarray::Array::from_shape_vec((1, 1, 3, 3), (1..=9).collect()).unwrap());
    let w = t(ndarray::Array::from_shape_vec((1, 1, 2, 2), vec![1, 0, 0, -1]).unwrap());
    let r = one(
        "fhe.conv2d",
        "",
        &["tensor<1x1x3x3x!fhe.eint<4>>", "tensor<1x1x2x2xi2>"],
        "tensor<1x1x2x2x!fhe.esint<6>>",
        &[x.clone(), w.clone()],
    );
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![-4, -4, -4, -4]);
    // bias, stride 2, padding 1 on every side
    let r = one(
        "fhe.conv2d",
        "pads = [1, 1, 1, 1], strides = [2, 2]",
        &["tensor<1x1x3x3x!fhe.eint<4>>", "tensor<1x1x2x2xi2>", "tensor<1xi4>"],
        "tensor<1x1x2x2x!fhe.esint<6>>",
        &[x.clone(), w.clone(), t(array![3])],
    );
    // each window: tap (0,0) weight 1, tap (1,1) weight -1, padding counts 0; plus the bias 3
    assert_eq!(
        r.iter().copied().collect::<Vec<_>>(),
        vec![3 - 1, 3 - 3, 3 - 7, 3 + 5 - 9]
    );
    // dilation 2: one output, taps (0,0) and (2,2)
    let r = one(
        "fhe.conv2d",
        "dilations = [2, 2]",
        &["tensor<1x1x3x3x!fhe.eint<4>>", "tensor<1x1x2x2xi2>"],
        "tensor<1x1x1x1x!fhe.esint<6>>",
        &[x, w],
    );
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![1 - 9]);
    // two groups: each filter sees its own channel
    let x = t(ndarray::Array::from_shape_vec((1, 2, 1, 1), vec![5, 7]).unwrap());
    let w = t(ndarray::Array::from_shape_vec((2, 1, 1, 1), vec![2, -1]).unwrap());
    let r = one(
        "fhe.conv2d",
        "group = 2",
        &["tensor<1x2x1x1x!fhe.eint<3>>", "tensor<2x1x1x1xi3>"],
        "tensor<1x2x1x1x!fhe.esint<6>>",
        &[x, w],
    );
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![10, -7]);
}

#[test]
fn avgpool_floors_and_counts_padding() {
    let x = t(ndarray::Array::from_shape_vec((1, 1, 2, 2), vec![-3, 0, 0, 0]).unwrap());
    let r = one(
        "fhe.avgpool2d",
        "kernel_shape = [2, 2]",
        &["tensor<1x1x2x2x!fhe.esint<3>>"],
        "tensor<1x1x1x1x!fhe.esint<3>>",
        &[x],
    );
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![-1], "floor(-3/4) = -1");
    let x = t(ndarray::Array::from_shape_vec((1, 1, 2, 2), vec![7, 7, 7, 6]).unwrap());
    let r = one(
        "fhe.avgpool2d",
        "kernel_shape = [2, 2], pads = [1, 1, 0, 0], strides = [2, 2]",
        &["tensor<1x1x2x2x!fhe.eint<3>>"],
        "tensor<1x1x1x1x!fhe.eint<3>>",
        &[x],
    );
    assert_eq!(
        r.iter().copied().collect::<Vec<_>>(),
        vec![1],
        "window has 3 pads and 7: floor(7/4)"
    );
}

#[test]
fn maxpool_ignores_padding() {
    let x = t(ndarray::Array::from_shape_vec((1, 1, 2, 2), vec![-3, -5, -8, -1]).unwrap());
    let r = one(
        "fhe.maxpool2d",
        "kernel_shape = [2, 2], pads = [1, 1, 1, 1], strides = [2, 2]",
        &["tensor<1x1x2x2x!fhe.esint<4>>"],
        "tensor<1x1x2x2x!fhe.esint<4>>",
        &[x],
    );
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![-3, -5, -8, -1]);
}

#[test]
fn lut_indexes_signed_in_twos_complement_order() {
    let table = "table = dense<[0, 1, 2, 3, -4, -3, -2, -1]> : tensor<8xi4>";
    let r = one(
        "fhe.lut",
        table,
        &["tensor<4x!fhe.esint<3>>"],
        "tensor<4x!fhe.esint<3>>",
        &[t(array![-4, -1, 0, 3])],
    );
    assert_eq!(r, t(array![-4, -1, 0, 3]), "identity table in two's complement order");
    let r = one(
        "fhe.lut",
        "table = dense<[9, 8, 7, 6]> : tensor<4xui4>",
        &["tensor<2x2x!fhe.eint<2>>"],
        "tensor<2x2x!fhe.eint<4>>",
        &[t(array![[0, 1], [2, 3]])],
    );
    assert_eq!(r, t(array![[9, 8], [7, 6]]));
}

#[test]
fn mapped_and_multi_lut() {
    let r = one(
        "fhe.mapped_lut",
        "map = dense<[[0, 1], [1, 0]]> : tensor<2x2xui1>, tables = dense<[[0, 1], [1, 0]]> : tensor<2x2xui1>",
        &["tensor<2x2x!fhe.eint<1>>"],
        "tensor<2x2x!fhe.eint<1>>",
        &[t(array![[0, 0], [1, 1]])],
    );
    assert_eq!(r, t(array![[0, 1], [0, 1]]));
    let r = one(
        "fhe.multi_lut",
        "tables = dense<[[0, 1, 2, 3], [3, 2, 1, 0], [0, 0, 0, -1]]> : tensor<3x4xi3>",
        &["tensor<2x!fhe.eint<2>>"],
        "tensor<2x3x!fhe.esint<3>>",
        &[t(array![0, 3])],
    );
    assert_eq!(r, t(array![[0, 3, 0], [3, 0, -1]]));
}

#[test]
fn round_half_up_and_truncate_floor() {
    let xs: Vec<i64> = (-8..8).collect();
    let x = t(ndarray::Array::from_vec(xs.clone()));
    let r = one(
        "fhe.round",
        "lsbs = 2",
        &["tensor<16x!fhe.esint<4>>"],
        "tensor<16x!fhe.esint<3>>",
        &[x.clone()],
    );
    let want: Vec<i64> = xs.iter().map(|&v| ((v as f64) / 4.0 + 0.5).floor() as i64).collect();
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), want);
    assert_eq!(r[[16 - 8 - 6]], -1, "-6/4 = -1.5 rounds to -1");
    let r = one(
        "fhe.truncate",
        "lsbs = 2",
        &["tensor<16x!fhe.esint<4>>"],
        "tensor<16x!fhe.esint<2>>",
        &[x],
    );
    let want: Vec<i64> = xs.iter().map(|&v| v.div_euclid(4)).collect();
    assert_eq!(r.iter().copied().collect::<Vec<_>>(), want);
    // the largest unsigned values round up past the w - lsbs bits
    let e = fails(
        "fhe.round",
        "lsbs = 2",
        &["tensor<1x!fhe.eint<4>>"],
        "tensor<1x!fhe.eint<2>>",
        &[t(array![15])],
    );
    assert!(e.contains("fhe.round produced 4"), "{e}");
    let r = one(
        "fhe.round",
        "lsbs = 2",
        &["tensor<1x!fhe.eint<4>>"],
        "tensor<1x!fhe.eint<3>>",
        &[t(array![15])],
    );
    assert_eq!(r, t(array![4]));
}

#[test]
fn sign_casts_keep_values() {
    let r = one(
        "fhe.to_signed",
        "",
        &["tensor<2x!fhe.eint<4>>"],
        "tensor<2x!fhe.esint<4>>",
        &[t(array![0, 7])],
    );
    assert_eq!(r, t(array![0, 7]));
    let e = fails(
        "fhe.to_signed",
        "",
        &["tensor<2x!fhe.eint<4>>"],
        "tensor<2x!fhe.esint<4>>",
        &[t(array![0, 8])],
    );
    assert!(e.contains("fhe.to_signed produced 8"), "{e}");
    let e = fails(
        "fhe.to_unsigned",
        "",
        &["tensor<1x!fhe.esint<4>>"],
        "tensor<1x!fhe.eint<4>>",
        &[t(array![-1])],
    );
    assert!(e.contains("produced -1"), "{e}");
}

#[test]
fn shape_ops() {
    let x = t(array![[1, 2, 3], [4, 5, 6]]);
    let ty = "tensor<2x3x!fhe.eint<3>>";
    assert_eq!(
        one("fhe.reshape", "", &[ty], "tensor<3x2x!fhe.eint<3>>", &[x.clone()]),
        t(array![[1, 2], [3, 4], [5, 6]])
    );
    assert_eq!(
        one("fhe.transpose", "", &[ty], "tensor<3x2x!fhe.eint<3>>", &[x.clone()]),
        t(array![[1, 4], [2, 5], [3, 6]])
    );
    assert_eq!(
        one(
            "fhe.broadcast",
            "",
            &["tensor<2x1x!fhe.eint<3>>"],
            "tensor<2x2x!fhe.eint<3>>",
            &[t(array![[1], [2]])]
        ),
        t(array![[1, 1], [2, 2]])
    );
    assert_eq!(
        one(
            "fhe.concat",
            "axis = -1",
            &[ty, "tensor<2x1x!fhe.eint<3>>"],
            "tensor<2x4x!fhe.eint<3>>",
            &[x.clone(), t(array![[0], [7]])]
        ),
        t(array![[1, 2, 3, 0], [4, 5, 6, 7]])
    );
    assert_eq!(
        one(
            "fhe.slice",
            "ends = [2, 3], starts = [1, 0], steps = [1, 2]",
            &[ty],
            "tensor<1x2x!fhe.eint<3>>",
            &[x.clone()]
        ),
        t(array![[4, 6]])
    );
    assert_eq!(
        one(
            "fhe.slice",
            "ends = [2, 1], starts = [0, 1]",
            &[ty],
            "tensor<2x0x!fhe.eint<3>>",
            &[x.clone()]
        )
        .shape(),
        &[2, 0]
    );
    assert_eq!(
        one(
            "fhe.gather",
            "axis = 1, indices = dense<[[2, 2], [0, 1]]> : tensor<2x2xi64>",
            &[ty],
            "tensor<2x2x2x!fhe.eint<3>>",
            &[x.clone()]
        ),
        t(array![[[3, 3], [1, 2]], [[6, 6], [4, 5]]])
    );
    let p3 = one(
        "fhe.transpose",
        "perm = [2, 0, 1]",
        &["tensor<1x2x3x!fhe.eint<3>>"],
        "tensor<3x1x2x!fhe.eint<3>>",
        &[t(array![[[1, 2, 3], [4, 5, 6]]])],
    );
    assert_eq!(p3, t(array![[[1, 4]], [[2, 5]], [[3, 6]]]));
    // shape ops work on clear tensors too
    assert_eq!(
        one(
            "fhe.transpose",
            "",
            &["tensor<2x1xi3>"],
            "tensor<1x2xi3>",
            &[t(array![[-4], [3]])]
        ),
        t(array![[-4, 3]])
    );
}

#[test]
fn constants_and_zeros() {
    let src = r#"func.func @main() -> (tensor<2x!fhe.eint<3>>, tensor<2x2xi8>) {
  %z = "fhe.zeros"() : () -> tensor<2x!fhe.eint<3>>
  %c = "fhe.constant"() {value = dense<-128> : tensor<2x2xi8>} : () -> tensor<2x2xi8>
  "func.return"(%z, %c) : (tensor<2x!fhe.eint<3>>, tensor<2x2xi8>) -> ()
}"#;
    let r = run(src, &[]).unwrap();
    assert_eq!(r[0], t(array![0, 0]));
    assert_eq!(r[1], t(array![[-128, -128], [-128, -128]]));
}

#[test]
fn inputs_are_checked() {
    let src = r#"func.func @main(%x: tensor<2x!fhe.eint<3>> {fhe.range = [0, 5]}) -> tensor<2x!fhe.eint<3>> {
  "func.return"(%x) : (tensor<2x!fhe.eint<3>>) -> ()
}"#;
    assert_eq!(run(src, &[t(array![0, 5])]).unwrap()[0], t(array![0, 5]));
    let e = run(src, &[t(array![0, 6])]).unwrap_err();
    assert!(
        e.contains("input %x has value 6 at index [1], outside its declared range 0 ..= 5"),
        "{e}"
    );
    let e = run(src, &[t(array![0, 1, 2])]).unwrap_err();
    assert!(e.contains("input %x has shape [3], expected [2]"), "{e}");
    let e = run(src, &[]).unwrap_err();
    assert!(e.contains("takes 1 input(s), 0 given"), "{e}");
    let src2 = prog("fhe.neg", "", &["tensor<1x!fhe.eint<3>>"], "tensor<1x!fhe.esint<4>>");
    let e = run(&src2, &[t(array![8])]).unwrap_err();
    assert!(e.contains("outside its type 0 ..= 7"), "{e}");
}
