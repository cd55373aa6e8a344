//! The simulator's outputs equal the plain fixed-point model bit for bit, stepping every cycle
//! gives exactly what the skip-ahead engine gives, and both agree with an f32 computation on the
//! quantized weights within the error the fixed-point formats allow.

mod common;

use common::{Formats, encode_program, random_activations, random_layer};
use proptest::prelude::*;
use sprig_eie::isa::{self, Activation};
use sprig_eie_sim::reference::{DenseLayer, matvec};
use sprig_eie_sim::{SimConfig, Stepping, execute, execute_with};

fn config(pes: usize, fifo_depth: usize, pointer_read_cycles: u32, width: u32) -> SimConfig {
    SimConfig {
        pes,
        fifo_depth,
        pointer_read_cycles,
        sram_width_bits: width,
        ..SimConfig::default()
    }
}

/// The largest |simulated − f32| over the layer's outputs, in real units, and the bound the
/// formats allow for it: every product is rounded once to Q(of) (at most half a unit of the
/// last place), so a row with n non-zero terms is off by at most n/2 units of 2^-of; f32
/// accumulation adds a relative 2^-20 of the sum of |terms|. Clamping to the i16 range and ReLU
/// do not increase a difference.
fn f32_error(layer: &DenseLayer, acts: &[i16], formats: Formats, out: &[i16]) -> (f64, bool) {
    let weight = |code: u8| isa::dequantize(layer.codebook[usize::from(code)], formats.wf);
    let unit = 2f64.powi(-i32::from(formats.of));
    let (lo, hi) = (f64::from(i16::MIN) * unit, f64::from(i16::MAX) * unit);
    let mut worst = 0f64;
    let mut within = true;
    for (i, &simulated) in out.iter().enumerate() {
        let mut sum = layer.bias[i] as f32 * unit as f32;
        let mut magnitude = sum.abs() as f64;
        let mut terms = 0u32;
        let row = &layer.codes[i * layer.cols..(i + 1) * layer.cols];
        for (&code, &a) in row.iter().zip(acts) {
            if code != 0 && a != 0 {
                let term = weight(code) * isa::dequantize(a, formats.af);
                sum += term;
                magnitude += f64::from(term.abs());
                terms += 1;
            }
        }
        let mut expected = f64::from(sum).clamp(lo, hi);
        if layer.activation == Activation::Relu {
            expected = expected.max(0.0);
        }
        let got = f64::from(simulated) * unit;
        let error = (got - expected).abs();
        let bound = f64::from(terms) * unit / 2.0 + magnitude * 2f64.powi(-20) + 1e-9;
        within &= error <= bound;
        worst = worst.max(error);
    }
    (worst, within)
}

fn formats_strategy() -> impl Strategy<Value = Formats> {
    (6u8..=14, 4u8..=12, 0u8..=12).prop_map(|(wf, af, of)| Formats {
        wf,
        af,
        of: of.min(wf + af),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn simulator_equals_reference_and_stepping(
        rows in 1usize..200,
        cols in 1usize..200,
        weight_density in 0.0f64..1.0,
        act_density in 0.0f64..1.0,
        pes in prop::sample::select(vec![1usize, 2, 3, 4, 8, 12, 16, 64, 67, 256]),
        fifo in 1usize..=16,
        pointer_read_cycles in 1u32..=3,
        width in prop::sample::select(vec![8u32, 16, 24, 40, 64, 128]),
        col_tile in 1usize..=200,
        relu in any::<bool>(),
        formats in formats_strategy(),
        seed in any::<u64>(),
    ) {
        let activation = if relu { Activation::Relu } else { Activation::None };
        let layer = random_layer(rows, cols, weight_density, formats, activation, seed);
        let acts = random_activations(cols, act_density, formats.af, seed);
        let program = encode_program(&layer, pes, formats, col_tile);
        let bytes = isa::encode(&program).expect("test programs are valid");
        prop_assert_eq!(&isa::decode(&bytes).expect("decodes"), &program);
        let machine = config(pes, fifo, pointer_read_cycles, width);
        let fast = execute(&program, &machine, std::slice::from_ref(&acts)).expect("runs");
        let expected = matvec(&layer, &acts);
        prop_assert_eq!(&fast.outputs[0].values, &expected);
        let stepped = execute_with(
            &program, &machine, std::slice::from_ref(&acts), Stepping::EveryCycle, None,
        ).expect("runs");
        prop_assert_eq!(&stepped, &fast);
        let (_, within) = f32_error(&layer, &acts, formats, &fast.outputs[0].values);
        prop_assert!(within);
        let report = &fast.report.layers[0];
        prop_assert!(report.compute_cycles >= report.busiest_pe_entries);
    }
}

/// The maximum fixed-point error over a fixed set of layers, against its bound.
#[test]
fn max_error_against_f32_is_within_the_format_bound() {
    let mut worst = 0f64;
    let mut worst_units = 0f64;
    for seed in 0..12u64 {
        let formats = Formats {
            wf: 12,
            af: 10,
            of: 10,
        };
        let layer = random_layer(96, 300, 0.1, formats, Activation::Relu, seed);
        let acts = random_activations(300, 0.4, formats.af, seed);
        let program = encode_program(&layer, 8, formats, 300);
        let sim =
            execute(&program, &config(8, 8, 1, 64), std::slice::from_ref(&acts)).expect("runs");
        let (error, within) = f32_error(&layer, &acts, formats, &sim.outputs[0].values);
        assert!(within, "seed {seed}: error {error} beyond the bound");
        worst = worst.max(error);
        worst_units = worst_units.max(error * f64::from(1u32 << formats.of));
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "max |simulator - f32| = {worst:.3e} ({worst_units:.2} units of Q10) over 12 layers of 96x300"
        );
    }
    assert!(worst > 0.0, "rounding happened");
}

/// Accumulators that reach the ends of the 32-bit range: the skip-ahead engine saturates every
/// addition exactly as the arithmetic unit (stepped cycle by cycle, one `mac` per entry) does,
/// and the sums differ from unsaturated ones.
#[test]
fn saturating_accumulators_match_stepping() {
    use rand::{RngExt, SeedableRng};
    use sprig_eie::isa::pack_entry;
    use sprig_eie_sim::engine::{PeSlice, RunCounters, Scratch, Tile, Timing, run_tile};
    use sprig_eie_sim::stepping::run_tile_stepped;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (pes, rows, cols) = (4usize, 12usize, 48usize);
    let mut codebook = [0i16; 16];
    for w in codebook.iter_mut().skip(1) {
        *w = rng.random_range(-32000i16..32000);
    }
    // Per PE: CSC of its 3 local rows, every weight non-zero.
    let encoded: Vec<(Vec<u16>, Vec<u8>)> = (0..pes)
        .map(|_| {
            let mut pointers = vec![0u16];
            let mut entries = Vec::new();
            for _ in 0..cols {
                for _ in 0..rows / pes {
                    entries.push(pack_entry(rng.random_range(1..16u8), 0));
                }
                pointers.push(entries.len() as u16);
            }
            (pointers, entries)
        })
        .collect();
    let tile = Tile {
        pes: encoded
            .iter()
            .map(|(pointers, entries)| PeSlice {
                pointers,
                entries,
                available: entries.len(),
                matrix_base: 0,
            })
            .collect(),
        cols,
        rows,
        codebook,
        shift: 0,
    };
    let acts: Vec<i16> = (0..cols)
        .map(|_| rng.random_range(20000i16..32000))
        .collect();
    let start: Vec<i32> = (0..rows)
        .map(|i| {
            if i % 2 == 0 {
                i32::MAX - 5
            } else {
                i32::MIN + 5
            }
        })
        .collect();
    let timing = Timing {
        fifo_depth: 4,
        pointer_read_cycles: 1,
        entries_per_read: 8,
    };
    let (mut fast_acc, mut stepped_acc) = (start.clone(), start.clone());
    let (mut fast, mut stepped) = (RunCounters::new(pes), RunCounters::new(pes));
    run_tile(
        &timing,
        &tile,
        &acts,
        &mut fast_acc,
        &mut fast,
        &mut Scratch::default(),
    )
    .expect("runs");
    run_tile_stepped(&timing, &tile, &acts, &mut stepped_acc, &mut stepped, None).expect("runs");
    assert_eq!(fast_acc, stepped_acc);
    assert_eq!(fast, stepped);
    // Some row saturated on the way and came back: its sum is not the unsaturated one.
    let unsaturated = |i: usize| {
        let (p, local) = (i % pes, i / pes);
        let (pointers, entries) = &encoded[p];
        let mut sum = i64::from(start[i]);
        for (j, &a) in acts.iter().enumerate() {
            let e = entries[usize::from(pointers[j]) + local];
            sum += i64::from(codebook[usize::from(e & 15)]) * i64::from(a);
        }
        sum
    };
    assert!(
        (0..rows).any(|i| i64::from(fast_acc[i])
            != unsaturated(i).clamp(i64::from(i32::MIN), i64::from(i32::MAX))),
        "no row's saturation changed its sum"
    );
}

/// Padding entries may address rows past the PE's (a column may end in one): they issue and
/// add nothing, and only a non-zero code there faults; both engines agree, for a PE count that
/// is not a multiple of the vector width.
#[test]
fn padding_past_the_rows_is_not_a_fault() {
    use sprig_eie::isa::pack_entry;
    use sprig_eie_sim::engine::{Fault, PeSlice, RunCounters, Scratch, Tile, Timing, run_tile};
    use sprig_eie_sim::stepping::run_tile_stepped;

    let (pes, rows, cols) = (11usize, 33usize, 40usize);
    let mut codebook = [0i16; 16];
    for (c, w) in codebook.iter_mut().enumerate().skip(1) {
        *w = (c as i16 - 8) * 300;
    }
    // Per PE (3 local rows): column j holds row j % 3 with code 1 + j % 15, then, in odd
    // columns, a padding entry 16 rows further (past the PE's rows).
    let encode = |last_code: u8| -> Vec<(Vec<u16>, Vec<u8>)> {
        (0..pes)
            .map(|p| {
                let mut pointers = vec![0u16];
                let mut entries = Vec::new();
                for j in 0..cols {
                    entries.push(pack_entry(1 + ((j + p) % 15) as u8, (j % 3) as u8));
                    if j % 2 == 1 {
                        let code = if j + 1 == cols && p == 7 {
                            last_code
                        } else {
                            0
                        };
                        entries.push(pack_entry(code, 15));
                    }
                    pointers.push(entries.len() as u16);
                }
                (pointers, entries)
            })
            .collect()
    };
    let timing = Timing {
        fifo_depth: 2,
        pointer_read_cycles: 1,
        entries_per_read: 8,
    };
    let acts: Vec<i16> = (0..cols).map(|j| (j as i16 % 7) * 100).collect();
    let run = |encoded: &[(Vec<u16>, Vec<u8>)]| {
        let tile = Tile {
            pes: encoded
                .iter()
                .map(|(pointers, entries)| PeSlice {
                    pointers,
                    entries,
                    available: entries.len(),
                    matrix_base: 0,
                })
                .collect(),
            cols,
            rows,
            codebook,
            shift: 4,
        };
        let (mut fast_acc, mut stepped_acc) = (vec![0i32; rows], vec![0i32; rows]);
        let (mut fast, mut stepped) = (RunCounters::new(pes), RunCounters::new(pes));
        let fast_result = run_tile(
            &timing,
            &tile,
            &acts,
            &mut fast_acc,
            &mut fast,
            &mut Scratch::default(),
        );
        let stepped_result =
            run_tile_stepped(&timing, &tile, &acts, &mut stepped_acc, &mut stepped, None);
        assert_eq!(fast_result, stepped_result);
        if fast_result.is_ok() {
            assert_eq!(fast_acc, stepped_acc);
            assert_eq!(fast, stepped);
            assert!(fast.padding_macs > 0);
        }
        fast_result
    };
    assert_eq!(run(&encode(0)), Ok(()));
    match run(&encode(3)) {
        Err(Fault::RowRange { pe: 7, column, .. }) => assert_eq!(column, cols - 1),
        other => panic!("expected PE 7's row fault, got {other:?}"),
    }
}
