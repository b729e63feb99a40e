//! What the processor offers, detected at run time (the kernels dispatch on it; `trueneg env`
//! and the encoder's precision choice read it).

/// Names of the CPU features the kernels and the encoder care about that this machine has.
#[must_use]
pub fn features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
            (
                "avx512bf16",
                std::arch::is_x86_feature_detected!("avx512bf16"),
            ),
            ("amx-bf16", amx_bf16()),
        ] {
            if on {
                out.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            out.push("neon");
        }
    }
    out
}

/// AMX bf16 tiles, usable: CPUID.(7,0):EDX bits 22 (AMX-BF16) and 24 (AMX-TILE), and the OS has
/// enabled the tile state (XCR0 bits 17 and 18). `is_x86_feature_detected!("amx-bf16")` is not
/// stable yet, hence CPUID by hand.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // CPUID is safe to call from Rust 1.94 on, unsafe before (MSRV 1.89)
fn amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: CPUID exists on every x86_64 processor.
    let max_leaf = unsafe { __cpuid(0) }.eax;
    if max_leaf < 7 {
        return false;
    }
    // SAFETY: leaf 7 exists (checked above).
    let edx = unsafe { __cpuid_count(7, 0) }.edx;
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return false;
    }
    if !std::arch::is_x86_feature_detected!("xsave") {
        return false;
    }
    // SAFETY: XGETBV(0) is available when CPUID reports XSAVE and the OS set OSXSAVE, which
    // `is_x86_feature_detected!("xsave")` checks.
    let xcr0 = unsafe { xgetbv0() };
    xcr0 & (0b11 << 17) == (0b11 << 17)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    std::arch::x86_64::_xgetbv(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_are_known_names_once() {
        let f = super::features();
        let mut seen = std::collections::HashSet::new();
        assert!(f.iter().all(|n| seen.insert(*n)));
        #[cfg(target_arch = "x86_64")]
        assert!(f.contains(&"sse4.2")); // every x86_64 CPU this crate runs on
    }
}
