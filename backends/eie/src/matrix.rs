//! The per-PE sparse storage of weight tiles, both ways: [`encode_row_tile`] packs the codes of a
//! row tile into each PE's columns of 4-bit codes and 4-bit zero runs with padding entries (EIE
//! §III-B), and [`decode_program_weights`] reads every tile a program runs back out of the PE
//! memories it loads, as the machine would see them.
//!
//! Invariant: decoding what the encoder produced gives back exactly the non-zero codes at their
//! rows and columns; this module depends on the ISA only (no IR).

use crate::isa::{
    CODEBOOK_LEN, ColumnWalk, Instruction, MATRIX_ENTRIES, MAX_ZERO_RUN, POINTER_WORDS, Program,
    TileConfig, ZERO_CODE, pack_entry,
};
use std::collections::BTreeSet;

/// The non-zero codes of a `rows × cols` matrix, row by row (compressed sparse rows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeRows {
    pub rows: usize,
    pub cols: usize,
    /// `row_start[r]..row_start[r + 1]` index `col` and `code` for row `r`.
    pub row_start: Vec<usize>,
    /// Columns, increasing within a row.
    pub col: Vec<u32>,
    /// Codes, 1..=15.
    pub code: Vec<u8>,
}

impl CodeRows {
    /// Non-zero codes of the matrix.
    pub fn nonzeros(&self) -> usize {
        self.code.len()
    }
}

/// One PE's share of a row tile, stored column by column over all the layer's columns:
/// column `j` is `entries[col_start[j]..col_start[j + 1]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeColumns {
    pub col_start: Vec<u32>,
    pub entries: Vec<u8>,
    /// Padding entries among `entries`.
    pub padding: u64,
}

impl PeColumns {
    /// Entries of columns `from..to`.
    pub fn entries_in(&self, from: usize, to: usize) -> u32 {
        self.col_start[to] - self.col_start[from]
    }
}

/// Appends the entries of one column whose non-zeros sit at increasing `local_rows`; returns the
/// padding entries written. A gap of more than [`MAX_ZERO_RUN`] zeros takes padding entries
/// `(0, 15)` of 16 positions each.
pub fn encode_column(nonzeros: impl Iterator<Item = (u32, u8)>, out: &mut Vec<u8>) -> u64 {
    let mut position = 0u32;
    let mut padding = 0;
    let run = u32::from(MAX_ZERO_RUN);
    for (row, code) in nonzeros {
        debug_assert!(row >= position && code != ZERO_CODE);
        let mut gap = row - position;
        while gap > run {
            out.push(pack_entry(ZERO_CODE, MAX_ZERO_RUN));
            padding += 1;
            gap -= run + 1;
        }
        out.push(pack_entry(code, gap as u8));
        position = row + 1;
    }
    padding
}

/// Encodes rows `first_row..first_row + rows` of `matrix` for `pes` interleaved PEs: PE `k` holds
/// tile rows `i` with `i % pes == k` at local row `i / pes`.
pub fn encode_row_tile(
    matrix: &CodeRows,
    first_row: usize,
    rows: usize,
    pes: usize,
) -> Vec<PeColumns> {
    let cols = matrix.cols;
    (0..pes)
        .map(|pe| {
            let tile_rows = (pe..rows).step_by(pes);
            // Counting sort of the PE's non-zeros by column; rows stay increasing in a column.
            let mut count = vec![0u32; cols + 1];
            for i in tile_rows.clone() {
                let r = first_row + i;
                for &c in &matrix.col[matrix.row_start[r]..matrix.row_start[r + 1]] {
                    count[c as usize + 1] += 1;
                }
            }
            for j in 0..cols {
                count[j + 1] += count[j];
            }
            let total = count[cols] as usize;
            let mut next = count.clone();
            let mut local = vec![0u32; total];
            let mut codes = vec![0u8; total];
            for i in tile_rows {
                let r = first_row + i;
                let span = matrix.row_start[r]..matrix.row_start[r + 1];
                for (&c, &code) in matrix.col[span.clone()].iter().zip(&matrix.code[span]) {
                    let slot = &mut next[c as usize];
                    local[*slot as usize] = (i / pes) as u32;
                    codes[*slot as usize] = code;
                    *slot += 1;
                }
            }
            let mut out = PeColumns {
                col_start: Vec::with_capacity(cols + 1),
                entries: Vec::with_capacity(total + total / 8),
                padding: 0,
            };
            for j in 0..cols {
                out.col_start.push(out.entries.len() as u32);
                let span = count[j] as usize..count[j + 1] as usize;
                let column = local[span.clone()]
                    .iter()
                    .copied()
                    .zip(codes[span].iter().copied());
                out.padding += encode_column(column, &mut out.entries);
            }
            out.col_start.push(out.entries.len() as u32);
            out
        })
        .collect()
}

/// One non-zero weight as a program stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredWeight {
    /// Layer row.
    pub row: u32,
    /// Layer column.
    pub col: u32,
    /// The 4-bit code.
    pub code: u8,
    /// `codebook[code]` in `Q(weight_frac)`.
    pub weight: i16,
}

/// What a program stores for one layer: its non-zero weights sorted by (row, column), and the
/// weight format of the tiles that hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerWeights {
    pub weights: Vec<StoredWeight>,
    pub weight_frac: u8,
    /// Padding entries walked over by the tiles (each tile counted once).
    pub padding: u64,
    /// Tiles of the layer (each counted once, however often it runs).
    pub tiles: u32,
}

/// Reads back, for every layer of `program`, the weights its tiles hold when they run: replays
/// the loads into per-PE memories and walks each tile's columns at its first run (a tile that runs
/// again, as an LSTM's does every step, is read once). Fails with the instruction index and the
/// reason on a pointer or row that leaves the tile or the memories.
pub fn decode_program_weights(program: &Program) -> Result<Vec<LayerWeights>, String> {
    let pes = usize::from(program.pes);
    let mut pointers = vec![vec![0u16; POINTER_WORDS as usize]; pes];
    let mut matrix = vec![vec![0u8; MATRIX_ENTRIES as usize]; pes];
    let mut codebook = [0i16; CODEBOOK_LEN];
    let mut current: Option<TileConfig> = None;
    let mut seen = BTreeSet::new();
    let mut layers = vec![LayerWeights::default(); program.layers.len()];
    for (index, instruction) in program.instructions.iter().enumerate() {
        match instruction {
            Instruction::Configure(c) => current = Some(*c),
            Instruction::LoadCodebook { weights } => codebook = *weights,
            Instruction::LoadPointers {
                pe,
                address,
                pointers: p,
            } => {
                let at = usize::from(*address);
                pointers[usize::from(*pe)][at..at + p.len()].copy_from_slice(p);
            }
            Instruction::LoadMatrix {
                pe,
                address,
                entries,
            } => {
                let at = *address as usize;
                matrix[usize::from(*pe)][at..at + entries.len()].copy_from_slice(entries);
            }
            Instruction::Run => {
                let c = current
                    .ok_or_else(|| format!("instruction {index}: run without configuration"))?;
                if !seen.insert((c.layer, c.row_offset, c.col_offset)) {
                    continue;
                }
                let layer = &mut layers[usize::from(c.layer)];
                layer.weight_frac = c.weight_frac;
                layer.tiles += 1;
                for pe in 0..pes {
                    for j in 0..c.cols as usize {
                        let at = usize::from(c.ptr_base) + j;
                        let (p0, p1) = (pointers[pe][at] as usize, pointers[pe][at + 1] as usize);
                        let base = c.matrix_base as usize;
                        if p0 > p1 || base + p1 > MATRIX_ENTRIES as usize {
                            return Err(format!(
                                "instruction {index}: PE {pe} column {j}: pointers {p0}..{p1} from base {base} leave the matrix memory"
                            ));
                        }
                        let column = &matrix[pe][base + p0..base + p1];
                        layer.padding += column
                            .iter()
                            .filter(|&&e| e == pack_entry(ZERO_CODE, MAX_ZERO_RUN))
                            .count() as u64;
                        for (local, code) in ColumnWalk::new(column) {
                            let row = pe as u64 + u64::from(local) * pes as u64;
                            if row >= u64::from(c.rows) {
                                return Err(format!(
                                    "instruction {index}: PE {pe} column {j}: an entry addresses tile row {row} of {}",
                                    c.rows
                                ));
                            }
                            layer.weights.push(StoredWeight {
                                row: c.row_offset + row as u32,
                                col: c.col_offset + j as u32,
                                code,
                                weight: codebook[usize::from(code)],
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for layer in &mut layers {
        layer.weights.sort_unstable();
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(dense: &[Vec<u8>]) -> CodeRows {
        let mut m = CodeRows {
            rows: dense.len(),
            cols: dense.first().map_or(0, Vec::len),
            row_start: vec![0],
            ..CodeRows::default()
        };
        for row in dense {
            for (c, &code) in row.iter().enumerate() {
                if code != 0 {
                    m.col.push(c as u32);
                    m.code.push(code);
                }
            }
            m.row_start.push(m.col.len());
        }
        m
    }

    #[test]
    fn one_pe_column_matches_the_paper() {
        // Column [0,0,1,2,0×18,3] → v=[1,2,0,3], z=[2,0,15,2].
        let mut column = vec![vec![0u8]; 23];
        column[2][0] = 1;
        column[3][0] = 2;
        column[22][0] = 3;
        let pe = &encode_row_tile(&rows_of(&column), 0, 23, 1)[0];
        assert_eq!(pe.col_start, vec![0, 4]);
        let vz: Vec<(u8, u8)> = pe.entries.iter().map(|&e| (e & 15, e >> 4)).collect();
        assert_eq!(vz, vec![(1, 2), (2, 0), (0, 15), (3, 2)]);
        assert_eq!(pe.padding, 1);
    }

    #[test]
    fn interleaved_pes_hold_their_rows() {
        // 6 rows over 4 PEs: PE 1 holds rows 1 and 5 (local 0 and 1).
        let dense = vec![
            vec![0, 1],
            vec![2, 0],
            vec![0, 0],
            vec![3, 3],
            vec![0, 0],
            vec![4, 5],
        ];
        let pes = encode_row_tile(&rows_of(&dense), 0, 6, 4);
        assert_eq!(pes[1].col_start, vec![0, 2, 3]);
        let walked: Vec<_> = ColumnWalk::new(&pes[1].entries[0..2]).collect();
        assert_eq!(walked, vec![(0, 2), (1, 4)]);
        let walked: Vec<_> = ColumnWalk::new(&pes[1].entries[2..3]).collect();
        assert_eq!(walked, vec![(1, 5)]);
        assert!(pes[2].entries.is_empty());
    }
}
