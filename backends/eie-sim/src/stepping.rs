//! The same machine as [`crate::engine`], stepped one cycle at a time with explicit FIFOs,
//! pointer unit, pointer register and matrix unit per PE.
//!
//! Contract: `run_tile_stepped` gives the same accumulators, counters and fault as
//! `engine::run_tile` for every tile, input and timing (tests check it); it exists as the
//! plain statement of the cycle semantics that the skip-ahead engine must reproduce, and to
//! record per-cycle traces. Each cycle evaluates every unit from the state at the start of the
//! cycle (propagate) and then commits (update): the CCU's full test sees the FIFO occupancy at the
//! start of the cycle and its broadcast is visible from the next cycle.

use crate::engine::{Fault, RunCounters, Tile, Timing, check_column, local_rows};
use sprig_eie::isa::mac;
use std::collections::VecDeque;

/// What a PE did in one cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeActivity {
    /// Issued the entry of `column` at local row `row` into the arithmetic pipeline.
    Busy { column: u32, row: u32 },
    /// Had an unfinished column queued but issued nothing.
    Stall,
    /// Had nothing to do.
    Starved,
}

/// One cycle of one run, as recorded for traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleRecord {
    /// Cycle within the run.
    pub cycle: u64,
    /// Column the CCU broadcast this cycle.
    pub broadcast: Option<u32>,
    /// The CCU had a non-zero activation ready but a FIFO was full.
    pub ccu_blocked: bool,
    /// Per PE: activity and FIFO occupancy at the start of the cycle.
    pub pes: Vec<(PeActivity, u16)>,
}

#[derive(Clone, Copy)]
struct Queued {
    /// Broadcast number.
    k: usize,
    index: u32,
    activation: i16,
    /// The PE is done with the column (it leaves when it reaches the head).
    done: bool,
}

/// Marks broadcast `k` done in a FIFO holding consecutive broadcasts.
fn done(fifo: &mut VecDeque<Queued>, k: usize) {
    let first = fifo.front().map_or(k, |q| q.k);
    if let Some(q) = fifo.get_mut(k - first) {
        q.done = true;
    }
}

struct Column {
    /// Broadcast number.
    k: usize,
    index: u32,
    activation: i16,
    start: usize,
    end: usize,
}

struct MatrixWork {
    column: Column,
    position: usize,
    next_row: u32,
}

/// Steps the tile's run cycle by cycle; see [`crate::engine::run_tile`] for the arguments.
/// When `trace` is given, one record per cycle is appended to it.
pub fn run_tile_stepped(
    timing: &Timing,
    tile: &Tile<'_>,
    acts: &[i16],
    acc: &mut [i32],
    counters: &mut RunCounters,
    mut trace: Option<&mut Vec<CycleRecord>>,
) -> Result<(), Fault> {
    let pes = tile.pes.len();
    let rows: Vec<u32> = (0..pes)
        .map(|p| local_rows(tile.rows, pes, p) as u32)
        .collect();
    let nonzero: Vec<usize> = (0..acts.len()).filter(|&j| acts[j] != 0).collect();
    // Faults first, in broadcast order and PE order, as the engine meets them.
    let mut ranges = Vec::with_capacity(nonzero.len() * pes);
    for &j in &nonzero {
        for (p, slice) in tile.pes.iter().enumerate() {
            ranges.push(check_column(slice, p, j, rows[p])?);
        }
    }
    let per_read = timing.entries_per_read as usize;
    // Per PE: the queued columns (broadcast number, column, activation, done), in order; the
    // first `read[p]` of them have had their pointer read started.
    let mut fifo: Vec<VecDeque<Queued>> = vec![VecDeque::new(); pes];
    let mut read: Vec<usize> = vec![0; pes];
    let mut pointer_unit: Vec<Option<(Column, u64)>> = (0..pes).map(|_| None).collect();
    let mut register: Vec<Option<Column>> = (0..pes).map(|_| None).collect();
    let mut matrix: Vec<Option<MatrixWork>> = (0..pes).map(|_| None).collect();
    let mut last_issue: Vec<[(u64, u32); 2]> = vec![[(u64::MAX / 2, u32::MAX); 2]; pes];
    let mut row_buffer: Vec<usize> = vec![usize::MAX; pes];
    let mut next = 0usize;
    let mut t = 0u64;
    loop {
        let idle = next == nonzero.len() && fifo.iter().all(VecDeque::is_empty);
        if idle {
            break;
        }
        let ready = next < nonzero.len();
        let broadcast = ready && fifo.iter().all(|f| f.len() < timing.fifo_depth);
        if ready && !broadcast {
            counters.ccu_stall_cycles += 1;
        }
        let mut record = trace.as_ref().map(|_| CycleRecord {
            cycle: t,
            broadcast: broadcast.then(|| nonzero[next] as u32),
            ccu_blocked: ready && !broadcast,
            pes: Vec::with_capacity(pes),
        });
        for p in 0..pes {
            let slice = &tile.pes[p];
            // Every column the PE has not finished is in its FIFO.
            let had_pending = !fifo[p].is_empty();
            let fifo_len = fifo[p].len() as u16;
            // Matrix unit: take the pointer register when free, issue one entry.
            if matrix[p].is_none()
                && let Some(column) = register[p].take()
            {
                matrix[p] = Some(MatrixWork {
                    position: column.start,
                    column,
                    next_row: 0,
                });
            }
            let mut activity = if had_pending {
                PeActivity::Stall
            } else {
                PeActivity::Starved
            };
            if let Some(work) = matrix[p].as_mut() {
                let address = work.position;
                let e = slice.entries[address];
                let x = work.next_row + u32::from(e >> 4);
                work.next_row = x + 1;
                if last_issue[p]
                    .iter()
                    .any(|&(tp, rp)| rp == x && tp <= t && t - tp <= 2)
                {
                    counters.bypasses += 1;
                }
                last_issue[p] = [last_issue[p][1], (t, x)];
                let sram_row = (slice.matrix_base as usize + address) / per_read;
                if sram_row != row_buffer[p] {
                    counters.matrix_reads += 1;
                    row_buffer[p] = sram_row;
                }
                let code = e & 15;
                if code != 0 {
                    counters.useful_macs += 1;
                    let index = x as usize * pes + p;
                    acc[index] = mac(
                        acc[index],
                        tile.codebook[usize::from(code)],
                        work.column.activation,
                        tile.shift,
                    );
                } else {
                    counters.padding_macs += 1;
                }
                activity = PeActivity::Busy {
                    column: work.column.index,
                    row: x,
                };
                work.position += 1;
                if work.position == work.column.end {
                    done(&mut fifo[p], work.column.k);
                    matrix[p] = None;
                }
            }
            // Pointer unit: when idle and the register is free, read the next unread column.
            if pointer_unit[p].is_none()
                && register[p].is_none()
                && let Some(&queued) = fifo[p].get(read[p])
            {
                read[p] += 1;
                counters.pointer_reads += 2;
                let (start, end) = ranges[queued.k * pes + p];
                pointer_unit[p] = Some((
                    Column {
                        k: queued.k,
                        index: queued.index,
                        activation: queued.activation,
                        start,
                        end,
                    },
                    timing.pointer_read_cycles,
                ));
            }
            if let Some((column, remaining)) = pointer_unit[p].take() {
                if remaining > 1 {
                    pointer_unit[p] = Some((column, remaining - 1));
                } else if column.end > column.start {
                    register[p] = Some(column);
                } else {
                    done(&mut fifo[p], column.k);
                }
            }
            // Columns done leave the FIFO at the end of the cycle, in order.
            while fifo[p].front().is_some_and(|q| q.done) {
                fifo[p].pop_front();
                read[p] -= 1;
                counters.fifo_pops += 1;
            }
            match activity {
                PeActivity::Busy { .. } => counters.busy[p] += 1,
                PeActivity::Stall => counters.stall[p] += 1,
                PeActivity::Starved => counters.starved[p] += 1,
            }
            if let Some(record) = record.as_mut() {
                record.pes.push((activity, fifo_len));
            }
        }
        if broadcast {
            let j = nonzero[next];
            for f in fifo.iter_mut() {
                f.push_back(Queued {
                    k: next,
                    index: j as u32,
                    activation: acts[j],
                    done: false,
                });
            }
            counters.fifo_pushes += pes as u64;
            next += 1;
        }
        if let (Some(sink), Some(record)) = (trace.as_deref_mut(), record) {
            sink.push(record);
        }
        t += 1;
    }
    counters.compute_cycles += t;
    counters.broadcasts += nonzero.len() as u64;
    counters.activation_reads += acts.len() as u64;
    Ok(())
}
