//! Which instruction set the kernels use: detected at run time, or forced with `SPRIG_CPU`.
//!
//! Contract: [`Isa::detect`] returns the widest variant the running machine supports;
//! [`Isa::from_env`] honours `SPRIG_CPU=scalar|avx2|avx512` and refuses a variant the machine
//! lacks. Every variant computes bit-identical results (the kernels perform the same f32
//! operations in the same order), so the choice changes speed only.

use crate::CpuError;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// [`Isa::force_gathers`]'s setting.
static GATHERS: AtomicU8 = AtomicU8::new(GATHERS_DETECT);
const GATHERS_DETECT: u8 = 0;
const GATHERS_FAST: u8 = 1;
const GATHERS_SLOW: u8 = 2;

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

    /// Whether this machine's vector gathers and scatters are fast enough for the SIMD column
    /// kernels (gather, add, scatter per 16 or 8 entries) to beat one entry at a time. AMD
    /// processors up to Zen 4 (family 19h) execute a 16-lane gather or scatter at about one
    /// element per cycle, slower than scalar loads and stores (measured on Zen 4: 0.38 ns per
    /// gathered element, 0.43 per scattered one, at 3.45 GHz); Intel's since Skylake and AMD's
    /// from Zen 5 are fast. Only speed depends on the answer: every kernel gives the same bits.
    /// [`Isa::force_gathers`] overrides the detection.
    pub fn gathers_are_fast() -> bool {
        static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        match GATHERS.load(Ordering::Relaxed) {
            GATHERS_FAST => true,
            GATHERS_SLOW => false,
            _ => *FAST.get_or_init(detect_fast_gathers),
        }
    }

    /// Makes [`Isa::gathers_are_fast`] answer `fast` for the whole process (`None`: detect),
    /// so that every column kernel can be run on any machine. Safe to call at any time: the
    /// answer picks between kernels that give the same bits.
    pub fn force_gathers(fast: Option<bool>) {
        let value = match fast {
            None => GATHERS_DETECT,
            Some(true) => GATHERS_FAST,
            Some(false) => GATHERS_SLOW,
        };
        GATHERS.store(value, Ordering::Relaxed);
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

#[cfg(target_arch = "x86_64")]
fn detect_fast_gathers() -> bool {
    use std::arch::x86_64::__cpuid;
    let (vendor, signature) = (__cpuid(0), __cpuid(1).eax);
    let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
    // Family: base family plus extended family when the base is 0xF.
    let base = (signature >> 8) & 0xF;
    let family = if base == 0xF {
        base + ((signature >> 20) & 0xFF)
    } else {
        base
    };
    !(amd && family <= 0x19)
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_fast_gathers() -> bool {
    false
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
