//! The text format: a subset of MLIR's generic syntax, printed and parsed here, in one place.
//!
//! ```text
//! func.func @main(%x: tensor<1x4x!fhe.eint<6>> {fhe.range = [0, 63]}) -> tensor<1x2x!fhe.esint<14>> {
//!   %w = "fhe.constant"() {value = dense<[[3, -1], [0, 2], [5, 5], [-7, 1]]> : tensor<4x2xi4>} : () -> tensor<4x2xi4>
//!   %0 = "fhe.matmul"(%x, %w) : (tensor<1x4x!fhe.eint<6>>, tensor<4x2xi4>) -> tensor<1x2x!fhe.esint<14>>
//!   "func.return"(%0) : (tensor<1x2x!fhe.esint<14>>) -> ()
//! }
//! ```
//!
//! - A file is a list of `func.func`, optionally wrapped in `module { ... }`. `//` starts a comment.
//! - Ops: `%name = "dialect.op"(%operands) {attributes} : (operand types) -> result type`; every `fhe` op has
//!   one named result; `"func.return"(...) : (types) -> ()` ends a function.
//! - Types: `!fhe.eint<w>`, `!fhe.esint<w>`, `iN` (signed), `uiN` (unsigned; `uN` is accepted as input), and
//!   ranked tensors of them `tensor<2x3x...>`; a scalar prints as the bare element type.
//! - Attributes: integers (`8`, or `8 : i64`), booleans, strings, arrays `[1, 2]` (or `array<i64: 1, 2>`),
//!   and `dense<...> : tensor<...>` (nested lists, or one value for a splat).
//!
//! Printing is canonical: attributes sorted by name, one op per line, two-space indent, value names kept
//! from the source (fresh numbers for unnamed values), splat dense values printed once. print → parse →
//! print is the identity (property-tested).

mod parser;
mod printer;

pub use parser::{parse_module, split_cases, Case};
pub use printer::{print_function, print_module};

/// The position after whitespace and `//` comments starting at `pos` (shared by the `fhe` parser and
/// the `tfhe` dialect's).
pub fn skip_ws_and_comments(b: &[u8], mut pos: usize) -> usize {
    loop {
        while pos < b.len() && b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if b[pos.min(b.len())..].starts_with(b"//") {
            while pos < b.len() && b[pos] != b'\n' {
                pos += 1;
            }
        } else {
            return pos;
        }
    }
}
