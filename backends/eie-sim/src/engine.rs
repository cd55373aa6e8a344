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
use std::hint::select_unpredictable;
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

/// The fault the machine meets first in `columns`: broadcast order, then PE order.
fn first_fault(tile: &Tile<'_>, columns: &[u32], rows: &[u32]) -> Option<Fault> {
    for &j in columns {
        for (p, slice) in tile.pes.iter().enumerate() {
            if let Err(fault) = check_column(slice, p, j as usize, rows[p]) {
                return Some(fault);
            }
        }
    }
    None
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
    /// What the data pass tells the timing pass, per (broadcast of the current block, PE).
    cells: Cells,
    /// Accumulators PE by PE (`p * stride + local row`; each PE's slot past its rows absorbs
    /// the additions of entries addressing no local row).
    local_acc: Vec<i32>,
    rows: Vec<u32>,
    /// Per PE, padding entries issued.
    padding: Vec<u64>,
    /// Per PE, whether its pointers are known not to fault (see [`pointers_in_reach`]).
    checked: Vec<bool>,
    gathered: Gathered,
    pe_state: PeTimingState,
    slot_ring: Vec<u32>,
}

/// The per-(broadcast, PE) table of a block, struct of arrays, at `k * pes + p` unless noted.
/// Rows are local rows of the PE. A cell of an empty column holds only its count (the rest is
/// unspecified), and one of a one-entry column no rows of a second or second-to-last entry.
#[derive(Debug, Default)]
struct Cells {
    /// Entries of the column.
    count: Vec<u32>,
    /// Sparse-matrix address of its first entry.
    address: Vec<u32>,
    /// Rows of its first and second entries.
    first: Vec<u32>,
    second: Vec<u32>,
    /// Rows of its second-to-last and last entries, PE by PE: at `p * BLOCK + k` (written
    /// entry by entry, by the PE's pass over its stream).
    before_last: Vec<u32>,
    last: Vec<u32>,
    /// `count`, `address`, `first` and `second` PE by PE, at `p * BLOCK + k`, as the data pass
    /// writes them (each PE's cells contiguous); transposed into the tables above for the
    /// timing pass, which reads a broadcast's cells side by side.
    staged: [Vec<u32>; 4],
}

impl Cells {
    /// Room for a block of `pes` PEs.
    fn resize(&mut self, pes: usize) {
        let len = BLOCK * pes;
        for table in [
            &mut self.count,
            &mut self.address,
            &mut self.first,
            &mut self.second,
            &mut self.before_last,
            &mut self.last,
        ]
        .into_iter()
        .chain(&mut self.staged)
        {
            table.clear();
            table.resize(len, 0);
        }
    }

    /// Copies the staged cells of the block's first `len` broadcasts into the broadcast-major
    /// tables.
    fn transpose(&mut self, pes: usize, len: usize) {
        assert!(len <= BLOCK);
        let targets = [
            &mut self.count,
            &mut self.address,
            &mut self.first,
            &mut self.second,
        ];
        for (target, staged) in targets.into_iter().zip(&self.staged) {
            let (target, staged) = (&mut target[..BLOCK * pes], &staged[..BLOCK * pes]);
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked above).
                done = unsafe { transpose_avx2(target, staged, pes, len) };
            }
            for p in done..pes {
                for k in 0..len {
                    target[k * pes + p] = staged[p * BLOCK + k];
                }
            }
        }
    }
}

/// [`Cells::transpose`] of one table for the PEs in groups of eight, 8 × 8 cells at a time
/// (and up to 7 broadcasts past `len`, within the block); returns the PEs done.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn transpose_avx2(target: &mut [u32], staged: &[u32], pes: usize, len: usize) -> usize {
    use std::arch::x86_64::*;
    let lanes = pes / 8 * 8;
    assert!(target.len() >= BLOCK * pes && staged.len() >= BLOCK * pes && len <= BLOCK);
    for p in (0..lanes).step_by(8) {
        for k in (0..len).step_by(8) {
            // SAFETY: rows `(p + i) * BLOCK + k .. + 8` with `p + i < pes` and `k + 8 <= BLOCK`
            // (BLOCK is a multiple of 8) lie within `staged`; outputs `(k + i) * pes + p .. + 8`
            // with `k + i < BLOCK` and `p + 8 <= pes` within `target`.
            unsafe {
                let row = |i: usize| {
                    _mm256_loadu_si256(staged.as_ptr().add((p + i) * BLOCK + k).cast::<__m256i>())
                };
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
                let (t0, t1) = (_mm256_unpacklo_epi32(r0, r1), _mm256_unpackhi_epi32(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_epi32(r2, r3), _mm256_unpackhi_epi32(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_epi32(r4, r5), _mm256_unpackhi_epi32(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_epi32(r6, r7), _mm256_unpackhi_epi32(r6, r7));
                let (u0, u1) = (_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2));
                let (u2, u3) = (_mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3));
                let (u4, u5) = (_mm256_unpacklo_epi64(t4, t6), _mm256_unpackhi_epi64(t4, t6));
                let (u6, u7) = (_mm256_unpacklo_epi64(t5, t7), _mm256_unpackhi_epi64(t5, t7));
                let column = [
                    _mm256_permute2x128_si256::<0x20>(u0, u4),
                    _mm256_permute2x128_si256::<0x20>(u1, u5),
                    _mm256_permute2x128_si256::<0x20>(u2, u6),
                    _mm256_permute2x128_si256::<0x20>(u3, u7),
                    _mm256_permute2x128_si256::<0x31>(u0, u4),
                    _mm256_permute2x128_si256::<0x31>(u1, u5),
                    _mm256_permute2x128_si256::<0x31>(u2, u6),
                    _mm256_permute2x128_si256::<0x31>(u3, u7),
                ];
                for (i, v) in column.into_iter().enumerate() {
                    let at = target.as_mut_ptr().add((k + i) * pes + p);
                    _mm256_storeu_si256(at.cast::<__m256i>(), v);
                }
            }
        }
    }
    lanes
}

/// Broadcasts evaluated per block by both passes (a tag of the gathered stream fits a byte).
const BLOCK: usize = 128;

/// Per-PE timing state of a run, struct of arrays. Cycles fit in 32 bits: a run's window is at
/// most broadcasts × (2 + pointer read cycles + entries per column) < 2^14 × (2 + 64 + 2^16)
/// < 2^31 (at most `POINTER_WORDS` - 1 columns, pointers of 16 bits, at most 64 read cycles).
/// So do SRAM reads: at most one more than the entries per column.
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
    /// Issue cycles of the PE's last and second-to-last entries (valid once the PE issued them).
    t_last: Vec<u32>,
    t_second: Vec<u32>,
    /// Rows of the PE's last and second-to-last entries (`u32::MAX`: none yet; no entry
    /// addresses it).
    row_last: Vec<u32>,
    row_second: Vec<u32>,
    /// The SRAM row in the PE's row buffer (`u32::MAX`: none yet), and the rows read.
    row_buffer: Vec<u32>,
    matrix_reads: Vec<u32>,
    /// Whether some entry since the last check addresses a row from the PE's rows on.
    past_rows: Vec<u32>,
    /// The PE's local rows.
    local_rows: Vec<u32>,
}

impl PeTimingState {
    /// Whether every per-PE vector holds `pes` PEs.
    fn holds(&self, pes: usize) -> bool {
        [
            &self.ptr_free,
            &self.m_free,
            &self.cover_until,
            &self.cover_len,
            &self.busy,
            &self.t_last,
            &self.t_second,
            &self.row_last,
            &self.row_second,
            &self.past_rows,
            &self.row_buffer,
            &self.matrix_reads,
            &self.local_rows,
        ]
        .iter()
        .all(|v| v.len() == pes)
    }

    fn reset(&mut self, local_rows: &[u32]) {
        let pes = local_rows.len();
        for v in [
            &mut self.ptr_free,
            &mut self.m_free,
            &mut self.cover_until,
            &mut self.cover_len,
            &mut self.busy,
            &mut self.t_last,
            &mut self.t_second,
            &mut self.matrix_reads,
            &mut self.past_rows,
        ] {
            v.clear();
            v.resize(pes, 0);
        }
        for v in [
            &mut self.row_last,
            &mut self.row_second,
            &mut self.row_buffer,
        ] {
            v.clear();
            v.resize(pes, u32::MAX);
        }
        self.local_rows.clear();
        self.local_rows.extend_from_slice(local_rows);
    }
}

/// The SRAM row of an entry address (below 2^18: the matrix base and a 16-bit pointer).
trait SramRows: Copy {
    fn row(self, address: u32) -> u32;
    /// The shift, when the row is one.
    fn shift(self) -> Option<u32>;
}

/// Rows of a power of two entries: a shift.
#[derive(Clone, Copy)]
struct ShiftRows(u32);

impl SramRows for ShiftRows {
    #[inline(always)]
    fn row(self, address: u32) -> u32 {
        address >> self.0
    }

    fn shift(self) -> Option<u32> {
        Some(self.0)
    }
}

/// Rows of any other number of entries: a division.
#[derive(Clone, Copy)]
struct DivideRows(std::num::NonZeroU32);

impl SramRows for DivideRows {
    #[inline(always)]
    fn row(self, address: u32) -> u32 {
        address / self.0
    }

    fn shift(self) -> Option<u32> {
        None
    }
}

/// Runs a tile over `acts` (its source vector, `tile.cols` long), accumulating into `acc`
/// (`tile.rows` long, in Q(of)) and adding the run's counts to `counters`. On a fault the
/// accumulators and counters hold partial results and the machine is expected to stop.
///
/// Two passes over each block of `BLOCK` broadcasts, equivalent to evaluating the machine
/// broadcast by broadcast:
/// 1. Data, PE by PE over the block's columns: each PE's broadcast columns are gathered into
///    one stream of entries, which one loop decodes and multiply-accumulates whatever the
///    columns' lengths (each row still accumulates in column order, so the sums are the same;
///    with the codebook times the activation precomputed per broadcast, and without
///    saturation checks when no sum can reach the 32-bit limits); per (broadcast, PE) it
///    leaves the entry count, the first entry's address and the rows of the first two and last
///    two entries (written PE by PE, then transposed to broadcast by broadcast). None of these
///    depend on timing.
/// 2. Timing, broadcast by broadcast over the block's per-(broadcast, PE) tables: the
///    recurrences above, the per-PE cycle categories, the bypasses (an entry is forwarded when
///    it addresses the row of one of the two entries issued before it, at most 2 cycles
///    earlier), and the SRAM row reads. Each broadcast updates every PE with the same
///    branch-free arithmetic, so the PEs are evaluated side by side in vector registers.
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
    // The largest |addend|.
    let mut largest_addend = 0u32;
    let bias = (1i32 << tile.shift) >> 1;
    for (j, &a) in acts.iter().enumerate() {
        if a != 0 {
            scratch.columns.push(j as u32);
            // All sixteen codes side by side, then code 0's addend cleared. `shift_round` in
            // 32 bits: |w a| <= 2^30 and the rounding bias is below 2^29, so nothing wraps.
            let mut addends = tile
                .codebook
                .map(|w| (i32::from(w) * i32::from(a) + bias) >> tile.shift);
            addends[0] = 0;
            debug_assert!(
                addends
                    .iter()
                    .zip(&tile.codebook)
                    .skip(1)
                    .all(|(&addend, &w)| {
                        addend == shift_round(i32::from(w) * i32::from(a), tile.shift)
                    })
            );
            let largest = addends.iter().fold(0, |m, v| m.max(v.unsigned_abs()));
            largest_addend = largest_addend.max(largest);
            scratch.addends.push(addends);
        }
    }
    let broadcasts = scratch.columns.len();

    // Accumulators PE by PE, and one slot more per PE.
    let stride = local_rows(tile.rows, pes, 0) + 1;
    scratch.local_acc.clear();
    scratch.local_acc.resize(pes * stride, 0);
    for (i, &value) in acc.iter().enumerate() {
        scratch.local_acc[(i % pes) * stride + i / pes] = value;
    }

    // No row can saturate when even |initial value| + one addend of the largest magnitude per
    // broadcast fits (a column adds at most one entry to a row): then plain addition gives the
    // same sums as the saturating accumulator.
    let largest_acc = acc.iter().map(|v| i64::from(v.unsigned_abs())).max();
    let bound = largest_acc.unwrap_or(0) + broadcasts as i64 * i64::from(largest_addend);
    let saturating = bound > i64::from(i32::MAX);
    let entries_per_read = timing.entries_per_read;
    scratch.padding.clear();
    scratch.padding.resize(pes, 0);
    scratch.checked.clear();
    scratch
        .checked
        .extend(tile.pes.iter().map(pointers_in_reach));
    scratch.cells.resize(pes);
    let mut cursor = TimingCursor::new(timing, scratch);
    let mut result = Ok(());
    // Both passes a block of broadcasts at a time, so that the block's cells and addends stay
    // in cache between them.
    for block in (0..broadcasts).step_by(BLOCK) {
        let block = block..(block + BLOCK).min(broadcasts);
        let walked = if saturating {
            data_pass::<true>(tile, scratch, stride, block.clone())
        } else {
            data_pass::<false>(tile, scratch, stride, block.clone())
        };
        if let Err(fault) = walked {
            result = Err(fault);
            break;
        }
        scratch.cells.transpose(pes, block.len());
        // A validated configuration reads at least one entry per row.
        match std::num::NonZeroU32::new(entries_per_read) {
            Some(entries) if !entries.is_power_of_two() => {
                timing_pass(&mut cursor, block.len(), scratch, DivideRows(entries))
            }
            _ => {
                let rows = ShiftRows(entries_per_read.trailing_zeros());
                timing_pass(&mut cursor, block.len(), scratch, rows)
            }
        }
        // Entries past a PE's rows: padding may address them, a non-zero code faults.
        if scratch.pe_state.past_rows.iter().any(|&past| past != 0) {
            if let Some(fault) = first_fault(tile, &scratch.columns[block], &scratch.rows) {
                result = Err(fault);
                break;
            }
            scratch.pe_state.past_rows.fill(0);
        }
    }
    for (i, value) in acc.iter_mut().enumerate() {
        *value = scratch.local_acc[(i % pes) * stride + i / pes];
    }
    result?;
    let TimingCursor {
        window_end,
        ccu_stalls,
        bypasses,
        ..
    } = cursor;
    let window_end = u64::from(window_end);
    let broadcasts = broadcasts as u64;
    let state = &scratch.pe_state;
    let padding: u64 = scratch.padding.iter().sum();
    counters.compute_cycles += window_end;
    counters.broadcasts += broadcasts;
    counters.ccu_stall_cycles += ccu_stalls;
    let entries: u64 = state.busy.iter().map(|&n| u64::from(n)).sum();
    counters.useful_macs += entries - padding;
    counters.padding_macs += padding;
    counters.bypasses += bypasses;
    counters.matrix_reads += state
        .matrix_reads
        .iter()
        .map(|&n| u64::from(n))
        .sum::<u64>();
    counters.pointer_reads += 2 * broadcasts * pes as u64;
    counters.activation_reads += acts.len() as u64;
    counters.fifo_pushes += broadcasts * pes as u64;
    counters.fifo_pops += broadcasts * pes as u64;
    for p in 0..pes {
        let (busy, cover) = (u64::from(state.busy[p]), u64::from(state.cover_len[p]));
        counters.busy[p] += busy;
        counters.stall[p] += cover - busy;
        counters.starved[p] += window_end - cover;
    }
    Ok(())
}

/// Whether every column of `slice` is free of pointer faults: its pointers do not decrease,
/// and the last (the largest) is within both `entries` and `available`. One pass over the
/// pointers, without branches, instead of a check per broadcast column.
fn pointers_in_reach(slice: &PeSlice<'_>) -> bool {
    let pointers = slice.pointers;
    let successors = pointers.get(1..).unwrap_or_default();
    let decreases = pointers
        .iter()
        .zip(successors)
        .fold(false, |found, (a, b)| found | (a > b));
    let reach = pointers.last().map_or(0, |&end| usize::from(end));
    !decreases && reach <= slice.entries.len().min(slice.available)
}

/// Pass 1 of [`run_tile`] over the broadcasts `block`: fills the staged and PE-major tables of
/// `scratch.cells` and `scratch.local_acc`, and counts padding; `SATURATE`: whether an accumulator could leave the
/// 32-bit range (otherwise additions need no saturation). A pointer fault is reported as the
/// machine's first fault.
fn data_pass<const SATURATE: bool>(
    tile: &Tile<'_>,
    scratch: &mut Scratch,
    stride: usize,
    block: Range<usize>,
) -> Result<(), Fault> {
    let pes = tile.pes.len();
    #[cfg(target_arch = "x86_64")]
    let vector = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let vector = false;
    let Scratch {
        columns,
        addends,
        cells,
        local_acc,
        rows,
        padding,
        checked,
        gathered,
        ..
    } = scratch;
    let (block_columns, block_addends) = (&columns[block.clone()], &addends[block]);
    for (p, (slice, acc)) in tile
        .pes
        .iter()
        .zip(local_acc.chunks_exact_mut(stride))
        .enumerate()
    {
        assert_eq!(slice.pointers.len(), tile.cols + 1);
        let acc = &mut acc[..rows[p] as usize + 1];
        let pe = PeCells { cells, pe: p, pes };
        let walk = if checked[p] {
            walk_pe::<SATURATE, true>
        } else {
            walk_pe::<SATURATE, false>
        };
        let walked = walk(
            slice,
            acc,
            block_columns,
            block_addends,
            pe,
            gathered,
            vector,
        );
        match walked {
            Ok(zero_codes) => padding[p] += zero_codes,
            // Some earlier column may fault on its rows.
            Err(found) => return Err(first_fault(tile, columns, rows).unwrap_or(found)),
        }
    }
    Ok(())
}

/// One PE's cells of the block's tables: its `BLOCK` cells at `pe * BLOCK` of the staged
/// tables and of `last`/`before_last`.
struct PeCells<'c> {
    cells: &'c mut Cells,
    pe: usize,
    pes: usize,
}

/// Bytes copied per column when gathering: a column of at most this many entries is copied
/// with one fixed-size move (reading past its end), so that the copy does not branch on its
/// length.
const GATHER_COPY: usize = 16;

/// One PE's broadcast columns of a block, gathered into one stream so that the
/// multiply-accumulates run as one loop over the PE's entries, whatever the columns' lengths.
#[derive(Debug, Default)]
struct Gathered {
    /// The entries of the block's columns, in broadcast order, and `GATHER_COPY` slots more
    /// (which fixed-size copies may write).
    entries: Vec<u8>,
    /// Per entry, the index within the block of the broadcast whose column holds it (as long
    /// as `entries`).
    tags: Vec<u8>,
    /// Per entry i, its local row, at i + 2 (two slots before the first).
    rows: Vec<u32>,
}

/// One PE's share of pass 1 over a block, in three steps over its data, leaving its cells in
/// the staged (PE-major) tables and `last`/`before_last`:
/// 1. per broadcast: the column's pointers (unless `CHECKED`, checked: a pointer fault ends the
///    walk), its count and address, its entries copied into one stream, each tagged with the
///    broadcast, and the rows of its first two entries ([`columns_avx2`] when the pointers are
///    checked and the CPU has AVX2, eight columns side by side, else [`columns_scalar`]);
/// 2. per entry of the stream, in issue order: the local row (relative indices restart where
///    the tag changes: a column's entries are consecutive and other columns' tags differ) and
///    the multiply-accumulate (each row accumulates in broadcast order, so the sums are the
///    machine's) ([`accumulate`]);
/// 3. per broadcast: the rows of the column's last two entries, read from step 2's rows at the
///    column's end in the stream.
///
/// Returns the padding entries. `acc` holds the PE's local rows and one more slot, which
/// absorbs the additions of entries addressing no local row (padding adds 0 there; a non-zero
/// code there is a fault, found by `run_tile`'s row check after the timing pass). No loop
/// branches on the data except to grow the stream or to copy a column of more than
/// `GATHER_COPY` entries. Every column of `columns` is below `slice.pointers.len() - 1`, the
/// columns increase, `addends` is as long as `columns`, which is at most `BLOCK` long.
/// `CHECKED`: the PE's pointers are known to be non-decreasing and to reach no further than
/// `entries` and `available`, so no column faults on them. `vector`: the CPU supports AVX2.
#[inline(never)]
fn walk_pe<const SATURATE: bool, const CHECKED: bool>(
    slice: &PeSlice<'_>,
    acc: &mut [i32],
    columns: &[u32],
    addends: &[[i32; 16]],
    cells: PeCells<'_>,
    gathered: &mut Gathered,
    vector: bool,
) -> Result<u64, Fault> {
    let PeCells { cells, pe, pes } = cells;
    let pointers = slice.pointers;
    assert!(pe < pes && columns.len() <= BLOCK);
    assert!(columns.len() == addends.len() && !acc.is_empty());
    debug_assert!(columns.iter().all(|&j| (j as usize) < pointers.len() - 1));
    let [count, address, first, second] = &mut cells.staged;
    let mine = pe * BLOCK..(pe + 1) * BLOCK;
    let staged = [
        &mut count[mine.clone()],
        &mut address[mine.clone()],
        &mut first[mine.clone()],
        &mut second[mine],
    ];

    // 1. Columns. `ends[k]`: where column k ends in the stream.
    let mut ends = [0u32; BLOCK];
    // (Read only where AVX2 can exist.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    let vector = CHECKED && vector;
    let len = match () {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2 (`vector`), the pointers are checked, and the columns
        // are the block's (increasing, each below `pointers.len() - 1`).
        () if vector => unsafe { columns_avx2(slice, columns, staged, gathered, &mut ends) },
        () => columns_scalar::<CHECKED>(slice, pe, columns, staged, gathered, &mut ends)?,
    };
    let Gathered {
        entries: stream,
        tags,
        rows,
    } = gathered;

    // 2. Entries.
    if rows.len() < len + 2 {
        rows.resize((len + 2).max(stream.len()), 0);
    }
    accumulate::<SATURATE>(&stream[..len], &tags[..len], acc, addends, rows);

    // 3. Each column's last two rows.
    let last = &mut cells.last[pe * BLOCK..(pe + 1) * BLOCK];
    let before_last = &mut cells.before_last[pe * BLOCK..(pe + 1) * BLOCK];
    match () {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU supports AVX2; every end is at most `len` (also past the columns).
        () if vector => unsafe { last_rows_avx2(&ends, columns.len(), rows, last, before_last) },
        () => {
            for (k, &end) in ends[..columns.len()].iter().enumerate() {
                last[k] = rows[end as usize + 1];
                before_last[k] = rows[end as usize];
            }
        }
    }
    Ok(zero_codes(&stream[..len]))
}

/// Step 3 of [`walk_pe`] eight columns at a time: the rows of the entries before each end of
/// `ends` (past `len`, at most the stream's length), from `rows` (entry i's row at i + 2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn last_rows_avx2(
    ends: &[u32; BLOCK],
    len: usize,
    rows: &[u32],
    last: &mut [u32],
    before_last: &mut [u32],
) {
    use std::arch::x86_64::*;
    assert!(len <= BLOCK && last.len() >= BLOCK && before_last.len() >= BLOCK);
    for k in (0..len).step_by(8) {
        // SAFETY: `k + 8 <= BLOCK`; every end is at most the stream's length, and `rows` holds
        // it and two more (the contract).
        unsafe {
            let end = _mm256_loadu_si256(ends.as_ptr().add(k).cast::<__m256i>());
            let rows_at = rows.as_ptr().cast::<i32>();
            let second_to_last = _mm256_i32gather_epi32::<4>(rows_at, end);
            let final_row = _mm256_i32gather_epi32::<4>(rows_at.add(1), end);
            _mm256_storeu_si256(last.as_mut_ptr().add(k).cast::<__m256i>(), final_row);
            let at = before_last.as_mut_ptr().add(k).cast::<__m256i>();
            _mm256_storeu_si256(at, second_to_last);
        }
    }
}

/// Loop 1 of [`walk_pe`], one column at a time: per broadcast k of the block, the column's
/// pointers (unless `CHECKED`, checked: a pointer fault ends the walk), its entries appended to
/// the gathered stream, each tagged with k, and into `staged` (the PE's `BLOCK` cells of
/// count, address, first and second rows) at k its count, address and the rows of its first
/// two entries. Returns the stream's length. Every column of `columns` is below
/// `slice.pointers.len() - 1` and there are at most `BLOCK`.
fn columns_scalar<const CHECKED: bool>(
    slice: &PeSlice<'_>,
    pe: usize,
    columns: &[u32],
    staged: [&mut [u32]; 4],
    gathered: &mut Gathered,
    ends: &mut [u32; BLOCK],
) -> Result<usize, Fault> {
    let (pointers, entries) = (slice.pointers, slice.entries);
    let [count, address, first_rows, second_rows] = staged;
    assert!(columns.len() <= BLOCK);
    for table in [&count, &address, &first_rows, &second_rows] {
        assert!(table.len() >= columns.len());
    }
    let Gathered {
        entries: stream,
        tags,
        ..
    } = gathered;
    let mut len = 0usize;
    for (k, &j) in columns.iter().enumerate() {
        let j = j as usize;
        // SAFETY: `j + 1 < pointers.len()` (the contract above, established by `run_tile`).
        let (start, end) = unsafe { (*pointers.get_unchecked(j), *pointers.get_unchecked(j + 1)) };
        let (start, end) = (usize::from(start), usize::from(end));
        // A non-empty column must lie within `entries`, which reaches every end pointer within
        // `available` and no further; an empty one within `available`.
        if !CHECKED {
            let valid =
                (start < end && end <= entries.len()) || (start == end && end <= slice.available);
            if !valid {
                return Err(Fault::PointerRange {
                    pe,
                    column: j,
                    start: start as u16,
                    end: end as u16,
                    available: slice.available,
                });
            }
        }
        let n = end - start;
        // Within `entries` (`start <= end <= entries.len()` when `CHECKED`).
        let from = if CHECKED {
            start
        } else {
            select_unpredictable(n > 0, start, 0)
        };
        // The stream holds `GATHER_COPY` entries past its end.
        if stream.len() < len + n + GATHER_COPY {
            let grown = (len + n + GATHER_COPY).max(2 * stream.len());
            stream.resize(grown, 0);
            tags.resize(grown, 0);
        }
        let tag = k as u8;
        if n <= GATHER_COPY && from + GATHER_COPY <= entries.len() {
            // SAFETY: the source is within `entries` (checked), the destinations within
            // `stream` and `tags` (both hold `len + GATHER_COPY` bytes at least).
            unsafe {
                let source = entries.as_ptr().add(from).cast::<[u8; GATHER_COPY]>();
                let stream_at = stream.as_mut_ptr().add(len).cast::<[u8; GATHER_COPY]>();
                let tags_at = tags.as_mut_ptr().add(len).cast::<[u8; GATHER_COPY]>();
                stream_at.write_unaligned(source.read_unaligned());
                tags_at.write_unaligned([tag; GATHER_COPY]);
            }
        } else {
            stream[len..len + n].copy_from_slice(&entries[from..from + n]);
            tags[len..len + n].fill(tag);
        }
        // The first two bytes belong to the column when it has two entries (else its rows are
        // unspecified).
        let first = u32::from(stream[len] >> 4);
        let second = first + 1 + u32::from(stream[len + 1] >> 4);
        count[k] = n as u32;
        address[k] = slice.matrix_base + from as u32;
        first_rows[k] = first;
        second_rows[k] = second;
        len += n;
        ends[k] = len as u32;
    }
    Ok(len)
}

/// [`columns_scalar`] for checked pointers, with AVX2: the pointer pairs, counts and addresses
/// of eight columns at once (one gather of 32 bits per column reads p[j] and p[j + 1]), then
/// the copies column by column, then the rows of eight columns' first two entries at once
/// (one gather from the stream). `CHECKED`'s contract holds: the pointers do not decrease and
/// reach no further than `entries`; the columns increase (they are the block's broadcasts), so
/// their ranges are disjoint and the stream needs at most the span from the first column's
/// start to the last one's end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn columns_avx2(
    slice: &PeSlice<'_>,
    columns: &[u32],
    staged: [&mut [u32]; 4],
    gathered: &mut Gathered,
    ends: &mut [u32; BLOCK],
) -> usize {
    use std::arch::x86_64::*;
    let (pointers, entries) = (slice.pointers, slice.entries);
    let [count, address, first_rows, second_rows] = staged;
    let Some(&last) = columns.last() else {
        return 0;
    };
    assert!(columns.len() <= BLOCK && (last as usize) + 1 < pointers.len());
    for table in [&count, &address, &first_rows, &second_rows] {
        assert!(table.len() >= BLOCK);
    }
    let span = usize::from(pointers[last as usize + 1])
        .saturating_sub(usize::from(pointers[columns[0] as usize]));
    let Gathered {
        entries: stream,
        tags,
        ..
    } = gathered;
    if stream.len() < span + GATHER_COPY {
        let grown = (span + GATHER_COPY).max(2 * stream.len());
        stream.resize(grown, 0);
        tags.resize(grown, 0);
    }
    let mut starts = [0u32; BLOCK];
    // Where each column starts in the stream.
    let mut offsets = [0u32; BLOCK];
    let groups = columns.len().div_ceil(8) * 8;
    let base = _mm256_set1_epi32(slice.matrix_base as i32);
    let low_half = _mm256_set1_epi32(0xffff);
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let columns_len = _mm256_set1_epi32(columns.len() as i32);
    // The stream's length before the group's columns, in every lane.
    let mut before = _mm256_setzero_si256();
    for k in (0..groups).step_by(8) {
        let present = _mm256_cmpgt_epi32(
            columns_len,
            _mm256_add_epi32(lane, _mm256_set1_epi32(k as i32)),
        );
        // SAFETY: the masked load reads the lanes below `columns.len()` (the others are 0, a
        // column too); `k + 8 <= BLOCK` and every table holds `BLOCK` cells; a lane gathers
        // the 32 bits at `pointers + 2 j`, i.e. p[j] and p[j + 1], with `j + 1 <
        // pointers.len()`.
        unsafe {
            let j = _mm256_maskload_epi32(columns.as_ptr().add(k).cast::<i32>(), present);
            let pair = _mm256_i32gather_epi32::<2>(pointers.as_ptr().cast::<i32>(), j);
            let start = _mm256_and_si256(pair, low_half);
            let end = _mm256_srli_epi32::<16>(pair);
            let n = _mm256_and_si256(_mm256_sub_epi32(end, start), present);
            _mm256_storeu_si256(count.as_mut_ptr().add(k).cast::<__m256i>(), n);
            let at = _mm256_add_epi32(base, start);
            _mm256_storeu_si256(address.as_mut_ptr().add(k).cast::<__m256i>(), at);
            _mm256_storeu_si256(starts.as_mut_ptr().add(k).cast::<__m256i>(), start);
            // Inclusive prefix sums of the counts, within each half, then across halves.
            let mut sum = _mm256_add_epi32(n, _mm256_slli_si256::<4>(n));
            sum = _mm256_add_epi32(sum, _mm256_slli_si256::<8>(sum));
            let low_total = _mm256_shuffle_epi32::<0xff>(sum);
            sum = _mm256_add_epi32(sum, _mm256_permute2x128_si256::<0x08>(low_total, low_total));
            let offset = _mm256_add_epi32(before, _mm256_sub_epi32(sum, n));
            _mm256_storeu_si256(offsets.as_mut_ptr().add(k).cast::<__m256i>(), offset);
            let end = _mm256_add_epi32(before, sum);
            _mm256_storeu_si256(ends.as_mut_ptr().add(k).cast::<__m256i>(), end);
            before = _mm256_add_epi32(
                before,
                _mm256_permutevar8x32_epi32(sum, _mm256_set1_epi32(7)),
            );
        }
    }
    let total = _mm256_cvtsi256_si32(before) as usize;
    // The columns' ranges are disjoint within the span.
    assert!(total <= span && total + GATHER_COPY <= stream.len() && tags.len() == stream.len());
    let (stream_at, tags_at) = (stream.as_mut_ptr(), tags.as_mut_ptr());
    let mut tag = _mm_setzero_si128();
    let one = _mm_set1_epi8(1);
    for k in 0..columns.len() {
        let (from, n, at) = (starts[k] as usize, count[k] as usize, offsets[k] as usize);
        // SAFETY: the source is within `entries` (`from + n <= entries.len()` for checked
        // pointers, and the fixed-size copy checks its reach), the destinations within the
        // stream (`at + n <= total`, and `GATHER_COPY` bytes more, asserted).
        unsafe {
            if n <= GATHER_COPY && from + GATHER_COPY <= entries.len() {
                let source = entries.as_ptr().add(from).cast::<[u8; GATHER_COPY]>();
                let stream_to = stream_at.add(at).cast::<[u8; GATHER_COPY]>();
                stream_to.write_unaligned(source.read_unaligned());
                _mm_storeu_si128(tags_at.add(at).cast::<__m128i>(), tag);
            } else {
                let stream = std::slice::from_raw_parts_mut(stream_at.add(at), n);
                let tags = std::slice::from_raw_parts_mut(tags_at.add(at), n);
                copy_column(&entries[from..from + n], stream, tags, k as u8);
            }
        }
        tag = _mm_add_epi8(tag, one);
    }
    let len = total;
    let nibble = _mm256_set1_epi32(15);
    for k in (0..groups).step_by(8) {
        // SAFETY: a lane reads 32 bits at an offset of at most `len`, and the stream holds
        // `GATHER_COPY` bytes past `len`; `k + 8 <= BLOCK`.
        unsafe {
            let offset = _mm256_loadu_si256(offsets.as_ptr().add(k).cast::<__m256i>());
            let bytes = _mm256_i32gather_epi32::<1>(stream_at.cast_const().cast::<i32>(), offset);
            let first = _mm256_and_si256(_mm256_srli_epi32::<4>(bytes), nibble);
            let zeros = _mm256_and_si256(_mm256_srli_epi32::<12>(bytes), nibble);
            let second = _mm256_add_epi32(_mm256_add_epi32(first, zeros), _mm256_set1_epi32(1));
            _mm256_storeu_si256(first_rows.as_mut_ptr().add(k).cast::<__m256i>(), first);
            _mm256_storeu_si256(second_rows.as_mut_ptr().add(k).cast::<__m256i>(), second);
        }
    }
    len
}

/// Copies a column that the fixed-size copy does not take (long, or near the end of the
/// memory) into the stream, and tags its entries.
#[cold]
#[inline(never)]
fn copy_column(entries: &[u8], stream: &mut [u8], tags: &mut [u8], tag: u8) {
    stream.copy_from_slice(entries);
    tags.fill(tag);
}

/// Loop 2 of [`walk_pe`]: the rows and multiply-accumulates of a PE's stream of entries
/// (`tags` as long as `stream`, every tag below `addends.len()`, `acc` non-empty with its last
/// slot taking the additions of entries past the PE's rows); entry i's row goes to
/// `rows[i + 2]`. Kept out of line: its loop then has registers to itself.
#[inline(never)]
fn accumulate<const SATURATE: bool>(
    stream: &[u8],
    tags: &[u8],
    acc: &mut [i32],
    addends: &[[i32; 16]],
    rows: &mut [u32],
) {
    assert!(tags.len() == stream.len() && rows.len() >= stream.len() + 2 && !acc.is_empty());
    // `walk_pe` tags entries with broadcast indices below `columns.len() == addends.len()`.
    debug_assert!(tags.iter().all(|&tag| usize::from(tag) < addends.len()));
    assert!(addends.len() <= BLOCK);
    let past_rows = acc.len() as u32 - 1;
    let mut next_row = 0u32;
    // Tags are below 256, so the first entry starts a column.
    let mut previous_tag = u32::MAX;
    for ((&e, &tag), row) in stream.iter().zip(tags).zip(&mut rows[2..]) {
        let tag = u32::from(tag);
        let x = select_unpredictable(previous_tag == tag, next_row, 0) + u32::from(e >> 4);
        previous_tag = tag;
        next_row = x + 1;
        *row = x;
        let slot = x.min(past_rows) as usize;
        // SAFETY: `slot <= past_rows < acc.len()`, `tag < addends.len() <= BLOCK` (the
        // contract, and asserted).
        unsafe {
            let addend = *addends
                .get_unchecked(tag as usize)
                .get_unchecked(usize::from(e & 15));
            add::<SATURATE>(acc.get_unchecked_mut(slot), addend);
        }
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
    fn new(timing: &Timing, scratch: &mut Scratch) -> TimingCursor {
        scratch.pe_state.reset(&scratch.rows);
        // Over PEs, the cycle from which each of the last `depth` broadcasts has a free slot.
        scratch.slot_ring.clear();
        scratch.slot_ring.resize(timing.fifo_depth, 0);
        TimingCursor {
            pes: scratch.rows.len(),
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

/// Pass 2 of [`run_tile`] over the next `len` broadcasts, whose cells are in `scratch.cells`:
/// the recurrences, leaving each PE's busy and covered cycles, rows issued and SRAM reads in
/// `scratch.pe_state`.
fn timing_pass<R: SramRows>(cursor: &mut TimingCursor, len: usize, scratch: &mut Scratch, sram: R) {
    let Scratch {
        cells,
        pe_state: state,
        slot_ring,
        ..
    } = scratch;
    #[cfg(target_arch = "x86_64")]
    let vector = std::arch::is_x86_feature_detected!("avx2");
    let (depth, l, pes) = (cursor.depth, cursor.pointer_read_cycles, cursor.pes);
    assert!(len <= BLOCK && state.holds(pes));
    assert!(cells.last.len() >= pes * BLOCK && cells.before_last.len() >= pes * BLOCK);
    for k in 0..len {
        let earliest = cursor.next_b;
        let b = if cursor.k >= depth {
            earliest.max(slot_ring[cursor.ring])
        } else {
            earliest
        };
        cursor.ccu_stalls += u64::from(b - earliest);
        cursor.next_b = b + 1;
        let row = k * pes..(k + 1) * pes;
        let broadcast = BroadcastCells {
            count: &cells.count[row.clone()],
            address: &cells.address[row.clone()],
            first: &cells.first[row.clone()],
            second: &cells.second[row.clone()],
            before_last: &cells.before_last,
            last: &cells.last,
            column: k,
        };
        let (mut done, mut sram_done) = (0, 0);
        let (mut max_free, mut bypassed) = (0, 0);
        #[cfg(target_arch = "x86_64")]
        if vector {
            let shift = sram.shift();
            // SAFETY: the CPU supports AVX2 (checked above); the broadcast's cells are `pes`
            // long, `k < len <= BLOCK`, and the PE-major tables and the state fit (asserted
            // before the loop).
            (done, max_free, bypassed) =
                unsafe { broadcast_step_avx2(b, l, &broadcast, state, shift) };
            if shift.is_some() {
                sram_done = done;
            }
        }
        for p in done..pes {
            let (free, forwarded) = pe_step(b, l, &broadcast, state, p);
            max_free = max_free.max(free);
            bypassed += forwarded;
        }
        sram_reads(&broadcast, state, sram, sram_done);
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

impl BroadcastCells<'_> {
    /// Whether the tables and the state hold every PE of the broadcast.
    fn fit(&self, state: &PeTimingState) -> bool {
        let pes = self.count.len();
        [self.address, self.first, self.second]
            .iter()
            .all(|table| table.len() == pes)
            && self.column < BLOCK
            && self.last.len() >= pes * BLOCK
            && self.before_last.len() >= pes * BLOCK
            && state.holds(pes)
    }
}

/// One broadcast's row of the [`Cells`] tables (one cell per PE).
struct BroadcastCells<'c> {
    count: &'c [u32],
    address: &'c [u32],
    first: &'c [u32],
    second: &'c [u32],
    /// The whole PE-major tables, and the broadcast's index in the block.
    before_last: &'c [u32],
    last: &'c [u32],
    column: usize,
}

/// PE `p`'s response to the broadcast at cycle `b` (the recurrences, without branches);
/// returns the cycle from which the PE has a free FIFO slot for it, and its bypasses.
#[inline(always)]
fn pe_step(
    b: u32,
    l: u32,
    cells: &BroadcastCells<'_>,
    state: &mut PeTimingState,
    p: usize,
) -> (u32, u32) {
    let b1 = b + 1;
    let n = cells.count[p];
    let has_work = n != 0;
    let many = n >= 2;
    // Pointer read starts at r and ends at r + L; a non-empty column then waits for the
    // matrix unit.
    let read_done = b1.max(state.ptr_free[p]) + l;
    let m = if has_work {
        read_done.max(state.m_free[p])
    } else {
        read_done
    };
    let work_end = m + n;
    // Bypass: the accumulator is read 1 cycle and written 3 cycles after issue (at most one
    // forwarded read per entry). Only the column's first two entries can meet entries of
    // earlier columns (rows increase within a column).
    let (t_last, t_second) = (state.t_last[p], state.t_second[p]);
    let (row_last, row_second) = (state.row_last[p], state.row_second[p]);
    let first_forwarded = has_work
        & (((cells.first[p] == row_last) & (m.wrapping_sub(t_last) <= 2))
            | ((cells.first[p] == row_second) & (m.wrapping_sub(t_second) <= 2)));
    let second_forwarded =
        many & (cells.second[p] == row_last) & ((m + 1).wrapping_sub(t_last) <= 2);
    let second_issue = if many {
        work_end.wrapping_sub(2)
    } else {
        t_last
    };
    if has_work {
        state.t_second[p] = second_issue;
        state.t_last[p] = work_end.wrapping_sub(1);
        let at = p * BLOCK + cells.column;
        state.row_second[p] = if many {
            cells.before_last[at]
        } else {
            row_last
        };
        state.row_last[p] = cells.last[at];
        state.past_rows[p] |= u32::from(cells.last[at] >= state.local_rows[p]);
        state.m_free[p] = work_end;
    }
    state.ptr_free[p] = m;
    state.busy[p] += n;
    // Cycles with an unfinished column queued: from the later of b + 1 and the previous cover
    // (`work_end >= b + 1 + L`).
    let until = state.cover_until[p];
    let from = b1.max(until);
    state.cover_len[p] += work_end.max(from) - from;
    let until = until.max(work_end);
    state.cover_until[p] = until;
    (
        until,
        u32::from(first_forwarded) + u32::from(second_forwarded),
    )
}

/// [`pe_step`] for the PEs in groups of eight, with AVX2, and their [`sram_reads`] when the
/// SRAM row is a `shift`; returns the PEs done (a multiple of eight), the largest free cycle
/// and the bypasses over them.
///
/// # Safety
/// The CPU supports AVX2, and `cells` and `state` [`fit`](BroadcastCells::fit) (checked once
/// per block by the timing pass).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn broadcast_step_avx2(
    b: u32,
    l: u32,
    cells: &BroadcastCells<'_>,
    state: &mut PeTimingState,
    shift: Option<u32>,
) -> (usize, u32, u32) {
    use std::arch::x86_64::*;
    let pes = cells.count.len();
    let lanes = pes / 8 * 8;
    debug_assert!(cells.fit(state));
    // Lane q of a group reads PE-major tables at `q * BLOCK` past the group's first PE.
    let stride = BLOCK as i32;
    let pe_major = _mm256_setr_epi32(
        0,
        stride,
        2 * stride,
        3 * stride,
        4 * stride,
        5 * stride,
        6 * stride,
        7 * stride,
    );
    let sram_shift = _mm_cvtsi32_si128(shift.unwrap_or(0) as i32);
    let b1 = _mm256_set1_epi32(b.wrapping_add(1) as i32);
    let l = _mm256_set1_epi32(l as i32);
    let (one, two) = (_mm256_set1_epi32(1), _mm256_set1_epi32(2));
    let zero = _mm256_setzero_si256();
    // Unsigned `d <= 2`, as a lane mask.
    let at_most_two = |d: __m256i| _mm256_cmpeq_epi32(_mm256_min_epu32(d, two), d);
    let mut max_free = zero;
    let mut bypassed = zero;
    for i in (0..lanes).step_by(8) {
        // SAFETY: every slice holds at least `lanes` elements (the contract), `i + 8 <= lanes`.
        unsafe {
            let load = |s: &[u32]| _mm256_loadu_si256(s.as_ptr().add(i).cast::<__m256i>());
            let store = |s: &mut [u32], v: __m256i| {
                _mm256_storeu_si256(s.as_mut_ptr().add(i).cast::<__m256i>(), v)
            };
            let n = load(cells.count);
            let has_work = _mm256_xor_si256(_mm256_cmpeq_epi32(n, zero), _mm256_set1_epi32(-1));
            let many = _mm256_cmpeq_epi32(_mm256_max_epu32(n, two), n);
            let read_done = _mm256_add_epi32(_mm256_max_epu32(b1, load(&state.ptr_free)), l);
            let m_free = load(&state.m_free);
            let m = _mm256_blendv_epi8(read_done, _mm256_max_epu32(read_done, m_free), has_work);
            let work_end = _mm256_add_epi32(m, n);
            let (t_last, t_second) = (load(&state.t_last), load(&state.t_second));
            let (row_last, row_second) = (load(&state.row_last), load(&state.row_second));
            let first = load(cells.first);
            let first_forwarded = _mm256_and_si256(
                has_work,
                _mm256_or_si256(
                    _mm256_and_si256(
                        _mm256_cmpeq_epi32(first, row_last),
                        at_most_two(_mm256_sub_epi32(m, t_last)),
                    ),
                    _mm256_and_si256(
                        _mm256_cmpeq_epi32(first, row_second),
                        at_most_two(_mm256_sub_epi32(m, t_second)),
                    ),
                ),
            );
            let second_forwarded = _mm256_and_si256(
                _mm256_and_si256(many, _mm256_cmpeq_epi32(load(cells.second), row_last)),
                at_most_two(_mm256_sub_epi32(_mm256_add_epi32(m, one), t_last)),
            );
            // Masks are -1 per forwarded read.
            bypassed = _mm256_sub_epi32(bypassed, first_forwarded);
            bypassed = _mm256_sub_epi32(bypassed, second_forwarded);
            let second_issue = _mm256_blendv_epi8(t_last, _mm256_sub_epi32(work_end, two), many);
            store(
                &mut state.t_second,
                _mm256_blendv_epi8(t_second, second_issue, has_work),
            );
            store(
                &mut state.t_last,
                _mm256_blendv_epi8(t_last, _mm256_sub_epi32(work_end, one), has_work),
            );
            // SAFETY (gathers): the lanes read `(i + q) * BLOCK + column` for q < 8, below
            // `lanes * BLOCK` (the contract).
            let gather = |s: &[u32]| {
                let group = s.as_ptr().add(i * BLOCK + cells.column).cast::<i32>();
                _mm256_i32gather_epi32::<4>(group, pe_major)
            };
            let last = gather(cells.last);
            let second_row = _mm256_blendv_epi8(row_last, gather(cells.before_last), many);
            store(
                &mut state.row_second,
                _mm256_blendv_epi8(row_second, second_row, has_work),
            );
            store(
                &mut state.row_last,
                _mm256_blendv_epi8(row_last, last, has_work),
            );
            let past = _mm256_cmpeq_epi32(_mm256_max_epu32(last, load(&state.local_rows)), last);
            let past = _mm256_and_si256(_mm256_and_si256(past, has_work), one);
            let past = _mm256_or_si256(load(&state.past_rows), past);
            store(&mut state.past_rows, past);
            store(
                &mut state.m_free,
                _mm256_blendv_epi8(m_free, work_end, has_work),
            );
            store(&mut state.ptr_free, m);
            let busy = _mm256_add_epi32(load(&state.busy), n);
            store(&mut state.busy, busy);
            let until = load(&state.cover_until);
            let from = _mm256_max_epu32(b1, until);
            let covered = _mm256_sub_epi32(_mm256_max_epu32(work_end, from), from);
            let cover_len = _mm256_add_epi32(load(&state.cover_len), covered);
            store(&mut state.cover_len, cover_len);
            let until = _mm256_max_epu32(until, work_end);
            store(&mut state.cover_until, until);
            max_free = _mm256_max_epu32(max_free, until);
            if shift.is_some() {
                let address = load(cells.address);
                let first_sram = _mm256_srl_epi32(address, sram_shift);
                let end = _mm256_sub_epi32(_mm256_add_epi32(address, n), one);
                let last_sram = _mm256_srl_epi32(end, sram_shift);
                let row_buffer = load(&state.row_buffer);
                let buffered = _mm256_and_si256(_mm256_cmpeq_epi32(row_buffer, first_sram), one);
                let reads = _mm256_sub_epi32(
                    _mm256_add_epi32(_mm256_sub_epi32(last_sram, first_sram), one),
                    buffered,
                );
                let matrix_reads =
                    _mm256_add_epi32(load(&state.matrix_reads), _mm256_and_si256(reads, has_work));
                store(&mut state.matrix_reads, matrix_reads);
                store(
                    &mut state.row_buffer,
                    _mm256_blendv_epi8(row_buffer, last_sram, has_work),
                );
            }
        }
    }
    // Across lanes: halves, then pairs, then neighbours.
    let max_free = _mm256_max_epu32(max_free, _mm256_permute2x128_si256::<1>(max_free, max_free));
    let max_free = _mm256_max_epu32(max_free, _mm256_shuffle_epi32::<0x4e>(max_free));
    let max_free = _mm256_max_epu32(max_free, _mm256_shuffle_epi32::<0xb1>(max_free));
    let bypassed = _mm256_add_epi32(bypassed, _mm256_permute2x128_si256::<1>(bypassed, bypassed));
    let bypassed = _mm256_add_epi32(bypassed, _mm256_shuffle_epi32::<0x4e>(bypassed));
    let bypassed = _mm256_add_epi32(bypassed, _mm256_shuffle_epi32::<0xb1>(bypassed));
    (
        lanes,
        _mm256_cvtsi256_si32(max_free) as u32,
        _mm256_cvtsi256_si32(bypassed) as u32,
    )
}

/// The SRAM row reads of every PE from `from` on for its column of a broadcast: the rows the
/// column touches, minus the one still in the row buffer.
#[inline(always)]
fn sram_reads<R: SramRows>(
    cells: &BroadcastCells<'_>,
    state: &mut PeTimingState,
    sram: R,
    from: usize,
) {
    let pes = cells.count.len();
    let (count, address) = (cells.count, &cells.address[..pes]);
    let row_buffer = &mut state.row_buffer[..pes];
    let matrix_reads = &mut state.matrix_reads[..pes];
    for p in from..pes {
        let n = count[p];
        let first = sram.row(address[p]);
        let last = sram.row((address[p] + n).wrapping_sub(1));
        // (Meaningless, and discarded, for an empty column.)
        let reads = last
            .wrapping_sub(first)
            .wrapping_add(1 - u32::from(row_buffer[p] == first));
        matrix_reads[p] += select_unpredictable(n != 0, reads, 0);
        row_buffer[p] = select_unpredictable(n != 0, last, row_buffer[p]);
    }
}
