//! Per-cycle traces of a simulation, as CSV or as Chrome trace JSON (chrome://tracing, Perfetto).
//!
//! Contract: both writers take the run traces of `machine::execute_with` and produce text that
//! depends only on them (deterministic). CSV has one row per cycle for the CCU and one per PE:
//! `cycle,layer,unit,state,column,row,fifo` (`cycle` counts from the program's start; `state` is
//! `broadcast`/`blocked`/`idle` for the CCU, `busy`/`stall`/`starved` for a PE; `fifo` is the
//! PE's FIFO occupancy at the start of the cycle). The Chrome trace merges consecutive cycles of
//! the same state (and column) into one complete event per unit, with 1 µs of trace time per cycle.

use crate::machine::RunTrace;
use crate::stepping::PeActivity;
use std::fmt::Write;

/// Rows a CSV trace of `traces` has (without the header).
pub fn records(traces: &[RunTrace]) -> u64 {
    traces
        .iter()
        .flat_map(|t| &t.cycles)
        .map(|c| 1 + c.pes.len() as u64)
        .sum()
}

/// The CSV form.
pub fn to_csv(traces: &[RunTrace]) -> String {
    let mut out = String::from("cycle,layer,unit,state,column,row,fifo\n");
    for run in traces {
        for record in &run.cycles {
            let cycle = run.start_cycle + record.cycle;
            let (state, column) = match (record.broadcast, record.ccu_blocked) {
                (Some(j), _) => ("broadcast", j.to_string()),
                (None, true) => ("blocked", String::new()),
                (None, false) => ("idle", String::new()),
            };
            let _ = writeln!(out, "{cycle},{},ccu,{state},{column},,", run.layer);
            for (pe, (activity, fifo)) in record.pes.iter().enumerate() {
                let _ = match activity {
                    PeActivity::Busy { column, row } => writeln!(
                        out,
                        "{cycle},{},pe{pe},busy,{column},{row},{fifo}",
                        run.layer
                    ),
                    PeActivity::Stall => {
                        writeln!(out, "{cycle},{},pe{pe},stall,,,{fifo}", run.layer)
                    }
                    PeActivity::Starved => {
                        writeln!(out, "{cycle},{},pe{pe},starved,,,{fifo}", run.layer)
                    }
                };
            }
        }
    }
    out
}

/// A unit's state in one cycle, for merging.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Span {
    Busy(u32),
    Stall,
    Starved,
    Broadcast,
    Blocked,
    Idle,
}

impl Span {
    fn name(self) -> String {
        match self {
            Span::Busy(j) => format!("column {j}"),
            Span::Stall => "stall".into(),
            Span::Starved => "starved".into(),
            Span::Broadcast => "broadcast".into(),
            Span::Blocked => "blocked".into(),
            Span::Idle => "idle".into(),
        }
    }
}

/// The Chrome trace JSON form: thread 0 is the CCU, thread p + 1 is PE p.
pub fn to_chrome_json(traces: &[RunTrace]) -> String {
    let mut events = Vec::new();
    let units = traces
        .iter()
        .flat_map(|t| t.cycles.first())
        .map(|c| c.pes.len())
        .max()
        .unwrap_or(0);
    events.push(serde_json::json!({
        "ph": "M", "pid": 0, "tid": 0, "name": "thread_name", "args": {"name": "CCU"}
    }));
    for pe in 0..units {
        events.push(serde_json::json!({
            "ph": "M", "pid": 0, "tid": pe + 1, "name": "thread_name", "args": {"name": format!("PE {pe}")}
        }));
    }
    for run in traces {
        // Per unit: the open span (state, start cycle).
        let mut open: Vec<Option<(Span, u64)>> = vec![None; units + 1];
        let close =
            |events: &mut Vec<serde_json::Value>, tid: usize, span: Span, from: u64, to: u64| {
                let mut event = serde_json::json!({
                    "ph": "X", "pid": 0, "tid": tid, "ts": from, "dur": to - from,
                    "name": span.name(), "cat": format!("layer {}", run.layer)
                });
                if let Span::Busy(j) = span {
                    event["args"] = serde_json::json!({ "column": j });
                }
                events.push(event);
            };
        let end = run.start_cycle + run.cycles.len() as u64;
        for record in &run.cycles {
            let cycle = run.start_cycle + record.cycle;
            let ccu = match (record.broadcast, record.ccu_blocked) {
                (Some(_), _) => Span::Broadcast,
                (None, true) => Span::Blocked,
                (None, false) => Span::Idle,
            };
            let states = std::iter::once(ccu).chain(record.pes.iter().map(|(a, _)| match a {
                PeActivity::Busy { column, .. } => Span::Busy(*column),
                PeActivity::Stall => Span::Stall,
                PeActivity::Starved => Span::Starved,
            }));
            for (tid, span) in states.enumerate() {
                match open[tid] {
                    Some((current, _)) if current == span => {}
                    Some((current, from)) => {
                        close(&mut events, tid, current, from, cycle);
                        open[tid] = Some((span, cycle));
                    }
                    None => open[tid] = Some((span, cycle)),
                }
            }
        }
        for (tid, slot) in open.iter().enumerate() {
            if let Some((span, from)) = *slot {
                close(&mut events, tid, span, from, end);
            }
        }
    }
    let document = serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ns" });
    let mut text = serde_json::to_string(&document).unwrap_or_default();
    text.push('\n');
    text
}
