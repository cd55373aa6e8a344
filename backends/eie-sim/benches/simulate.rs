//! Simulator speed in PE-cycles per second: VGG-6 (25088 inputs, 4096 outputs, 4% weights,
//! 18.3% activations) and Alex-7 (4096 × 4096, 9%, 35.3%) at 64 PEs, skip-ahead; and a smaller
//! layer stepped every cycle against skip-ahead. Criterion's throughput is PE-cycles (the
//! compute windows' cycles × PEs), so its "elem/s" is PE-cycles per second.

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

fn layer(c: &mut Criterion, name: &str, rows: usize, cols: usize, density: f64, act: f64) {
    let program = sparse_program(rows, cols, density, 64, FORMATS, 4096, 6);
    let acts = vec![random_activations(cols, act, FORMATS.af, 6)];
    let config = SimConfig::default();
    let report = execute(&program, &config, &acts).expect("runs").report;
    let pe_cycles = report.layers[0].compute_cycles * 64;
    let l = &report.layers[0];
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{name}: {} cycles ({} compute, {pe_cycles} PE-cycles), {} broadcasts, {} MACs, load balance {:.3}",
            l.cycles, l.compute_cycles, l.broadcasts, l.macs, l.load_balance_efficiency
        );
    }
    // On a shared machine wall time overstates the cost: also report this thread's CPU time.
    if let Some(before) = thread_cpu_seconds() {
        let runs = 40;
        for _ in 0..runs {
            black_box(execute(black_box(&program), &config, black_box(&acts)).expect("runs"));
        }
        if let Some(after) = thread_cpu_seconds() {
            let per_run = (after - before) / f64::from(runs);
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "{name}: {:.2} ms CPU per simulation, {:.0} million PE-cycles per CPU second",
                    per_run * 1e3,
                    pe_cycles as f64 / per_run / 1e6
                );
            }
        }
    }
    let mut group = c.benchmark_group("simulate");
    group.throughput(Throughput::Elements(pe_cycles));
    group.sample_size(20);
    group.bench_function(name, |b| {
        b.iter(|| execute(black_box(&program), &config, black_box(&acts)).expect("runs"))
    });
    group.finish();
}

fn benchmarks(c: &mut Criterion) {
    layer(c, "vgg6_64pe", 4096, 25088, 0.04, 0.183);
    layer(c, "alex7_64pe", 4096, 4096, 0.09, 0.353);

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
