//! The timing and arithmetic of one run: a tile's sparse matrix times the non-zero activations of
//! its source vector, on N PEs, computed broadcast by broadcast.
//!
//! Contract: `run_tile` gives exactly the cycle counts, per-PE busy/stall/starved cycles,
//! accumulator values and access counts that stepping the machine one cycle at a time gives
//! (`stepping::run_tile_stepped`, which tests compare against), but does work proportional to
//! broadcasts × PEs + entries instead of cycles × PEs.
//!
//! The machine, per cycle (every choice the paper leaves open is marked *choice*):
//! - CCU: the leading-non-zero detector finds the next non-zero activation however many zeros
//!   precede it (*choice*: zero skipping takes no cycle), and broadcasts (j, a_j) to every PE's
//!   FIFO, at most one per cycle, unless some FIFO is full. The full flag is registered (*choice*):
//!   a FIFO holding `depth` columns at the start of a cycle blocks that cycle's broadcast even if
//!   a slot frees in the same cycle. A broadcast written at the end of cycle b is visible at b + 1.
//! - FIFO: each PE works on the activation at its queue's head (§IV), so a column keeps its slot
//!   until the PE is done with it: until its last entry has issued, or, for a column with no
//!   entries in this PE, until its pointers have been read. Slots free in order (a column done
//!   early leaves with the head before it).
//! - Pointer unit: when idle and the pointer register is free (or being emptied this cycle), it
//!   takes the oldest queued column whose pointers are unread (looking past the head, so the next
//!   column's pointers are ready when the current one ends) and reads p[j], p[j+1] from the even
//!   and odd banks in `pointer_read_cycles` (1: both banks in parallel). A non-empty column's
//!   pointers wait in the pointer register for the matrix unit.
//! - Matrix unit: takes the pointer register when it finished the previous column (it may take it
//!   in the cycle after the pointers were read) and issues one entry per cycle into the arithmetic
//!   pipeline, the first in the cycle it takes the column. The 64-bit SRAM row buffer is refilled
//!   ahead of use, so reads never stall the stream (*choice*); a read is counted for every SRAM row
//!   a column touches except the row already in the buffer from the previous column.
//! - Arithmetic pipeline (4 stages): the accumulator is read in stage 2 and written in stage 4, so
//!   an entry issued at t depends on an earlier write to the same accumulator issued at t' when
//!   t - t' <= 2; the bypass forwards that value (no stall; counted, and the register-file read is
//!   saved). Entries of one column address strictly increasing rows, so only the first two entries
//!   of a column can meet the last two of the previous one.
//! - Statistics: the run's compute window is [0, C) with C the cycle after the last issue or
//!   pointer read (0 when every activation is zero). Per PE, each cycle of the window is busy (an
//!   entry issued), stall (no issue, but an unfinished column queued: pointer-read bubbles), or
//!   starved (nothing queued: waiting for the CCU, or finished before the busiest PE).
//!
//! Recurrences (k-th broadcast, PE p with n entries in column j_k; D = FIFO depth, L = pointer
//! read cycles):
//!   b_k = max(b_{k-1} + 1, max_p f^p_{k-D})                (FIFO of every PE has a free slot)
//!   r_k = max(b_k + 1, ptr_free)                           (pointer read starts)
//!   n = 0: ptr_free = r_k + L, the column's work ends at e_k = r_k + L
//!   n > 0: m_k = max(r_k + L, m_free); m_free = m_k + n; ptr_free = m_k; e_k = m_k + n
//!   f_k = max(f_{k-1}, e_k)                                (its slot is free from f_k on)

use sprig_eie::isa::mac;

/// One PE's share of a loaded tile: its column pointers (relative to `matrix_base`) and the
/// entries they index.
#[derive(Clone, Copy, Debug)]
pub struct PeSlice<'a> {
    /// p[0..=cols]; column j's entries are `entries[p[j]..p[j+1]]`.
    pub pointers: &'a [u16],
    /// The PE's sparse-matrix memory from `matrix_base` on: low nibble = weight code, high
    /// nibble = zeros before the entry.
    pub entries: &'a [u8],
    /// Where `entries[0]` sits in the PE's sparse-matrix SRAM (entry address), for read counting.
    pub matrix_base: u32,
}

/// A tile as the PEs hold it (pointer slices of `cols + 1` words; data checked as columns are walked).
#[derive(Clone, Debug)]
pub struct Tile<'a> {
    pub pes: Vec<PeSlice<'a>>,
    /// Columns (source activations) of the tile.
    pub cols: usize,
    /// Output rows of the tile; row i belongs to PE i mod N at local index i / N.
    pub rows: usize,
    /// 16 weights in Q(wf); entry 0 is 0.
    pub codebook: [i16; 16],
    /// Right shift from the product's Q(wf + af) to the accumulator's Q(of), 0..=30.
    pub shift: u8,
}

/// The timing parameters the engine needs (a projection of `SimConfig`).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub fifo_depth: usize,
    pub pointer_read_cycles: u64,
    pub entries_per_read: u32,
}

/// Counts of one run (or, summed, of a layer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunCounters {
    /// Cycles of the compute window.
    pub compute_cycles: u64,
    /// Non-zero activations broadcast.
    pub broadcasts: u64,
    /// Cycles the CCU had a non-zero activation ready but some FIFO was full.
    pub ccu_stall_cycles: u64,
    /// Entries with a non-zero code.
    pub useful_macs: u64,
    /// Padding entries (code 0) that went through the pipeline.
    pub padding_macs: u64,
    /// Accumulator reads served by the bypass.
    pub bypasses: u64,
    pub matrix_reads: u64,
    pub pointer_reads: u64,
    /// Source activations scanned by the leading-non-zero detector.
    pub activation_reads: u64,
    pub fifo_pushes: u64,
    pub fifo_pops: u64,
    /// Per PE.
    pub busy: Vec<u64>,
    pub stall: Vec<u64>,
    pub starved: Vec<u64>,
}

impl RunCounters {
    pub fn new(pes: usize) -> RunCounters {
        RunCounters {
            busy: vec![0; pes],
            stall: vec![0; pes],
            starved: vec![0; pes],
            ..RunCounters::default()
        }
    }

    /// Adds another run's counts (same PE count).
    pub fn add(&mut self, other: &RunCounters) {
        self.compute_cycles += other.compute_cycles;
        self.broadcasts += other.broadcasts;
        self.ccu_stall_cycles += other.ccu_stall_cycles;
        self.useful_macs += other.useful_macs;
        self.padding_macs += other.padding_macs;
        self.bypasses += other.bypasses;
        self.matrix_reads += other.matrix_reads;
        self.pointer_reads += other.pointer_reads;
        self.activation_reads += other.activation_reads;
        self.fifo_pushes += other.fifo_pushes;
        self.fifo_pops += other.fifo_pops;
        for (a, b) in self.busy.iter_mut().zip(&other.busy) {
            *a += b;
        }
        for (a, b) in self.stall.iter_mut().zip(&other.stall) {
            *a += b;
        }
        for (a, b) in self.starved.iter_mut().zip(&other.starved) {
            *a += b;
        }
    }
}

/// A machine fault: a walked column whose data addresses memory or rows the PE does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error(
        "PE {pe}: column {column}'s pointers {start}..{end} decrease or address past the sparse-matrix memory ({available} entries from the tile's base)"
    )]
    PointerRange {
        pe: usize,
        column: usize,
        start: u16,
        end: u16,
        available: usize,
    },
    #[error(
        "PE {pe}: column {column}'s entry at {address} addresses local row {row}, but the PE holds {rows} rows of this tile"
    )]
    RowRange {
        pe: usize,
        column: usize,
        address: usize,
        row: u32,
        rows: u32,
    },
}

/// Rows of a `rows`-row tile that PE `pe` of `pes` holds.
pub fn local_rows(rows: usize, pes: usize, pe: usize) -> usize {
    if pe >= rows {
        0
    } else {
        (rows - pe).div_ceil(pes)
    }
}

/// Checks column `column` of PE `pe`: its pointers, and that every non-zero entry addresses one
/// of the PE's `rows` local rows; returns the entry range. Both engines check exactly the
/// broadcast columns, in broadcast order and PE order within a broadcast, so they report the
/// same fault.
pub fn check_column(
    slice: &PeSlice<'_>,
    pe: usize,
    column: usize,
    rows: u32,
) -> Result<(usize, usize), Fault> {
    let (start, end) = (slice.pointers[column], slice.pointers[column + 1]);
    if start > end || usize::from(end) > slice.entries.len() {
        return Err(Fault::PointerRange {
            pe,
            column,
            start,
            end,
            available: slice.entries.len(),
        });
    }
    let (start, end) = (usize::from(start), usize::from(end));
    let mut next_row = 0u32;
    for (i, &e) in slice.entries[start..end].iter().enumerate() {
        let row = next_row + u32::from(e >> 4);
        if e & 15 != 0 && row >= rows {
            return Err(Fault::RowRange {
                pe,
                column,
                address: slice.matrix_base as usize + start + i,
                row,
                rows,
            });
        }
        next_row = row + 1;
    }
    Ok((start, end))
}

/// The per-(broadcast, PE) facts the timing pass needs from the data pass: the column's entry
/// count (low 16 bits) and three row-equality flags for the bypass (bit 16: the column's first
/// entry addresses the row of the PE's last issued entry; bit 17: of its second-to-last; bit 18:
/// the column's second entry addresses the row of the last issued entry).
const FIRST_IS_LAST: u32 = 1 << 16;
const FIRST_IS_SECOND: u32 = 1 << 17;
const SECOND_IS_LAST: u32 = 1 << 18;

/// The fault the machine meets first: broadcast order, then PE order.
fn first_fault(tile: &Tile<'_>, nonzero: &[(u32, i16)], rows: &[u32], found: Fault) -> Fault {
    for &(j, _) in nonzero {
        for (p, slice) in tile.pes.iter().enumerate() {
            if let Err(fault) = check_column(slice, p, j as usize, rows[p]) {
                return fault;
            }
        }
    }
    found
}

/// Runs a tile over `acts` (its source vector, `tile.cols` long), accumulating into `acc`
/// (`tile.rows` long, in Q(of)) and adding the run's counts to `counters`. On a fault the
/// accumulators and counters hold partial results and the machine is expected to stop.
///
/// Two passes, equivalent to evaluating the machine broadcast by broadcast:
/// 1. Data, PE by PE over the broadcast columns (each PE's pointers and entries are read as one
///    stream): faults, the multiply-accumulates (each row still accumulates in column order, so
///    the sums are the same), SRAM row reads, and per (broadcast, PE) the entry count and the
///    row-equality flags of the bypass. None of these depend on timing.
/// 2. Timing, broadcast by broadcast over the compact per-(broadcast, PE) table: the
///    recurrences above, the per-PE cycle categories, and the bypasses (a flag counts when the
///    issue-cycle distance it implies is at most 2).
pub fn run_tile(
    timing: &Timing,
    tile: &Tile<'_>,
    acts: &[i16],
    acc: &mut [i32],
    counters: &mut RunCounters,
) -> Result<(), Fault> {
    let pes = tile.pes.len();
    debug_assert_eq!(acts.len(), tile.cols);
    debug_assert_eq!(acc.len(), tile.rows);
    let rows: Vec<u32> = (0..pes)
        .map(|p| local_rows(tile.rows, pes, p) as u32)
        .collect();
    let nonzero: Vec<(u32, i16)> = acts
        .iter()
        .enumerate()
        .filter(|(_, a)| **a != 0)
        .map(|(j, &a)| (j as u32, a))
        .collect();
    let broadcasts = nonzero.len();
    let per_read = u64::from(timing.entries_per_read);

    // Pass 1: data.
    let mut work = vec![0u32; broadcasts * pes];
    let mut useful = 0u64;
    let mut padding = 0u64;
    let mut matrix_reads = 0u64;
    for (p, slice) in tile.pes.iter().enumerate() {
        let rows_p = rows[p];
        let base = u64::from(slice.matrix_base);
        let mut row_buffer = u64::MAX;
        // Rows of the PE's last and second-to-last issued entries.
        let (mut last, mut second) = (u32::MAX, u32::MAX);
        for (k, &(j, a)) in nonzero.iter().enumerate() {
            let j = j as usize;
            let (start, end) = (slice.pointers[j], slice.pointers[j + 1]);
            if start > end || usize::from(end) > slice.entries.len() {
                let found = Fault::PointerRange {
                    pe: p,
                    column: j,
                    start,
                    end,
                    available: slice.entries.len(),
                };
                return Err(first_fault(tile, &nonzero, &rows, found));
            }
            if start == end {
                continue;
            }
            let (start, end) = (usize::from(start), usize::from(end));
            let entries = &slice.entries[start..end];
            let mut next_row = 0u32;
            let mut rows_seen = [0u32; 2];
            for (e_index, &e) in entries.iter().enumerate() {
                let x = next_row + u32::from(e >> 4);
                next_row = x + 1;
                if e_index < 2 {
                    rows_seen[e_index] = x;
                }
                let code = e & 15;
                if code != 0 {
                    if x >= rows_p {
                        let found = Fault::RowRange {
                            pe: p,
                            column: j,
                            address: slice.matrix_base as usize + start + e_index,
                            row: x,
                            rows: rows_p,
                        };
                        return Err(first_fault(tile, &nonzero, &rows, found));
                    }
                    let index = x as usize * pes + p;
                    acc[index] = mac(acc[index], tile.codebook[usize::from(code)], a, tile.shift);
                } else {
                    padding += 1;
                }
            }
            let n = entries.len();
            useful += n as u64;
            let mut cell = n as u32;
            if rows_seen[0] == last {
                cell |= FIRST_IS_LAST;
            }
            if rows_seen[0] == second {
                cell |= FIRST_IS_SECOND;
            }
            if n >= 2 && rows_seen[1] == last {
                cell |= SECOND_IS_LAST;
            }
            work[k * pes + p] = cell;
            // The last two rows issued (`next_row - 1` is the last entry's row).
            if n >= 2 {
                let before_last = next_row - 1 - 1 - u32::from(entries[n - 1] >> 4);
                second = before_last;
            } else {
                second = last;
            }
            last = next_row - 1;
            // SRAM rows touched, minus the one still in the buffer.
            let first_row = (base + start as u64) / per_read;
            let last_row = (base + end as u64 - 1) / per_read;
            matrix_reads += last_row - first_row + 1;
            if row_buffer == first_row {
                matrix_reads -= 1;
            }
            row_buffer = last_row;
        }
    }
    useful -= padding;

    // Pass 2: timing.
    let depth = timing.fifo_depth;
    let l = timing.pointer_read_cycles;
    let mut ptr_free = vec![0u64; pes];
    let mut m_free = vec![0u64; pes];
    let mut cover_until = vec![0u64; pes];
    let mut cover_len = vec![0u64; pes];
    let mut busy = vec![0u64; pes];
    // Issue cycles of each PE's last and second-to-last entries (far in the past at first).
    let mut t_last = vec![0u64; pes];
    let mut t_second = vec![0u64; pes];
    let mut issued_any = vec![0u8; pes];
    // Over PEs, the cycle from which each of the last `depth` broadcasts has a free slot.
    let mut slot_ring = vec![0u64; depth];
    let mut bypasses = 0u64;
    let mut prev_b: Option<u64> = None;
    let mut window_end = 0u64;
    for k in 0..broadcasts {
        let earliest = prev_b.map_or(0, |b| b + 1);
        let b = if k >= depth {
            earliest.max(slot_ring[k % depth])
        } else {
            earliest
        };
        counters.ccu_stall_cycles += b - earliest;
        prev_b = Some(b);
        let row = &work[k * pes..(k + 1) * pes];
        let mut max_free = 0u64;
        // Struct-of-arrays state indexed by PE.
        #[allow(clippy::needless_range_loop)]
        for p in 0..pes {
            let cell = row[p];
            let n = u64::from(cell & 0xFFFF);
            let r = (b + 1).max(ptr_free[p]);
            let work_end = if n == 0 {
                ptr_free[p] = r + l;
                r + l
            } else {
                let m = (r + l).max(m_free[p]);
                // Bypass: the accumulator is read 1 cycle and written 3 cycles after issue.
                // (At most one forwarded read per entry.)
                if (issued_any[p] >= 1 && cell & FIRST_IS_LAST != 0 && m - t_last[p] <= 2)
                    || (issued_any[p] >= 2 && cell & FIRST_IS_SECOND != 0 && m - t_second[p] <= 2)
                {
                    bypasses += 1;
                }
                if issued_any[p] >= 1 && cell & SECOND_IS_LAST != 0 && m + 1 - t_last[p] <= 2 {
                    bypasses += 1;
                }
                if n >= 2 {
                    t_second[p] = m + n - 2;
                    issued_any[p] = 2;
                } else {
                    t_second[p] = t_last[p];
                    issued_any[p] = (issued_any[p] + 1).min(2);
                }
                t_last[p] = m + n - 1;
                m_free[p] = m + n;
                ptr_free[p] = m;
                busy[p] += n;
                m + n
            };
            if work_end > cover_until[p] {
                cover_len[p] += work_end - (b + 1).max(cover_until[p]);
                cover_until[p] = work_end;
            }
            max_free = max_free.max(cover_until[p]);
        }
        window_end = window_end.max(max_free);
        slot_ring[k % depth] = max_free;
    }
    let broadcasts = broadcasts as u64;
    counters.compute_cycles += window_end;
    counters.broadcasts += broadcasts;
    counters.useful_macs += useful;
    counters.padding_macs += padding;
    counters.bypasses += bypasses;
    counters.matrix_reads += matrix_reads;
    counters.pointer_reads += 2 * broadcasts * pes as u64;
    counters.activation_reads += acts.len() as u64;
    counters.fifo_pushes += broadcasts * pes as u64;
    counters.fifo_pops += broadcasts * pes as u64;
    for p in 0..pes {
        counters.busy[p] += busy[p];
        counters.stall[p] += cover_len[p] - busy[p];
        counters.starved[p] += window_end - cover_len[p];
    }
    Ok(())
}
