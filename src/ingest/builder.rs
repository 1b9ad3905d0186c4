//! Column buffers that checked legs are pushed into, one builder per output column, turned into a
//! polars `DataFrame` when a batch is done. Each parse worker owns its own builder.

use polars::prelude::*;

use super::record::{Leg, N_CCV, N_INT, N_JSON, N_TOP};
use crate::schema::{
    int_field_dtype, CCV_STR, DATE, END_TIME, EXPORTED_COLS, INT_FIELDS, JSON_COLS, PARSE_FLAGS,
    SOURCE_FILE, SOURCE_FORMAT, SOURCE_LINE, START_TIME, TOP_STR,
};

/// Where in its file a leg was read (`source_offset`, the record's decoded byte offset): with
/// `source_file` it orders every leg totally and tells apart records that share a line.
pub(crate) const RECORD_INDEX: &str = crate::schema::SOURCE_OFFSET;

/// Unix microseconds as a UTC timestamp column.
fn utc_micros(ca: Int64Chunked) -> Column {
    ca.into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

pub(crate) struct LegBuilder {
    top: Vec<StringChunkedBuilder>,
    ccv: Vec<StringChunkedBuilder>,
    ints: Vec<PrimitiveChunkedBuilder<Int64Type>>,
    json: Vec<StringChunkedBuilder>,
    start: PrimitiveChunkedBuilder<Int64Type>,
    end: PrimitiveChunkedBuilder<Int64Type>,
    date: PrimitiveChunkedBuilder<Int32Type>,
    flags: StringChunkedBuilder,
    recorded: [PrimitiveChunkedBuilder<Int64Type>; 2],
    line: PrimitiveChunkedBuilder<Int64Type>,
    record: PrimitiveChunkedBuilder<Int64Type>,
    len: usize,
}

fn strs(names: &[&str], cap: usize) -> Vec<StringChunkedBuilder> {
    names
        .iter()
        .map(|n| StringChunkedBuilder::new((*n).into(), cap))
        .collect()
}

fn i64b(name: &str, cap: usize) -> PrimitiveChunkedBuilder<Int64Type> {
    PrimitiveChunkedBuilder::new(name.into(), cap)
}

impl LegBuilder {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        debug_assert_eq!(TOP_STR.len(), N_TOP);
        debug_assert_eq!(CCV_STR.len(), N_CCV);
        debug_assert_eq!(INT_FIELDS.len(), N_INT);
        debug_assert_eq!(JSON_COLS.len(), N_JSON);
        LegBuilder {
            top: strs(TOP_STR, cap),
            ccv: strs(CCV_STR, cap),
            ints: INT_FIELDS.iter().map(|f| i64b(f.name, cap)).collect(),
            json: strs(JSON_COLS, cap),
            start: i64b(START_TIME, cap),
            end: i64b(END_TIME, cap),
            date: PrimitiveChunkedBuilder::new(DATE.into(), cap),
            flags: StringChunkedBuilder::new(PARSE_FLAGS.into(), cap),
            recorded: [i64b(EXPORTED_COLS[0], cap), i64b(EXPORTED_COLS[1], cap)],
            line: i64b(SOURCE_LINE, cap),
            record: i64b(RECORD_INDEX, cap),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `line` is the record's physical line, `offset` its decoded byte offset in the file.
    pub(crate) fn push(&mut self, leg: &Leg<'_>, line: u64, offset: u64) {
        for (b, v) in self.top.iter_mut().zip(&leg.top) {
            b.append_option(v.as_deref());
        }
        for (b, v) in self.ccv.iter_mut().zip(&leg.ccv) {
            b.append_option(v.as_deref());
        }
        for (b, v) in self.ints.iter_mut().zip(&leg.ints) {
            b.append_option(*v);
        }
        for (b, v) in self.json.iter_mut().zip(&leg.json) {
            b.append_option(v.as_deref());
        }
        self.start.append_option(leg.start_us);
        self.end.append_option(leg.end_us);
        self.date.append_option(leg.date);
        self.flags.append_option(leg.flags.as_option());
        for (b, v) in self.recorded.iter_mut().zip(leg.recorded) {
            b.append_option(v);
        }
        self.line.append_value(line as i64);
        self.record.append_value(offset as i64);
        self.len += 1;
    }

    /// The batch as a frame, with `source_file` and `source_format` set for every row.
    pub(crate) fn finish(self, source_file: &str, format: &str) -> PolarsResult<DataFrame> {
        let height = self.len;
        let mut cols: Vec<Column> = Vec::with_capacity(N_TOP + N_CCV + N_INT + N_JSON + 8);
        cols.extend(self.top.into_iter().map(|b| b.finish().into_column()));
        cols.extend(self.ccv.into_iter().map(|b| b.finish().into_column()));
        for (b, f) in self.ints.into_iter().zip(INT_FIELDS) {
            let ca = b.finish();
            cols.push(match int_field_dtype(f) {
                DataType::Int64 => ca.into_column(),
                _ => utc_micros(ca),
            });
        }
        cols.extend(self.json.into_iter().map(|b| b.finish().into_column()));
        cols.push(utc_micros(self.start.finish()));
        cols.push(utc_micros(self.end.finish()));
        cols.push(self.date.finish().into_date().into_column());
        cols.push(self.flags.finish().into_column());
        cols.extend(self.recorded.into_iter().map(|b| b.finish().into_column()));
        cols.push(StringChunked::full(SOURCE_FORMAT.into(), format, height).into_column());
        cols.push(StringChunked::full(SOURCE_FILE.into(), source_file, height).into_column());
        cols.push(self.line.finish().into_column());
        cols.push(self.record.finish().into_column());
        DataFrame::new(height, cols)
    }
}
