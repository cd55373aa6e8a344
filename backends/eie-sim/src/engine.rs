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

use sprig_eie::isa::shift_round;
use std::ops::Range;

/// One PE's share of a loaded tile: its column pointers (relative to `matrix_base`) and the
/// entries they index.
#[derive(Clone, Copy, Debug)]
pub struct PeSlice<'a> {
    /// p[0..=cols]; column j's entries are `entries[p[j]..p[j+1]]`.
    pub pointers: &'a [u16],
    /// The PE's sparse-matrix memory from `matrix_base` on: low nibble = weight code, high
    /// nibble = zeros before the entry. It reaches at least as far as every pointer of the tile
    /// that is within `available` (it may stop before `available`).
    pub entries: &'a [u8],
    /// Entries the PE's memory holds from `matrix_base` on: a column whose end pointer exceeds
    /// it faults.
    pub available: usize,
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
    if start > end || usize::from(end) > slice.available {
        return Err(Fault::PointerRange {
            pe,
            column,
            start,
            end,
            available: slice.available,
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
/// the column's second entry addresses the row of the last issued entry). A flag implies that
/// the PE issued the entries it compares with (rows of entries never equal `u32::MAX`, the
/// "none yet" row).
const FIRST_IS_LAST: u32 = 1 << 16;
const FIRST_IS_SECOND: u32 = 1 << 17;
const SECOND_IS_LAST: u32 = 1 << 18;
const COUNT_MASK: u32 = 0xFFFF;

/// The fault the machine meets first: broadcast order, then PE order.
fn first_fault(tile: &Tile<'_>, columns: &[u32], rows: &[u32], found: Fault) -> Fault {
    for &j in columns {
        for (p, slice) in tile.pes.iter().enumerate() {
            if let Err(fault) = check_column(slice, p, j as usize, rows[p]) {
                return fault;
            }
        }
    }
    found
}

/// Entries of `entries` whose code (low nibble) is 0, i.e. padding.
pub fn zero_codes(entries: &[u8]) -> u64 {
    // A byte counter per vector lane, summed before it can wrap.
    entries
        .chunks(usize::from(u8::MAX))
        .map(|chunk| {
            let zeros = chunk
                .iter()
                .fold(0u8, |n, &e| n.wrapping_add(u8::from(e & 15 == 0)));
            u64::from(zeros)
        })
        .sum()
}

/// Working memory of `run_tile`, kept between runs so that a program's runs reuse it.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Broadcast columns, in order.
    columns: Vec<u32>,
    /// Per broadcast, the addend of each code: `shift_round(codebook[c] * a, shift)`, 0 for code 0.
    addends: Vec<[i32; 16]>,
    /// Per (broadcast of the current block, PE), `k * pes + p`: entry count and bypass flags.
    work: Vec<u32>,
    /// Accumulators PE by PE (`p * stride + local row`).
    local_acc: Vec<i32>,
    rows: Vec<u32>,
    walks: Vec<PeWalk>,
    pe_state: PeTimingState,
    slot_ring: Vec<u32>,
}

/// Broadcasts evaluated per block by both passes.
const BLOCK: usize = 128;

/// Per-PE timing state of a run, struct of arrays. Cycles fit in 32 bits: a run's window is at
/// most broadcasts × (2 + pointer read cycles + entries per column) < 2^14 × (2 + 64 + 2^16)
/// < 2^31 (at most `POINTER_WORDS` - 1 columns, pointers of 16 bits, at most 64 read cycles).
#[derive(Debug, Default)]
struct PeTimingState {
    /// The pointer unit is free from this cycle on.
    ptr_free: Vec<u32>,
    /// The matrix unit is free from this cycle on.
    m_free: Vec<u32>,
    /// Cycles up to which the PE has had an unfinished column queued, and how many of them.
    cover_until: Vec<u32>,
    cover_len: Vec<u32>,
    busy: Vec<u32>,
    /// Issue cycles of the PE's last and second-to-last entries (valid once the bypass flags
    /// that compare with them can be set).
    t_last: Vec<u32>,
    t_second: Vec<u32>,
}

impl PeTimingState {
    fn reset(&mut self, pes: usize) {
        for v in [
            &mut self.ptr_free,
            &mut self.m_free,
            &mut self.cover_until,
            &mut self.cover_len,
            &mut self.busy,
            &mut self.t_last,
            &mut self.t_second,
        ] {
            v.clear();
            v.resize(pes, 0);
        }
    }
}

/// The SRAM row of an entry address: a shift when a row holds a power of two entries.
#[derive(Clone, Copy)]
enum SramRows {
    Shift(u32),
    Divide(u64),
}

impl SramRows {
    fn new(entries_per_read: u32) -> SramRows {
        if entries_per_read.is_power_of_two() {
            SramRows::Shift(entries_per_read.trailing_zeros())
        } else {
            SramRows::Divide(u64::from(entries_per_read))
        }
    }

    #[inline(always)]
    fn row(self, address: u64) -> u64 {
        match self {
            SramRows::Shift(shift) => address >> shift,
            SramRows::Divide(entries) => address / entries,
        }
    }
}

/// Runs a tile over `acts` (its source vector, `tile.cols` long), accumulating into `acc`
/// (`tile.rows` long, in Q(of)) and adding the run's counts to `counters`. On a fault the
/// accumulators and counters hold partial results and the machine is expected to stop.
///
/// Two passes over each block of `BLOCK` broadcasts, equivalent to evaluating the machine
/// broadcast by broadcast:
/// 1. Data, PE by PE over the block's columns (each PE's pointers and entries are read as one
///    stream): faults, the multiply-accumulates (each row still accumulates in column order, so
///    the sums are the same; with the codebook times the activation precomputed per broadcast,
///    and without saturation checks when no sum can reach the 32-bit limits), SRAM row reads,
///    and per (broadcast, PE) the entry count and the row-equality flags of the bypass. None of
///    these depend on timing.
/// 2. Timing, broadcast by broadcast over the block's compact per-(broadcast, PE) table: the
///    recurrences above, the per-PE cycle categories, and the bypasses (a flag counts when the
///    issue-cycle distance it implies is at most 2). Each broadcast updates every PE with the
///    same branch-free arithmetic, so the PEs are evaluated side by side in vector registers.
///
/// A fault found in any block is reported as the first one in broadcast, then PE, order.
pub fn run_tile(
    timing: &Timing,
    tile: &Tile<'_>,
    acts: &[i16],
    acc: &mut [i32],
    counters: &mut RunCounters,
    scratch: &mut Scratch,
) -> Result<(), Fault> {
    let pes = tile.pes.len();
    assert_eq!(acts.len(), tile.cols);
    assert_eq!(acc.len(), tile.rows);
    scratch.rows.clear();
    scratch
        .rows
        .extend((0..pes).map(|p| local_rows(tile.rows, pes, p) as u32));
    scratch.columns.clear();
    scratch.addends.clear();
    for (j, &a) in acts.iter().enumerate() {
        if a != 0 {
            scratch.columns.push(j as u32);
            let mut addends = [0i32; 16];
            for (addend, &w) in addends.iter_mut().zip(&tile.codebook).skip(1) {
                *addend = shift_round(i32::from(w) * i32::from(a), tile.shift);
            }
            scratch.addends.push(addends);
        }
    }
    let broadcasts = scratch.columns.len();

    // Accumulators PE by PE.
    let stride = local_rows(tile.rows, pes, 0);
    scratch.local_acc.clear();
    scratch.local_acc.resize(pes * stride, 0);
    for (i, &value) in acc.iter().enumerate() {
        scratch.local_acc[(i % pes) * stride + i / pes] = value;
    }

    // No row can saturate when even |initial value| + one addend of the largest magnitude per
    // broadcast fits (a column adds at most one entry to a row): then plain addition gives the
    // same sums as the saturating accumulator.
    let largest_acc = acc.iter().map(|v| i64::from(v.unsigned_abs())).max();
    let largest_addend = scratch
        .addends
        .iter()
        .flatten()
        .map(|v| i64::from(v.unsigned_abs()))
        .max();
    let bound = largest_acc.unwrap_or(0) + broadcasts as i64 * largest_addend.unwrap_or(0);
    let saturating = bound > i64::from(i32::MAX);
    let sram_rows = SramRows::new(timing.entries_per_read);
    scratch.walks.clear();
    scratch.walks.resize(pes, PeWalk::default());
    scratch.work.clear();
    scratch.work.resize(BLOCK.min(broadcasts) * pes, 0);
    let mut cursor = TimingCursor::new(timing, pes, scratch);
    let mut data = Ok(DataCounts {
        padding: 0,
        matrix_reads: 0,
    });
    // Both passes a block of broadcasts at a time, so that the block's cells and addends stay
    // in cache between them.
    for block in (0..broadcasts).step_by(BLOCK) {
        let block = block..(block + BLOCK).min(broadcasts);
        let len = block.len();
        data = data.and_then(|counts| {
            if saturating {
                data_pass::<true>(tile, scratch, stride, block, counts, sram_rows)
            } else {
                data_pass::<false>(tile, scratch, stride, block, counts, sram_rows)
            }
        });
        if data.is_err() {
            break;
        }
        timing_pass(&mut cursor, len, scratch);
    }
    for (i, value) in acc.iter_mut().enumerate() {
        *value = scratch.local_acc[(i % pes) * stride + i / pes];
    }
    let DataCounts {
        padding,
        matrix_reads,
    } = data?;
    let TimingCursor {
        window_end,
        ccu_stalls,
        bypasses,
        ..
    } = cursor;
    let window_end = u64::from(window_end);
    let broadcasts = broadcasts as u64;
    counters.compute_cycles += window_end;
    counters.broadcasts += broadcasts;
    counters.ccu_stall_cycles += ccu_stalls;
    let entries: u64 = scratch.pe_state.busy.iter().map(|&n| u64::from(n)).sum();
    counters.useful_macs += entries - padding;
    counters.padding_macs += padding;
    counters.bypasses += bypasses;
    counters.matrix_reads += matrix_reads;
    counters.pointer_reads += 2 * broadcasts * pes as u64;
    counters.activation_reads += acts.len() as u64;
    counters.fifo_pushes += broadcasts * pes as u64;
    counters.fifo_pops += broadcasts * pes as u64;
    let state = &scratch.pe_state;
    for p in 0..pes {
        let (busy, cover) = (u64::from(state.busy[p]), u64::from(state.cover_len[p]));
        counters.busy[p] += busy;
        counters.stall[p] += cover - busy;
        counters.starved[p] += window_end - cover;
    }
    Ok(())
}

/// What the data pass counted (the entries issued are the PEs' busy cycles).
struct DataCounts {
    /// Padding entries issued.
    padding: u64,
    matrix_reads: u64,
}

/// Pass 1 of [`run_tile`] over the broadcasts `block`: fills `scratch.work` (the block's cells)
/// and `scratch.local_acc`, and adds to `counts`; `SATURATE`: whether an accumulator could leave
/// the 32-bit range (otherwise additions need no saturation).
fn data_pass<const SATURATE: bool>(
    tile: &Tile<'_>,
    scratch: &mut Scratch,
    stride: usize,
    block: Range<usize>,
    mut counts: DataCounts,
    sram_rows: SramRows,
) -> Result<DataCounts, Fault> {
    let pes = tile.pes.len();
    let Scratch {
        columns,
        addends,
        work,
        local_acc,
        rows,
        walks,
        ..
    } = scratch;
    let work = &mut work[..block.len() * pes];
    let (block_columns, block_addends) = (&columns[block.clone()], &addends[block]);
    for (p, ((slice, acc), walk)) in tile
        .pes
        .iter()
        .zip(local_acc.chunks_exact_mut(stride))
        .zip(walks.iter_mut())
        .enumerate()
    {
        let acc = &mut acc[..rows[p] as usize];
        assert_eq!(slice.pointers.len(), tile.cols + 1);
        let walked = walk_pe::<SATURATE>(
            slice,
            acc,
            walk,
            block_columns,
            block_addends,
            work,
            p,
            pes,
            sram_rows,
        );
        if let Err(found) = walked {
            return Err(first_fault(tile, columns, rows, found));
        }
    }
    for walk in walks.iter_mut() {
        counts.padding += std::mem::take(&mut walk.padding);
        counts.matrix_reads += std::mem::take(&mut walk.matrix_reads);
    }
    Ok(counts)
}

/// A PE's walk between blocks of broadcasts.
#[derive(Clone, Copy, Debug)]
struct PeWalk {
    /// Rows of the PE's last and second-to-last issued entries (`u32::MAX`: none yet).
    last: u32,
    second: u32,
    /// The SRAM row in the PE's row buffer (`u64::MAX`: none yet).
    row_buffer: u64,
    /// Padding entries issued and SRAM rows read, since the counts were last collected.
    padding: u64,
    matrix_reads: u64,
}

impl Default for PeWalk {
    fn default() -> Self {
        PeWalk {
            last: u32::MAX,
            second: u32::MAX,
            row_buffer: u64::MAX,
            padding: 0,
            matrix_reads: 0,
        }
    }
}

/// One PE's share of pass 1 over a block: walks its columns in broadcast order, accumulating
/// into `acc` (its local rows) and writing its cells `work[k * pes + pe]` (k within the block).
/// Every column of `columns` is below `slice.pointers.len() - 1`, and `work` holds
/// `columns.len() * pes` cells.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn walk_pe<const SATURATE: bool>(
    slice: &PeSlice<'_>,
    acc: &mut [i32],
    walk: &mut PeWalk,
    columns: &[u32],
    addends: &[[i32; 16]],
    work: &mut [u32],
    pe: usize,
    pes: usize,
    sram_rows: SramRows,
) -> Result<(), Fault> {
    let (pointers, entries) = (slice.pointers, slice.entries);
    assert!(pe < pes && work.len() == columns.len() * pes);
    debug_assert!(columns.iter().all(|&j| (j as usize) < pointers.len() - 1));
    let rows = acc.len() as u32;
    let PeWalk {
        mut last,
        mut second,
        mut row_buffer,
        mut padding,
        mut matrix_reads,
    } = *walk;
    let mut cell_index = pe;
    for (&j, addend) in columns.iter().zip(addends) {
        let j = j as usize;
        let cell = cell_index;
        cell_index += pes;
        // SAFETY: `j + 1 < pointers.len()` (the contract above, established by `run_tile`).
        let (start, end) = unsafe { (*pointers.get_unchecked(j), *pointers.get_unchecked(j + 1)) };
        // `entries` reaches every end pointer within `available` and no further, so a column
        // past it is one past the memory.
        let Some(column) = entries
            .get(usize::from(start)..usize::from(end))
            .filter(|_| start < end)
        else {
            if start == end && usize::from(end) <= slice.available {
                // SAFETY: as below.
                unsafe { *work.get_unchecked_mut(cell) = 0 };
                continue;
            }
            return Err(Fault::PointerRange {
                pe,
                column: j,
                start,
                end,
                available: slice.available,
            });
        };
        let ColumnWalk {
            next_row,
            zero_codes,
            out_of_range,
        } = walk_column::<SATURATE>(column, acc, addend);
        if out_of_range {
            // `check_column` walks the column again to name the first such entry.
            return Err(check_column(slice, pe, j, rows)
                .err()
                .unwrap_or(Fault::RowRange {
                    pe,
                    column: j,
                    address: slice.matrix_base as usize + usize::from(start),
                    row: next_row - 1,
                    rows,
                }));
        }
        padding += u64::from(zero_codes);
        let n = column.len();
        let first = u32::from(column[0] >> 4);
        let second_row = first + 1 + u32::from(column[1.min(n - 1)] >> 4);
        let last_row = next_row - 1;
        let many = n >= 2;
        let flags = (u32::from(first == last) * FIRST_IS_LAST)
            | (u32::from(first == second) * FIRST_IS_SECOND)
            | (u32::from(many & (second_row == last)) * SECOND_IS_LAST);
        // SAFETY: `cell < columns.len() * pes == work.len()` (asserted above).
        unsafe { *work.get_unchecked_mut(cell) = n as u32 | flags };
        // The last two rows issued.
        let before_last = last_row.wrapping_sub(1 + u32::from(column[n - 1] >> 4));
        second = if many { before_last } else { last };
        last = last_row;
        // SRAM rows touched, minus the one still in the buffer.
        let first_sram = sram_rows.row(u64::from(slice.matrix_base) + u64::from(start));
        let last_sram = sram_rows.row(u64::from(slice.matrix_base) + u64::from(end) - 1);
        matrix_reads += last_sram - first_sram + 1 - u64::from(row_buffer == first_sram);
        row_buffer = last_sram;
    }
    *walk = PeWalk {
        last,
        second,
        row_buffer,
        padding,
        matrix_reads,
    };
    Ok(())
}

/// What walking one column found.
struct ColumnWalk {
    /// One past the row of the column's last entry.
    next_row: u32,
    /// Padding entries.
    zero_codes: u32,
    /// Some entry of non-zero code addresses a row past `acc`.
    out_of_range: bool,
}

/// The multiply-accumulates of one column (`addend` per code). Kept out of line: its loop
/// then has registers to itself.
#[inline(never)]
fn walk_column<const SATURATE: bool>(
    column: &[u8],
    acc: &mut [i32],
    addend: &[i32; 16],
) -> ColumnWalk {
    let mut next_row = 0u32;
    let mut out_of_range = false;
    let mut zero_codes = 0u32;
    for &e in column {
        let x = next_row + u32::from(e >> 4);
        next_row = x + 1;
        let code = usize::from(e & 15);
        zero_codes += u32::from(code == 0);
        // Padding adds 0 (and may address rows past the PE's).
        match acc.get_mut(x as usize) {
            Some(slot) => add::<SATURATE>(slot, addend[code]),
            None => out_of_range |= code != 0,
        }
    }
    ColumnWalk {
        next_row,
        zero_codes,
        out_of_range,
    }
}

/// One accumulation: saturating, or plain when no sum can leave the 32-bit range.
#[inline(always)]
fn add<const SATURATE: bool>(slot: &mut i32, addend: i32) {
    *slot = if SATURATE {
        slot.saturating_add(addend)
    } else {
        slot.wrapping_add(addend)
    };
}

/// Where pass 2 stands between blocks of broadcasts.
#[derive(Debug)]
struct TimingCursor {
    pes: usize,
    depth: usize,
    pointer_read_cycles: u32,
    /// Broadcasts evaluated.
    k: usize,
    /// The earliest cycle of the next broadcast.
    next_b: u32,
    /// Index of the oldest of the last `depth` broadcasts in `Scratch::slot_ring`.
    ring: usize,
    window_end: u32,
    ccu_stalls: u64,
    bypasses: u64,
}

impl TimingCursor {
    /// A run's start; resets the per-PE timing state.
    fn new(timing: &Timing, pes: usize, scratch: &mut Scratch) -> TimingCursor {
        scratch.pe_state.reset(pes);
        // Over PEs, the cycle from which each of the last `depth` broadcasts has a free slot.
        scratch.slot_ring.clear();
        scratch.slot_ring.resize(timing.fifo_depth, 0);
        TimingCursor {
            pes,
            depth: timing.fifo_depth,
            pointer_read_cycles: timing.pointer_read_cycles as u32,
            k: 0,
            next_b: 0,
            ring: 0,
            window_end: 0,
            ccu_stalls: 0,
            bypasses: 0,
        }
    }
}

/// Pass 2 of [`run_tile`] over the next `len` broadcasts, whose cells are in `scratch.work`:
/// the recurrences, leaving each PE's busy and covered cycles in `scratch.pe_state`.
fn timing_pass(cursor: &mut TimingCursor, len: usize, scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { timing_pass_avx2(cursor, len, scratch) };
    }
    timing_pass_body(cursor, len, scratch);
}

/// [`timing_pass_body`] compiled for AVX2 (eight PEs per instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn timing_pass_avx2(cursor: &mut TimingCursor, len: usize, scratch: &mut Scratch) {
    timing_pass_body(cursor, len, scratch);
}

#[inline(always)]
fn timing_pass_body(cursor: &mut TimingCursor, len: usize, scratch: &mut Scratch) {
    let Scratch {
        work,
        pe_state: state,
        slot_ring,
        ..
    } = scratch;
    let (depth, l) = (cursor.depth, cursor.pointer_read_cycles);
    for row in work.chunks_exact(cursor.pes).take(len) {
        let earliest = cursor.next_b;
        let b = if cursor.k >= depth {
            earliest.max(slot_ring[cursor.ring])
        } else {
            earliest
        };
        cursor.ccu_stalls += u64::from(b - earliest);
        cursor.next_b = b + 1;
        let (max_free, bypassed) = broadcast_step(b, l, row, state);
        cursor.bypasses += u64::from(bypassed);
        cursor.window_end = cursor.window_end.max(max_free);
        slot_ring[cursor.ring] = max_free;
        cursor.ring = if cursor.ring + 1 == depth {
            0
        } else {
            cursor.ring + 1
        };
        cursor.k += 1;
    }
}

/// Every PE's response to the broadcast at cycle `b` (the recurrences, without branches);
/// returns the cycle from which every PE has a free FIFO slot for it, and the bypasses.
#[inline(always)]
fn broadcast_step(b: u32, l: u32, row: &[u32], state: &mut PeTimingState) -> (u32, u32) {
    let b1 = b + 1;
    let mut max_free = 0u32;
    let mut bypassed = 0u32;
    let PeTimingState {
        ptr_free,
        m_free,
        cover_until,
        cover_len,
        busy,
        t_last,
        t_second,
    } = state;
    let pes = row.len();
    let (ptr_free, m_free) = (&mut ptr_free[..pes], &mut m_free[..pes]);
    let (cover_until, cover_len) = (&mut cover_until[..pes], &mut cover_len[..pes]);
    let (busy, t_last, t_second) = (&mut busy[..pes], &mut t_last[..pes], &mut t_second[..pes]);
    for p in 0..pes {
        let cell = row[p];
        let n = cell & COUNT_MASK;
        let has_work = n != 0;
        // Pointer read starts at r and ends at r + L; a non-empty column then waits for the
        // matrix unit.
        let read_done = b1.max(ptr_free[p]) + l;
        let m = if has_work {
            read_done.max(m_free[p])
        } else {
            read_done
        };
        let work_end = m + n;
        // Bypass: the accumulator is read 1 cycle and written 3 cycles after issue (at most one
        // forwarded read per entry). The flags are only set when `has_work`.
        let first_forwarded = ((cell & FIRST_IS_LAST != 0) & (m.wrapping_sub(t_last[p]) <= 2))
            | ((cell & FIRST_IS_SECOND != 0) & (m.wrapping_sub(t_second[p]) <= 2));
        let second_forwarded =
            (cell & SECOND_IS_LAST != 0) & ((m + 1).wrapping_sub(t_last[p]) <= 2);
        bypassed += u32::from(first_forwarded) + u32::from(second_forwarded);
        let second_issue = if n >= 2 {
            work_end.wrapping_sub(2)
        } else {
            t_last[p]
        };
        t_second[p] = if has_work { second_issue } else { t_second[p] };
        t_last[p] = if has_work {
            work_end.wrapping_sub(1)
        } else {
            t_last[p]
        };
        m_free[p] = if has_work { work_end } else { m_free[p] };
        ptr_free[p] = m;
        busy[p] += n;
        let until = cover_until[p];
        cover_len[p] += if work_end > until {
            work_end - b1.max(until)
        } else {
            0
        };
        let until = until.max(work_end);
        cover_until[p] = until;
        max_free = max_free.max(until);
    }
    (max_free, bypassed)
}
