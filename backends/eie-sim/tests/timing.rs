//! Timing facts that follow from the architecture, whatever the constants.

mod common;

use common::{Formats, encode_program, random_activations, random_layer};
use sprig_eie::isa::Activation;
use sprig_eie_sim::{SimConfig, execute};

const FORMATS: Formats = Formats {
    wf: 12,
    af: 10,
    of: 10,
};

fn machine(pes: usize, fifo_depth: usize) -> SimConfig {
    SimConfig {
        pes,
        fifo_depth,
        ..SimConfig::default()
    }
}

#[test]
fn cycles_cover_the_busiest_pe() {
    for (seed, (rows, cols, density, act_density)) in [
        (1000, 800, 0.09, 0.35),
        (600, 1200, 0.25, 1.0),
        (64, 2000, 0.5, 0.2),
    ]
    .into_iter()
    .enumerate()
    {
        let layer = random_layer(rows, cols, density, FORMATS, Activation::Relu, seed as u64);
        let acts = random_activations(cols, act_density, FORMATS.af, seed as u64);
        let program = encode_program(&layer, 16, FORMATS, cols);
        let sim = execute(&program, &machine(16, 8), &[acts]).expect("runs");
        let layer = &sim.report.layers[0];
        assert!(layer.busiest_pe_entries > 0);
        assert!(
            layer.compute_cycles >= layer.busiest_pe_entries,
            "{} cycles for a PE with {} entries",
            layer.compute_cycles,
            layer.busiest_pe_entries
        );
        assert!(
            layer.cycles > layer.compute_cycles,
            "drain and write-back cost cycles"
        );
        // Every PE-cycle of the compute window is busy, stalled or starved.
        assert_eq!(
            layer.busy_cycles + layer.stall_cycles + layer.starved_cycles,
            layer.compute_cycles * 16
        );
        assert_eq!(layer.busy_cycles, layer.macs);
    }
}

#[test]
fn a_one_deep_fifo_balances_load_far_worse_than_eight() {
    // Alex-7's shape at a quarter of its columns: 64 rows per PE, 9% weights, 35% activations.
    let layer = random_layer(4096, 1024, 0.09, FORMATS, Activation::Relu, 7);
    let acts = random_activations(1024, 0.35, FORMATS.af, 7);
    let program = encode_program(&layer, 64, FORMATS, 1024);
    let efficiency = |depth| {
        let sim =
            execute(&program, &machine(64, depth), std::slice::from_ref(&acts)).expect("runs");
        sim.report.total.load_balance_efficiency
    };
    let (one, eight, many) = (efficiency(1), efficiency(8), efficiency(256));
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "load-balance efficiency: depth 1 {one:.3}, 2 {:.3}, 4 {:.3}, 8 {eight:.3}, 256 {many:.3}",
            efficiency(2),
            efficiency(4)
        );
    }
    assert!(one < 0.75 * eight, "depth 1: {one}, depth 8: {eight}");
    // Beyond depth 8 the gains are small (either way: a deeper queue shifts which PE starves).
    assert!(
        (many - eight).abs() < 0.02,
        "depth 8: {eight}, depth 256: {many}"
    );
}

#[test]
fn zero_activations_cost_no_arithmetic() {
    let layer = random_layer(500, 700, 0.2, FORMATS, Activation::None, 3);
    let program = encode_program(&layer, 8, FORMATS, 700);
    let zeros = vec![0i16; 700];
    let sim = execute(&program, &machine(8, 8), &[zeros]).expect("runs");
    let report = &sim.report.layers[0];
    assert_eq!(report.macs, 0);
    assert_eq!(report.broadcasts, 0);
    assert_eq!(report.compute_cycles, 0);
    assert_eq!(report.drain_cycles, 0);
    // Only the write-back of the 63 rows the most loaded PE holds.
    assert_eq!(report.cycles, 500usize.div_ceil(8) as u64);
    // The biases pass through.
    let expected: Vec<i16> = layer
        .bias
        .iter()
        .map(|&b| b.clamp(-32768, 32767) as i16)
        .collect();
    assert_eq!(sim.outputs[0].values, expected);

    // Half the activations zero: cycles follow the non-zero ones only.
    let acts = random_activations(700, 1.0, FORMATS.af, 3);
    let mut half = acts.clone();
    for a in half.iter_mut().skip(1).step_by(2) {
        *a = 0;
    }
    let full = execute(&program, &machine(8, 8), &[acts]).expect("runs");
    let halved = execute(&program, &machine(8, 8), &[half]).expect("runs");
    assert_eq!(halved.report.layers[0].broadcasts, 350);
    assert!(halved.report.layers[0].macs < full.report.layers[0].macs * 6 / 10);
}

#[test]
fn more_pes_mean_fewer_cycles_on_a_large_layer() {
    let layer = random_layer(2048, 1024, 0.09, FORMATS, Activation::Relu, 11);
    let acts = random_activations(1024, 0.35, FORMATS.af, 11);
    let mut last = u64::MAX;
    for pes in [4usize, 16, 64] {
        let program = encode_program(&layer, pes, FORMATS, 1024);
        let sim = execute(&program, &machine(pes, 8), std::slice::from_ref(&acts)).expect("runs");
        let cycles = sim.report.total.cycles;
        assert!(
            cycles < last,
            "{pes} PEs: {cycles} cycles, fewer PEs took {last}"
        );
        last = cycles;
    }
}

#[test]
fn sram_width_trades_reads_for_width() {
    let layer = random_layer(4096, 512, 0.1, FORMATS, Activation::Relu, 5);
    let acts = random_activations(512, 0.5, FORMATS.af, 5);
    let program = encode_program(&layer, 64, FORMATS, 512);
    let reads = |width| {
        let config = SimConfig {
            sram_width_bits: width,
            ..machine(64, 8)
        };
        let sim = execute(&program, &config, std::slice::from_ref(&acts)).expect("runs");
        (sim.report.total.matrix_reads, sim.report.total.cycles)
    };
    let (narrow, wide) = (reads(8), reads(64));
    assert_eq!(narrow.1, wide.1, "the width does not change the timing");
    assert!(
        narrow.0 > 4 * wide.0,
        "8-bit: {} reads, 64-bit: {}",
        narrow.0,
        wide.0
    );
}
