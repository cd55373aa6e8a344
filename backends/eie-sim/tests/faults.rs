//! Programs that would make the machine fault, machines the simulator does not model, and inputs
//! that do not fit give errors naming the reason, never a panic; traces and the energy table.

mod common;

use common::{Formats, encode_program, random_activations, random_layer};
use proptest::prelude::*;
use sprig_eie::isa::{Activation, Instruction};
use sprig_eie_sim::{
    EnergyTable, SimConfig, SimError, Stepping, execute, execute_with, quantize_inputs, trace,
};

const FORMATS: Formats = Formats {
    wf: 12,
    af: 10,
    of: 10,
};

fn small() -> (sprig_eie::isa::Program, Vec<i16>) {
    let layer = random_layer(40, 30, 0.3, FORMATS, Activation::Relu, 9);
    let acts = random_activations(30, 1.0, FORMATS.af, 9);
    (encode_program(&layer, 4, FORMATS, 30), acts)
}

fn machine(pes: usize) -> SimConfig {
    SimConfig {
        pes,
        ..SimConfig::default()
    }
}

#[test]
fn decreasing_pointers_fault() {
    let (mut program, acts) = small();
    for instruction in &mut program.instructions {
        if let Instruction::LoadPointers {
            pe: 2, pointers, ..
        } = instruction
        {
            *pointers.last_mut().unwrap() = 0;
        }
    }
    let error = execute(&program, &machine(4), &[acts]).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("machine fault") && text.contains("PE 2"),
        "{text}"
    );
    assert!(
        text.contains("column 29") && text.contains("decrease"),
        "{text}"
    );
}

#[test]
fn entries_beyond_the_tile_rows_fault() {
    let (mut program, acts) = small();
    for instruction in &mut program.instructions {
        if let Instruction::LoadMatrix { pe: 1, entries, .. } = instruction {
            // A code-1 entry with 15 zeros before it: local row >= 15, but PE 1 holds 10 rows.
            entries[0] = 0xF1;
        }
    }
    let error = execute(&program, &machine(4), &[acts]).unwrap_err();
    assert!(error.to_string().contains("local row"), "{error}");
}

#[test]
fn machine_and_input_mismatches_are_errors() {
    let (program, acts) = small();
    assert!(matches!(
        execute(&program, &machine(8), std::slice::from_ref(&acts)),
        Err(SimError::PeMismatch {
            program: 4,
            configured: 8
        })
    ));
    assert!(matches!(
        execute(&program, &machine(4), &[acts[..10].to_vec()]),
        Err(SimError::InputLength { .. })
    ));
    assert!(matches!(
        execute(&program, &machine(4), &[]),
        Err(SimError::InputCount { .. })
    ));
    assert!(quantize_inputs(&program, &[vec![0.5; 29]]).is_err());
    for bad in [
        SimConfig {
            pes: 0,
            ..machine(4)
        },
        SimConfig {
            pes: 257,
            ..machine(4)
        },
        SimConfig {
            fifo_depth: 0,
            ..machine(4)
        },
        SimConfig {
            sram_width_bits: 12,
            ..machine(4)
        },
        SimConfig {
            clock_mhz: 0.0,
            ..machine(4)
        },
    ] {
        let error = execute(&program, &bad, std::slice::from_ref(&acts)).unwrap_err();
        assert!(matches!(error, SimError::Config(_)), "{error}");
    }
    let mut no_halt = program.clone();
    no_halt.instructions.pop();
    assert!(matches!(
        execute(&no_halt, &machine(4), std::slice::from_ref(&acts)),
        Err(SimError::NoHalt)
    ));
}

#[test]
fn energy_table_overrides_by_json() {
    let table = EnergyTable::from_json(r#"{"multiply_pj": 1.5}"#).unwrap();
    assert_eq!(table.multiply_pj, 1.5);
    assert_eq!(table.add_pj, EnergyTable::eie_45nm().add_pj);
    let error = EnergyTable::from_json(r#"{"multiply": 1.5}"#).unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
    let defaults = EnergyTable::eie_45nm();
    // 20 pJ per 64-bit read of the 128 KB sparse-matrix SRAM.
    assert!((defaults.matrix_read_pj_per_bit * 64.0 - 20.0).abs() < 1e-9);

    let (program, acts) = small();
    let base = execute(&program, &machine(4), std::slice::from_ref(&acts)).unwrap();
    let doubled = SimConfig {
        energy: EnergyTable {
            multiply_pj: 2.0 * defaults.multiply_pj,
            ..defaults.clone()
        },
        ..machine(4)
    };
    let more = execute(&program, &doubled, &[acts]).unwrap();
    let extra = more.report.total.energy_uj - base.report.total.energy_uj;
    let expected = base.report.total.macs as f64 * defaults.multiply_pj * 1e-6;
    assert!((extra - expected).abs() < 1e-12, "{extra} vs {expected}");
}

#[test]
fn traces_hold_every_cycle_of_every_unit() {
    let (program, acts) = small();
    let mut runs = Vec::new();
    let sim = execute_with(
        &program,
        &machine(4),
        &[acts],
        Stepping::EveryCycle,
        Some(&mut runs),
    )
    .unwrap();
    let compute: u64 = sim.report.layers.iter().map(|l| l.compute_cycles).sum();
    assert_eq!(trace::records(&runs), compute * 5);
    let csv = trace::to_csv(&runs);
    assert_eq!(csv.lines().count() as u64, 1 + compute * 5);
    assert!(csv.starts_with("cycle,layer,unit,state,column,row,fifo\n"));
    let busy = csv.lines().filter(|l| l.contains(",busy,")).count() as u64;
    assert_eq!(busy, sim.report.total.macs);
    let json: serde_json::Value = serde_json::from_str(&trace::to_chrome_json(&runs)).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let busy_cycles: u64 = events
        .iter()
        .filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with("column")))
        .map(|e| e["dur"].as_u64().unwrap())
        .sum();
    assert_eq!(busy_cycles, sim.report.total.macs);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Corrupted pointer and matrix data never panic: either the run completes or it faults.
    #[test]
    fn corrupted_memories_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u16>()), 1..6),
        stepped in any::<bool>(),
    ) {
        let (mut program, acts) = small();
        let loads: Vec<usize> = program
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i, Instruction::LoadPointers { .. } | Instruction::LoadMatrix { .. }))
            .map(|(k, _)| k)
            .collect();
        for (which, at, value) in edits {
            match &mut program.instructions[*which.get(&loads)] {
                Instruction::LoadPointers { pointers, .. } => {
                    *at.get_mut(pointers) = value;
                }
                Instruction::LoadMatrix { entries, .. } => {
                    *at.get_mut(entries) = value as u8;
                }
                _ => unreachable!(),
            }
        }
        let stepping = if stepped { Stepping::EveryCycle } else { Stepping::SkipAhead };
        let fast = execute_with(&program, &machine(4), std::slice::from_ref(&acts), Stepping::SkipAhead, None);
        let other = execute_with(&program, &machine(4), &[acts], stepping, None);
        prop_assert_eq!(fast, other);
    }
}
