//! Dot products on f32 slices and L2 normalisation.
//!
//! Two kernels compute the same sum in different orders: a portable one written so that the
//! compiler vectorises it with the baseline instruction set (16 lanes in independent
//! accumulators), and on x86-64 an AVX2+FMA one chosen at run time when the CPU has both. The
//! wheel is built for the baseline, so the AVX2 path is the only way to use 256-bit registers.

/// Signature of a dot-product kernel.
pub(crate) type DotFn = fn(&[f32], &[f32]) -> f32;

/// The fastest kernel this CPU supports.
pub(crate) fn best_kernel() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return dot_avx2;
        }
    }
    dot_portable
}

/// Name of the kernel [`best_kernel`] picks (for benchmark reports).
pub(crate) fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    "portable"
}

/// Portable dot product over the common prefix of `a` and `b`.
pub(crate) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ta.iter().zip(tb) {
        tail += x * y;
    }
    // Pairwise reduction keeps the rounding error small and the order fixed.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0] + tail
}

/// AVX2+FMA dot product; safe to call because it is only handed out by [`best_kernel`] after
/// the CPU features were detected.
#[cfg(target_arch = "x86_64")]
pub(crate) fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: `best_kernel` returns this function only when avx2 and fma are available, and the
    // tests call it behind the same check.
    unsafe { dot_avx2_impl(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s0 = _mm256_setzero_ps();
    let mut s1 = _mm256_setzero_ps();
    let mut s2 = _mm256_setzero_ps();
    let mut s3 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: every load reads 8 floats starting at `i` with `i + 8 <= n`, inside both slices.
    unsafe {
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
            s2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                s2,
            );
            s3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                s3,
            );
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    let hi = _mm256_extractf128_ps(s, 1);
    let lo = _mm256_castps256_ps128(s);
    let q = _mm_add_ps(lo, hi);
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    let mut total = _mm_cvtss_f32(q);
    while i < n {
        total += a[i] * b[i];
        i += 1;
    }
    total
}

/// Why a vector cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormError {
    NotFinite,
    Zero,
}

/// Append `v / |v|` to `out`, computed in f64 so that neither huge nor tiny finite components
/// overflow or underflow.
pub(crate) fn push_normalised(v: &[f32], out: &mut Vec<f32>) -> Result<(), NormError> {
    let mut sq = 0f64;
    for &x in v {
        if !x.is_finite() {
            return Err(NormError::NotFinite);
        }
        sq += f64::from(x) * f64::from(x);
    }
    if sq == 0.0 {
        return Err(NormError::Zero);
    }
    let inv = 1.0 / sq.sqrt();
    out.extend(v.iter().map(|&x| (f64::from(x) * inv) as f32));
    Ok(())
}
