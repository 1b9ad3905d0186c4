//! Parquet files through polars' own Parquet encoder (`polars-parquet`), with the encoding of
//! each text column chosen here.
//!
//! polars' `ParquetWriter` asks for dictionary encoding on every text column and decides per
//! column chunk whether it is worth it from a HyperLogLog estimate over every value. For the
//! legs' long, mostly unique texts (SDP bodies, SIP headers, the kept JSON objects, call ids)
//! that estimate hashes every byte only to fall back to plain encoding: on a million legs it was
//! about 8% of the run's CPU time. Here a column chunk whose strided sample of 32 values is
//! more than three quarters distinct is written plain at once, and any other text column is
//! cast to a dictionary directly, which counts its distinct values exactly (see [`prepare`]).
//! The same encoder, page layout, statistics and compression as polars': only where the
//! decision is made changes, never a value.

use std::io::Write;

use polars::frame::chunk_df_for_writing;
use polars::prelude::*;
use polars_arrow::array::{Array, ArrayRef, DictionaryArray, PrimitiveArray, Utf8ViewArray};
use polars_arrow::datatypes::{ArrowDataType, IntegerType};
use polars_parquet::parquet::compression::Compression;
use polars_parquet::parquet::page::{CompressedDictPage, DataPageHeader};
use polars_parquet::parquet::CowBuffer;
use polars_parquet::write::{
    array_to_columns, get_dtype_encoding, CompressedDataPage, CompressedPage, CompressionOptions,
    DynIter, DynStreamingIterator, Encoding, FallibleStreamingIterator, FileWriter, KeyValue, Page,
    StatisticsOptions, Version, WriteOptions, ZstdLevel,
};

/// Rows per row group.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The zstd level of every page: level 1 writes about twice as fast as the default 3 for files
/// a few percent larger.
const ZSTD_LEVEL: i32 = 1;

/// The footer's key-value metadata: none. polars adds the Arrow schema as an `ARROW:schema`
/// key by default, 7.6 KB in every legs file (16% of a partition file of 5 legs) and 2.4 KB in a
/// `daily` file, which repeats what the Parquet schema's logical types already say (strings,
/// DATE, TIMESTAMP in microseconds adjusted to UTC, DECIMAL(18,4), INT64): polars, DuckDB,
/// pyarrow and Spark read the same columns and types without it.
const FOOTER_METADATA: &[KeyValue] = &[];

/// Values a text column's encoding is decided from. Each is hashed whole, and the long texts
/// make that the cost: 128 took 2.7% of a run's CPU time, 32 a quarter of that.
const SAMPLE: usize = 32;

/// Writes `df` as one Parquet file to `w`: zstd level 1, min/max/null-count statistics, row
/// groups of up to [`ROW_GROUP_ROWS`] rows, and no `ARROW:schema` key in the footer (see
/// [`FOOTER_METADATA`]). Returns the file's size.
pub(crate) fn write<W: Write>(df: &mut DataFrame, w: W) -> PolarsResult<u64> {
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        compression: zstd_options(),
        version: Version::V1,
        data_page_size: None,
    };
    let df = chunk_df_for_writing(df, ROW_GROUP_ROWS)?;
    let schema = df.schema().to_arrow(CompatLevel::newest());
    let mut writer = FileWriter::try_new(w, schema, options)?;
    let fields = writer.parquet_schema().fields().to_vec();
    for batch in df.iter_chunks(CompatLevel::newest(), false) {
        let rows = batch.len();
        if rows == 0 {
            continue;
        }
        let mut columns = Vec::with_capacity(fields.len());
        for (array, field) in batch.into_arrays().into_iter().zip(&fields) {
            let (array, encodings) = prepare(array);
            for pages in array_to_columns(array, field.clone(), options, &encodings)? {
                columns.push(Ok(DynStreamingIterator::new(Zstd {
                    pages,
                    current: None,
                })));
            }
        }
        writer.write(rows as u64, DynIter::new(columns.into_iter()))?;
    }
    writer.end(Some(FOOTER_METADATA.to_vec()))
}

/// A column's pages compressed with zstd level 1 by one context per thread, kept from page to
/// page. (polars-parquet's own `Compressor` sets up a fresh context for every page, and the
/// legs' many small partitions make many pages: 2% of a 1M run's CPU time.) The bytes are the
/// same.
struct Zstd<I> {
    pages: I,
    current: Option<CompressedPage>,
}

impl<I: Iterator<Item = PolarsResult<Page>>> FallibleStreamingIterator for Zstd<I> {
    type Item = CompressedPage;
    type Error = PolarsError;

    fn advance(&mut self) -> PolarsResult<()> {
        self.current = self.pages.next().transpose()?.map(compress).transpose()?;
        Ok(())
    }

    fn get(&self) -> Option<&CompressedPage> {
        self.current.as_ref()
    }
}

thread_local! {
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_options() -> CompressionOptions {
    CompressionOptions::Zstd(ZstdLevel::try_new(ZSTD_LEVEL).ok())
}

/// Compresses `input` with this thread's zstd context.
fn zstd_bytes(input: &[u8]) -> PolarsResult<Vec<u8>> {
    ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        let z = match cell.as_mut() {
            Some(z) => z,
            None => cell.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        Ok(z.compress(input)?)
    })
}

fn compress(page: Page) -> PolarsResult<CompressedPage> {
    let parquet_err = |e: polars_parquet::read::ParquetError| polars_err!(ComputeError: "{e}");
    Ok(match page {
        Page::Data(data) if matches!(data.header(), DataPageHeader::V1(_)) => {
            let rows = data.num_rows().unwrap_or_else(|| data.num_values());
            CompressedPage::Data(CompressedDataPage::new(
                data.header().clone(),
                CowBuffer::Owned(zstd_bytes(data.buffer())?),
                Compression::Zstd,
                data.buffer().len(),
                data.descriptor.clone(),
                rows,
            ))
        }
        Page::Dict(dict) => CompressedPage::Dict(CompressedDictPage::new(
            CowBuffer::Owned(zstd_bytes(&dict.buffer)?),
            Compression::Zstd,
            dict.buffer.len(),
            dict.num_values,
            dict.is_sorted,
        )),
        // Version 2 pages keep their levels uncompressed: polars' own path (none are written).
        page => polars_parquet::write::compress(page, Vec::new(), zstd_options())
            .map_err(parquet_err)?,
    })
}

/// The array to encode and the encodings of its Parquet leaf columns: polars' own, except for
/// text columns and for number columns that polars would judge by a HyperLogLog estimate.
///
/// A text column of more than [`SAMPLE`] rows is written plain when its sample is mostly
/// distinct; else it is cast to a dictionary here, and written plain after all if the
/// dictionary holds more than three quarters of the values. (polars would first estimate the
/// column's cardinality with a HyperLogLog over every value, then make the same cast.)
///
/// A text column of 1 to [`SAMPLE`] rows is cast to a dictionary here too, as polars does with
/// any column of up to [`POLARS_SMALL`] rows: polars first estimates its cardinality with a
/// HyperLogLog whose answer it then ignores at that size, and on small partitions (the report
/// and interaction files of 5,000 accounts, a few rows each) that estimate, run for every text
/// column of every file, was part of the 6% HyperLogLog took of a 5,000-account run (perf).
///
/// Number columns: see [`prepare_number`].
fn prepare(array: ArrayRef) -> (ArrayRef, Vec<Encoding>) {
    if let Some(text) = array
        .as_any()
        .downcast_ref::<Utf8ViewArray>()
        .filter(|t| !Array::is_empty(*t))
    {
        let small = text.len() <= SAMPLE;
        if !small && mostly_distinct(text.len(), |i| text.get(i)) {
            return (array, vec![Encoding::Plain]);
        }
        return as_dictionary(array, small);
    }
    if let Some(decided) = prepare_number(&array) {
        return decided;
    }
    let encodings = get_dtype_encoding(array.dtype());
    (array, encodings)
}

/// Rows up to which polars dictionary-encodes a column whatever its cardinality estimate says
/// (`polars_parquet::arrow::write::dictionary::encode_as_dictionary_optional`).
const POLARS_SMALL: usize = 128;

/// The encoding of an `Int32` (dates), `Int64` (seconds, units, timestamps) or `Float64`
/// column that polars would decide from a HyperLogLog estimate: an integer column whose values
/// span more than 65,535 (timestamps, money units), any float column. That estimate is a 16 KiB
/// register file zeroed, filled and then read whole (`HyperLogLog::count`) for every such
/// column of every file, whatever its rows: on the nightly shape (2,000 partitions of ~100
/// legs) it took 3% of the run's CPU time plus the zeroing, and polars ignores its answer on
/// columns of up to [`POLARS_SMALL`] rows anyway.
///
/// Here: up to [`POLARS_SMALL`] rows, cast to a dictionary as polars would (the same bytes);
/// above, plain if a strided sample of [`SAMPLE`] values is mostly distinct, else the exact
/// dictionary when it holds at most three quarters of the values. `None`: polars' own path,
/// which needs no estimate (integers within 65,535 of each other take its min/max bitmap, an
/// all-null column its shortcut) or another type.
fn prepare_number(array: &ArrayRef) -> Option<(ArrayRef, Vec<Encoding>)> {
    use polars_arrow::datatypes::{PhysicalType, PrimitiveType};
    if Array::is_empty(array.as_ref()) || array.null_count() == array.len() {
        return None;
    }
    let PhysicalType::Primitive(primitive) = array.dtype().to_physical_type() else {
        return None;
    };
    let small = array.len() <= POLARS_SMALL;
    let distinct = match primitive {
        PrimitiveType::Int32 => {
            let a = array.as_any().downcast_ref::<PrimitiveArray<i32>>()?;
            if narrow_range(a.non_null_values_iter().map(i64::from)) {
                return None;
            }
            !small && mostly_distinct(a.len(), |i| a.get(i))
        }
        PrimitiveType::Int64 => {
            let a = array.as_any().downcast_ref::<PrimitiveArray<i64>>()?;
            if narrow_range(a.non_null_values_iter()) {
                return None;
            }
            !small && mostly_distinct(a.len(), |i| a.get(i))
        }
        PrimitiveType::Float64 => {
            let a = array.as_any().downcast_ref::<PrimitiveArray<f64>>()?;
            !small && mostly_distinct(a.len(), |i| a.get(i).map(f64::to_bits))
        }
        _ => return None,
    };
    if distinct {
        return Some((array.clone(), vec![Encoding::Plain]));
    }
    Some(as_dictionary(array.clone(), small))
}

/// Whether the values span at most 65,535 (polars' `BITMASK_THRESHOLD` for 32- and 64-bit
/// integers), so that polars builds their dictionary from a bitmap without an estimate.
fn narrow_range(values: impl Iterator<Item = i64>) -> bool {
    let (min, max) = values.fold((i64::MAX, i64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    max.checked_sub(min)
        .is_some_and(|span| span <= i64::from(u16::MAX))
}

/// `array` cast to a dictionary, if that is worth it: always when `small` (polars' rule for
/// short columns), else when the dictionary holds at most three quarters of the values. The
/// array as it is, plain, otherwise (or when the cast fails).
fn as_dictionary(array: ArrayRef, small: bool) -> (ArrayRef, Vec<Encoding>) {
    let as_dictionary =
        ArrowDataType::Dictionary(IntegerType::UInt32, Box::new(array.dtype().clone()), false);
    let Ok(dictionary) =
        polars::polars_compute::cast::cast(array.as_ref(), &as_dictionary, Default::default())
    else {
        return (array, vec![Encoding::Plain]);
    };
    let distinct = dictionary
        .as_any()
        .downcast_ref::<DictionaryArray<u32>>()
        .map(|d| d.values().len());
    match distinct {
        Some(n) if small || n * 4 <= array.len() * 3 => (dictionary, vec![Encoding::RleDictionary]),
        _ => (array, vec![Encoding::Plain]),
    }
}

/// Whether more than three quarters of [`SAMPLE`] non-null values (`value(i)`: row `i`, `None`
/// when null), taken at an even stride over the `len` rows, are distinct: the threshold polars
/// applies to its estimate. Columns of up to [`SAMPLE`] rows, and columns with fewer than half
/// a sample of values, are never "mostly distinct".
fn mostly_distinct<K: std::hash::Hash + Eq>(
    len: usize,
    value: impl Fn(usize) -> Option<K>,
) -> bool {
    if len <= SAMPLE {
        return false;
    }
    let stride = len / SAMPLE;
    let sample: Vec<K> = (0..SAMPLE).filter_map(|i| value(i * stride)).collect();
    if sample.len() < SAMPLE / 2 {
        return false;
    }
    let distinct: PlHashSet<&K> = sample.iter().collect();
    distinct.len() * 4 > sample.len() * 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars_arrow::array::MutableBinaryViewArray;

    fn text(values: impl IntoIterator<Item = Option<String>>) -> Utf8ViewArray {
        MutableBinaryViewArray::<str>::from_iter(values).freeze()
    }

    fn text_distinct(t: &Utf8ViewArray) -> bool {
        mostly_distinct(t.len(), |i| t.get(i))
    }

    #[test]
    fn unique_text_is_plain_and_repeated_text_a_dictionary() {
        let unique = text((0..1000).map(|i| Some(format!("call-{i}"))));
        assert!(text_distinct(&unique));
        assert_eq!(prepare(unique.clone().boxed()).1, vec![Encoding::Plain]);

        // 20 distinct values: a sample of 32 holds at most 20.
        let repeated = text((0..1000).map(|i| Some(format!("cause-{}", i % 20))));
        assert!(!text_distinct(&repeated));
        let (dictionary, encodings) = prepare(repeated.clone().boxed());
        assert_eq!(encodings, vec![Encoding::RleDictionary]);
        assert_eq!(dictionary.len(), repeated.len());

        // Short columns and mostly-null columns are left to polars.
        let short = text((0..SAMPLE).map(|i| Some(format!("call-{i}"))));
        assert!(!text_distinct(&short));
        let sparse = text((0..1000).map(|i| (i % 10 == 0).then(|| format!("call-{i}"))));
        assert!(!text_distinct(&sparse));
    }

    #[test]
    fn files_read_back_equal_with_a_dictionary_only_where_values_repeat() -> PolarsResult<()> {
        let n = 1000;
        let mut df = df!(
            "call_id" => (0..n).map(|i| format!("call-{i}")).collect::<Vec<_>>(),
            "cause" => (0..n).map(|i| format!("cause-{}", i % 20)).collect::<Vec<_>>(),
            "units" => (0..n).map(|i| (i % 7 != 0).then_some(i as i64 * 3)).collect::<Vec<_>>(),
        )?;
        let mut bytes = Vec::new();
        write(&mut df, &mut bytes)?;

        let back = ParquetReader::new(std::io::Cursor::new(&bytes)).finish()?;
        assert!(back.equals_missing(&df));

        let meta = polars_parquet::read::read_metadata(&mut std::io::Cursor::new(&bytes))?;
        assert_eq!(meta.num_rows, n);
        let dictionary: Vec<bool> = meta.row_groups[0]
            .parquet_columns()
            .iter()
            .map(|c| c.dictionary_page_offset().is_some())
            .collect();
        // The unique text is plain, the repeated one has its dictionary; the integers are
        // polars' own decision.
        assert_eq!(dictionary[..2], [false, true]);
        Ok(())
    }

    /// A column's pages, each as its (uncompressed) bytes.
    type Pages = Vec<Vec<u8>>;

    /// The pages polars' own path writes for `array` (its encodings, its dictionary decision
    /// with the HyperLogLog estimate), and the pages written after [`prepare`].
    fn pages_both_ways(array: ArrayRef) -> PolarsResult<(Pages, Pages)> {
        let field = polars_arrow::datatypes::Field::new("x".into(), array.dtype().clone(), true);
        let schema = polars_arrow::datatypes::ArrowSchema::from_iter([field]);
        let parquet_schema = polars_parquet::write::to_parquet_schema(&schema)?;
        let options = WriteOptions {
            statistics: StatisticsOptions::default(),
            compression: zstd_options(),
            version: Version::V1,
            data_page_size: None,
        };
        let pages = |array: ArrayRef, encodings: Vec<Encoding>| -> PolarsResult<Pages> {
            let mut out = Vec::new();
            for column in array_to_columns(
                array,
                parquet_schema.fields()[0].clone(),
                options,
                &encodings,
            )? {
                for page in column {
                    match page? {
                        Page::Data(d) => out.push(d.buffer().to_vec()),
                        Page::Dict(d) => out.push(d.buffer.to_vec()),
                    }
                }
            }
            Ok(out)
        };
        let theirs = pages(array.clone(), get_dtype_encoding(array.dtype()))?;
        let (prepared, encodings) = prepare(array);
        Ok((theirs, pages(prepared, encodings)?))
    }

    #[test]
    fn short_number_columns_are_the_bytes_polars_writes_without_its_estimate() -> PolarsResult<()> {
        // Timestamps in microseconds (a span far beyond 65,535), one repeated, one null.
        let micros: Vec<Option<i64>> = (0..100)
            .map(|i| (i != 7).then_some(1_793_000_000_000_000 + (i % 90) * 1_000_003))
            .collect();
        let ts = PrimitiveArray::<i64>::from(micros).boxed();
        let (encoded, encodings) = prepare(ts.clone());
        assert_eq!(encodings, vec![Encoding::RleDictionary]);
        assert!(encoded.as_any().is::<DictionaryArray<u32>>());
        let (theirs, ours) = pages_both_ways(ts)?;
        assert_eq!(theirs, ours);

        let rates = PrimitiveArray::<f64>::from_vec(vec![0.0125, 0.5, 0.0125, 1e-4]).boxed();
        let (theirs, ours) = pages_both_ways(rates)?;
        assert_eq!(theirs, ours);

        let dates = PrimitiveArray::<i32>::from_vec(vec![-800_000, 20_400, 20_400]).boxed();
        let (theirs, ours) = pages_both_ways(dates)?;
        assert_eq!(theirs, ours);
        Ok(())
    }

    #[test]
    fn long_number_columns_are_plain_when_distinct_and_a_dictionary_when_they_repeat() {
        // 1,000 distinct timestamps: plain, as polars' estimate (1,000 of 1,000) would say.
        let ts = PrimitiveArray::<i64>::from_vec((0..1000).map(|i| i * 1_000_003).collect());
        assert_eq!(prepare(ts.boxed()).1, vec![Encoding::Plain]);
        // 20 distinct money amounts far apart, repeated: a dictionary of exactly 20 values.
        let units =
            PrimitiveArray::<i64>::from_vec((0..1000).map(|i| (i % 20) * 1_000_000).collect());
        let (encoded, encodings) = prepare(units.boxed());
        assert_eq!(encodings, vec![Encoding::RleDictionary]);
        let dictionary = encoded.as_any().downcast_ref::<DictionaryArray<u32>>();
        assert_eq!(dictionary.map(|d| d.values().len()), Some(20));
        // Distinct floats: plain.
        let f = PrimitiveArray::<f64>::from_vec((0..1000).map(|i| f64::from(i) / 7.0).collect());
        assert_eq!(prepare(f.boxed()).1, vec![Encoding::Plain]);
        // Within 65,535 of each other, or all null: left to polars (no estimate there).
        let narrow = PrimitiveArray::<i64>::from_vec((0..1000).map(|i| 60_000 + i).collect());
        assert!(prepare_number(&narrow.boxed()).is_none());
        let nulls = PrimitiveArray::<i64>::from(vec![None::<i64>; 300]);
        assert!(prepare_number(&nulls.boxed()).is_none());
    }
}
