//! Which instruction set the kernels use: detected at run time, or forced with `SPRIG_CPU`.
//!
//! Contract: [`Isa::detect`] returns the widest variant the running machine supports;
//! [`Isa::from_env`] honours `SPRIG_CPU=scalar|avx2|avx512` and refuses a variant the machine
//! lacks. Every variant computes bit-identical results (the kernels perform the same f32
//! operations in the same order), so the choice changes speed only.

use crate::CpuError;
use std::fmt;

/// A kernel variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no explicit SIMD.
    Scalar,
    /// 256-bit AVX2 with FMA-class hardware (x86-64).
    Avx2,
    /// 512-bit AVX-512 F, BW and VL (x86-64).
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether the running machine can execute this variant.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The variants this machine supports, narrowest first.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
    }

    /// The widest supported variant.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Scalar)
    }

    /// The variant `SPRIG_CPU` names, or the detected one when it is unset or empty.
    pub fn from_env() -> Result<Isa, CpuError> {
        match std::env::var("SPRIG_CPU") {
            Ok(name) if !name.is_empty() => Isa::forced(&name),
            _ => Ok(Isa::detect()),
        }
    }

    /// The variant called `name`, if this machine supports it.
    pub fn forced(name: &str) -> Result<Isa, CpuError> {
        let isa = Isa::from_name(name).ok_or_else(|| CpuError::UnknownIsa(name.to_string()))?;
        if isa.is_supported() {
            Ok(isa)
        } else {
            Err(CpuError::UnsupportedIsa(isa))
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
