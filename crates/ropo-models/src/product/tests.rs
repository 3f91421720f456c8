use burn::{
    backend::{Autodiff, Flex},
    tensor::{Distribution, Tensor, Tolerance},
};

use super::ProductBackend;

type B = Flex;
type AD = Autodiff<Flex>;

/// At f32 (the default), the product and both its gradients are burn's `matmul`'s, for plain
/// and transposed operands.
#[test]
fn f32_product_and_gradients_match_matmul() {
    let device = Default::default();
    for transposed in [false, true] {
        let a = Tensor::<B, 2>::random([7, 5], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<B, 2>::random([5, 9], Distribution::Normal(0.0, 1.0), &device);
        let b = if transposed {
            b.transpose().transpose()
        } else {
            b
        };
        let seed = Tensor::<B, 2>::random([7, 9], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool| {
            let a = Tensor::<AD, 2>::from_inner(a.clone()).require_grad();
            let b = Tensor::<AD, 2>::from_inner(b.clone()).require_grad();
            let c = if ours {
                AD::product(a.clone(), b.clone())
            } else {
                a.clone().matmul(b.clone())
            };
            let grads = (c.clone() * Tensor::from_inner(seed.clone()))
                .sum()
                .backward();
            [
                c.inner().into_data(),
                a.grad(&grads).unwrap().into_data(),
                b.grad(&grads).unwrap().into_data(),
            ]
        };
        for (ours, reference) in run(true).iter().zip(run(false).iter()) {
            ours.assert_approx_eq::<f32>(reference, Tolerance::absolute(1e-5));
        }
    }
}

/// A frozen operand gets no gradient and costs no product.
#[test]
fn frozen_operand_has_no_gradient() {
    let device = Default::default();
    let a = Tensor::<AD, 2>::random([4, 3], Distribution::Default, &device).require_grad();
    let b = Tensor::<AD, 2>::random([3, 2], Distribution::Default, &device);
    let grads = AD::product(a.clone(), b.clone()).sum().backward();
    assert!(a.grad(&grads).is_some());
    assert!(b.grad(&grads).is_none());
    let expected = Tensor::<B, 2>::ones([4, 2], &device).matmul(b.inner().transpose());
    a.grad(&grads)
        .unwrap()
        .into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use std::sync::Arc;

    use burn::{
        backend::{flex::FlexTensor, Flex},
        tensor::{Tensor, TensorData},
    };

    use super::super::{
        bf16::{available, present, product, product_on, PackedB, Strided, Unit},
        bf16_head::{
            logit_gradients, target_logits_and_lse, target_logits_lse_and_expected, TargetRows,
        },
        pack_cache::packed,
    };

    /// `x` rounded to bf16 as the kernel rounds it (to nearest, ties to even).
    fn round(x: f32) -> f64 {
        let bits = x.to_bits();
        f32::from_bits((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16) as f64
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// A head's inputs as the head tests draw them: `a` (`[m, k]`, scaled by `scale`) and `b`
    /// (`[k, n]`), both row-major.
    fn head_inputs(m: usize, k: usize, n: usize, scale: f32) -> (Vec<f32>, Vec<f32>) {
        let a = values(m * k, 4).iter().map(|x| x * scale).collect();
        (a, values(k * n, 5))
    }

    /// A row-major `[_, columns]` view of `data`.
    fn row_major(data: &[f32], columns: usize) -> Strided<'_> {
        Strided {
            data,
            row_stride: columns,
            col_stride: 1,
        }
    }

    /// Row `i`'s logits of `a · b` (row-major, `[m, k]` and `[k, n]`) in f64 over the
    /// bf16-rounded inputs.
    fn exact_logits(a: &[f32], b: &[f32], i: usize, k: usize, n: usize) -> Vec<f64> {
        (0..n)
            .map(|j| {
                (0..k)
                    .map(|p| round(a[i * k + p]) * round(b[p * n + j]))
                    .sum()
            })
            .collect()
    }

    /// On every bf16 unit this CPU has, every operand layout (row- and column-major `a` and
    /// `b`, and a narrowed `b` with a row stride beyond its width), at sizes that leave partial
    /// tiles, chunks, groups of rows and panels, a last pair of panels with one live, odd depths,
    /// a depth of 16 (a LoRA rank) and more than one block of columns,
    /// against f64 sums of the bf16-rounded inputs: the only difference left is f32 summation.
    #[test]
    fn bf16_products_match_f64_sums_of_bf16_inputs() {
        let units: Vec<Unit> = [Unit::Tiles, Unit::DotProducts]
            .into_iter()
            .filter(|&unit| present(unit))
            .collect();
        if units.is_empty() {
            eprintln!("skipped: this CPU has no bf16 unit (AMX-BF16 or AVX-512 BF16)");
            return;
        }
        for (unit, (m, n, k)) in units.into_iter().flat_map(|unit| {
            [
                (16, 32, 32),
                (16, 16, 16),
                (33, 47, 7),
                (70, 45, 601),
                (40, 1100, 300),
                (3, 40, 50),
                (64, 16, 576),
                (50, 70, 16),
            ]
            .map(|size| (unit, size))
        }) {
            let a = values(m * k, 1);
            let b = values(k * (n + 3), 2);
            let row_major_a = Strided {
                data: &a,
                row_stride: k,
                col_stride: 1,
            };
            let column_major_a = Strided {
                data: &a,
                row_stride: 1,
                col_stride: m,
            };
            let row_major_b = Strided {
                data: &b,
                row_stride: n + 3,
                col_stride: 1,
            };
            let column_major_b = Strided {
                data: &b,
                row_stride: 1,
                col_stride: k,
            };
            let narrowed_b = Strided {
                data: &b[2..],
                row_stride: n + 3,
                col_stride: 1,
            };
            for (a, b) in [
                (row_major_a, row_major_b),
                (column_major_a, row_major_b),
                (row_major_a, column_major_b),
                (column_major_a, column_major_b),
                (row_major_a, narrowed_b),
            ] {
                let c = product_on(unit, m, k, a, &PackedB::on(unit, b, k, n));
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|p| {
                                round(a.data[i * a.row_stride + p * a.col_stride])
                                    * round(b.data[p * b.row_stride + j * b.col_stride])
                            })
                            .sum();
                        let error = (c[i * n + j] as f64 - exact).abs();
                        assert!(
                            error <= 1e-6 * (k as f64).sqrt() * 4.0,
                            "{unit:?} {m}×{n}×{k} at ({i}, {j}): {} vs {exact}",
                            c[i * n + j]
                        );
                    }
                }
            }
        }
    }

    /// The head's log-sum-exp folded block by block on this CPU's fastest unit, and the logits'
    /// gradient over a range of columns from it, against f64 over the bf16-rounded inputs: rows
    /// that leave a partial chunk, columns that leave a partial block of 32 (and a lone left
    /// panel), more than one block of columns of `b`, logits large enough that the running
    /// maximum matters, targets at the first and last columns.
    #[test]
    fn head_log_softmax_and_its_gradient_match_f64_over_bf16_inputs() {
        if !available() {
            eprintln!("skipped: this CPU has no bf16 unit (AMX-BF16 or AVX-512 BF16)");
            return;
        }
        for (m, k, n, scale) in [
            (1, 16, 1, 1.0),
            (33, 47, 70, 4.0),
            (5, 16, 17, 1.0),
            (40, 600, 1100, 3.0),
        ] {
            let (a, b) = head_inputs(m, k, n, scale);
            let (a_view, b_view) = (row_major(&a, k), row_major(&b, n));
            let targets: Vec<usize> = (0..m)
                .map(|i| match i % 3 {
                    0 => 0,
                    1 => n - 1,
                    _ => (i * 7919) % n,
                })
                .collect();
            let packed = PackedB::new(b_view, k, n);
            let (picked, lse) = target_logits_and_lse(m, k, a_view, &packed, &targets);
            let grad: Vec<f32> = (0..m).map(|i| 1.5 - i as f32 * 0.25).collect();
            // From the second pair of panels where there is one, to the last column.
            let columns = (n / 64 * 32)..n;
            let rows = TargetRows {
                targets: &targets,
                lse: &lse,
                grad: &grad,
            };
            let gradients = logit_gradients(m, k, a_view, &packed, columns.clone(), rows);
            for i in 0..m {
                let logits = exact_logits(&a, &b, i, k, n);
                for (c, j) in columns.clone().enumerate() {
                    let one_hot = if j == targets[i] { 1.0 } else { 0.0 };
                    let softmax = (logits[j] - lse[i] as f64).exp();
                    let exact = grad[i] as f64 * (one_hot - softmax);
                    let got = gradients[i * columns.len() + c];
                    assert!(
                        (got as f64 - exact).abs() <= 2e-5 * (1.0 + exact.abs()),
                        "{m}×{k}×{n} logit gradient ({i}, {j}): {got} vs {exact}"
                    );
                }
                let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exact_lse = top + logits.iter().map(|x| (x - top).exp()).sum::<f64>().ln();
                let exact_picked = logits[targets[i]];
                for (what, got, exact) in [
                    ("log-sum-exp", lse[i], exact_lse),
                    ("target logit", picked[i], exact_picked),
                ] {
                    assert!(
                        (got as f64 - exact).abs() <= 2e-5 * (1.0 + exact.abs()),
                        "{m}×{k}×{n} row {i} {what}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    /// The head's log-sum-exp and each row's softmax-weighted mean of the head's columns in one
    /// pass on this CPU's fastest unit, against f64 over the bf16-rounded inputs: partial
    /// chunks of rows, a vocabulary that leaves a partial block (and an odd depth of `bᵀ`), a
    /// width `k` that leaves a lone panel, more than one block of columns, logits large
    /// enough that the running maximum moves. The softmax is rounded to bf16 before it
    /// multiplies the columns (relative 2⁻⁹ each), so the mean is within 4·10⁻³ of the
    /// columns' largest magnitude.
    #[test]
    fn head_column_mean_matches_f64_over_bf16_inputs() {
        if !available() {
            eprintln!("skipped: this CPU has no bf16 unit (AMX-BF16 or AVX-512 BF16)");
            return;
        }
        for (m, k, n, scale) in [(1, 16, 1, 1.0), (33, 47, 71, 4.0), (40, 600, 1100, 3.0)] {
            let (a, b) = head_inputs(m, k, n, scale);
            let (a_view, b_view) = (row_major(&a, k), row_major(&b, n));
            let b_transposed = Strided {
                data: &b,
                row_stride: 1,
                col_stride: n,
            };
            let targets: Vec<usize> = (0..m).map(|i| (i * 7919) % n).collect();
            let packed = PackedB::new(b_view, k, n);
            let packed_t = PackedB::new(b_transposed, n, k);
            let (picked, lse, mean) =
                target_logits_lse_and_expected(m, k, a_view, &packed, &packed_t, &targets);
            let largest = b.iter().fold(0f64, |top, &x| top.max(round(x).abs()));
            for i in 0..m {
                let logits = exact_logits(&a, &b, i, k, n);
                let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|x| (x - top).exp()).sum();
                let exact_lse = top + sum.ln();
                for (what, got, exact) in [
                    ("log-sum-exp", lse[i], exact_lse),
                    ("target logit", picked[i], logits[targets[i]]),
                ] {
                    assert!(
                        (got as f64 - exact).abs() <= 2e-5 * (1.0 + exact.abs()),
                        "{m}×{k}×{n} row {i} {what}: {got} vs {exact}"
                    );
                }
                for p in 0..k {
                    let exact: f64 = (0..n)
                        .map(|j| (logits[j] - exact_lse).exp() * round(b[p * n + j]))
                        .sum();
                    let got = mean[i * k + p] as f64;
                    assert!(
                        (got - exact).abs() <= 4e-3 * largest,
                        "{m}×{k}×{n} row {i} mean column {p}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    /// A weight's packing is kept from its second product on and reused, and a changed weight
    /// (a new buffer, since burn-flex cannot write in place to one the cache points at) or
    /// another view of the same buffer is packed anew.
    #[test]
    fn a_kept_packing_is_reused_and_never_stale() {
        if !available() {
            eprintln!("skipped: this CPU has no bf16 unit (AMX-BF16 or AVX-512 BF16)");
            return;
        }
        let primitive = |t: &Tensor<Flex, 2>| -> FlexTensor { t.clone().into_primitive().tensor() };
        let pack = |t: &FlexTensor| {
            let [k, n] = [t.layout().shape()[0], t.layout().shape()[1]];
            let strides = t.layout().strides();
            let view = Strided {
                data: &t.storage::<f32>()[t.layout().start_offset()..],
                row_stride: strides[0] as usize,
                col_stride: strides[1] as usize,
            };
            PackedB::new(view, k, n)
        };
        let device = Default::default();
        let weight =
            Tensor::<Flex, 2>::from_data(TensorData::new(values(64 * 48, 3), [64, 48]), &device);
        let first = packed(&primitive(&weight), || pack(&primitive(&weight)));
        let second = packed(&primitive(&weight), || pack(&primitive(&weight)));
        let third = packed(&primitive(&weight), || pack(&primitive(&weight)));
        assert!(
            !Arc::ptr_eq(&first, &second),
            "the first sight only notes the operand"
        );
        assert!(
            Arc::ptr_eq(&second, &third),
            "the second sight's packing is kept"
        );
        {
            let transposed = weight.clone().transpose();
            let other_view = packed(&primitive(&transposed), || pack(&primitive(&transposed)));
            assert!(!Arc::ptr_eq(&third, &other_view));
        }
        // `weight` is the buffer's only owner here: an in-place add would be allowed but for
        // the cache's `Weak`.
        let changed = weight.add_scalar(1.0);
        let fresh = packed(&primitive(&changed), || pack(&primitive(&changed)));
        assert!(
            !Arc::ptr_eq(&third, &fresh),
            "a changed weight is packed anew"
        );
        let expected = pack(&primitive(&changed));
        let ones = vec![1f32; 64];
        let row = Strided {
            data: &ones,
            row_stride: 64,
            col_stride: 1,
        };
        assert_eq!(product(1, 64, row, &fresh), product(1, 64, row, &expected));
    }
}
