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
    use super::super::amx::{available, product, Strided};

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

    /// Every operand layout (row- and column-major `a` and `b`, and a narrowed `b` with a
    /// row stride beyond its width), at sizes that leave partial tiles, chunks and panels,
    /// odd depths and more than one block of columns, against f64 sums of the bf16-rounded
    /// inputs: the only difference left is f32 summation.
    #[test]
    fn amx_product_matches_f64_sums_of_bf16_inputs() {
        if !available() {
            eprintln!("skipped: this CPU has no AMX-BF16 tiles");
            return;
        }
        for (m, n, k) in [(16, 32, 32), (33, 47, 7), (70, 45, 601), (40, 1100, 300)] {
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
                let mut c = vec![f32::NAN; m * n];
                product(m, n, k, a, b, &mut c);
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
                            "{m}×{n}×{k} at ({i}, {j}): {} vs {exact}",
                            c[i * n + j]
                        );
                    }
                }
            }
        }
    }
}
