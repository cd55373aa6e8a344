//! Simulator speed in PE-cycles per second on the nine benchmark layers of `examples/eie` at 64
//! PEs (the paper's shapes, weight densities and activation densities; random codes and
//! positions), skip-ahead; and a smaller layer stepped every cycle against skip-ahead.
//!
//! One measured iteration is a whole `execute` of a program held decoded in memory on one input:
//! validating the machine, every instruction (codebook, pointer and matrix loads, biases, input
//! load, every tile's run, write-back, output read) and building the report. Decoding the binary
//! and generating the layer are outside it. Criterion's throughput is PE-cycles (the compute
//! windows' cycles × PEs), so its "elem/s" is PE-cycles per wall-clock second; because a shared
//! machine inflates wall time, each layer also prints this thread's CPU time per simulation.
//!
//! A filter argument (`cargo bench -p sprig-eie-sim --bench simulate -- vgg6`) skips generating
//! the layers it does not name.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Formats, random_activations, sparse_program};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sprig_eie_sim::{SimConfig, Stepping, execute, execute_with};
use std::hint::black_box;

const FORMATS: Formats = Formats {
    wf: 12,
    af: 10,
    of: 10,
};

/// The nine layers of the EIE paper's Table III: name, outputs, inputs, weight density,
/// activation density (as in `examples/eie/*.sprig`).
const LAYERS: [(&str, usize, usize, f64, f64); 9] = [
    ("alex6", 4096, 9216, 0.09, 0.351),
    ("alex7", 4096, 4096, 0.09, 0.353),
    ("alex8", 1000, 4096, 0.25, 0.375),
    ("vgg6", 4096, 25088, 0.04, 0.183),
    ("vgg7", 4096, 4096, 0.04, 0.375),
    ("vgg8", 1000, 4096, 0.23, 0.411),
    ("ntwe", 600, 4096, 0.1, 1.0),
    ("ntwd", 8791, 600, 0.11, 1.0),
    ("ntlstm", 2400, 1201, 0.1, 1.0),
];

/// Whether the command line's filter (if any) can match a benchmark id containing `name`.
fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .flat_map(|f| f.split('|'))
            .any(|f| name.contains(f) || f.contains(name))
}

fn layer(c: &mut Criterion, name: &str, rows: usize, cols: usize, density: f64, act: f64) {
    let id = format!("{name}_64pe");
    if !wanted(&id) {
        return;
    }
    let program = sparse_program(rows, cols, density, 64, FORMATS, 4096, 6);
    let acts = vec![random_activations(cols, act, FORMATS.af, 6)];
    let config = SimConfig::default();
    let report = execute(&program, &config, &acts).expect("runs").report;
    let pe_cycles = report.layers[0].compute_cycles * 64;
    let l = &report.layers[0];
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{id}: {} cycles ({} compute, {pe_cycles} PE-cycles), {} broadcasts, {} MACs, load balance {:.3}",
            l.cycles, l.compute_cycles, l.broadcasts, l.macs, l.load_balance_efficiency
        );
    }
    // On a shared machine wall time overstates the cost: also report this thread's CPU time,
    // over at least 2 CPU seconds (the clock ticks every 10 ms).
    if let Some(before) = thread_cpu_seconds() {
        let mut runs = 0u32;
        let mut after = before;
        while runs < 20 || after - before < 2.0 {
            black_box(execute(black_box(&program), &config, black_box(&acts)).expect("runs"));
            runs += 1;
            if runs.is_multiple_of(10) {
                match thread_cpu_seconds() {
                    Some(now) => after = now,
                    None => break,
                }
            }
        }
        let per_run = (after - before) / f64::from(runs);
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "{id}: {:.2} ms CPU per simulation, {:.0} million PE-cycles per CPU second ({runs} runs)",
                per_run * 1e3,
                pe_cycles as f64 / per_run / 1e6
            );
        }
    }
    let mut group = c.benchmark_group("simulate");
    group.throughput(Throughput::Elements(pe_cycles));
    group.sample_size(20);
    group.bench_function(&id, |b| {
        b.iter(|| execute(black_box(&program), &config, black_box(&acts)).expect("runs"))
    });
    group.finish();
}

fn benchmarks(c: &mut Criterion) {
    for (name, rows, cols, density, act) in LAYERS {
        layer(c, name, rows, cols, density, act);
    }

    if !wanted("stepping/skip_ahead_1024") && !wanted("stepping/every_cycle_1024") {
        return;
    }
    let program = sparse_program(1024, 1024, 0.09, 64, FORMATS, 1024, 2);
    let acts = vec![random_activations(1024, 0.35, FORMATS.af, 2)];
    let config = SimConfig::default();
    let report = execute(&program, &config, &acts).expect("runs").report;
    let mut group = c.benchmark_group("stepping");
    group.throughput(Throughput::Elements(report.layers[0].compute_cycles * 64));
    group.sample_size(10);
    group.bench_function("skip_ahead_1024", |b| {
        b.iter(|| execute(black_box(&program), &config, black_box(&acts)).expect("runs"))
    });
    group.bench_function("every_cycle_1024", |b| {
        b.iter(|| {
            execute_with(
                black_box(&program),
                &config,
                black_box(&acts),
                Stepping::EveryCycle,
                None,
            )
            .expect("runs")
        })
    });
    group.finish();
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);

/// User + system CPU time of the calling thread, from /proc (Linux; clock ticks of 10 ms).
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
