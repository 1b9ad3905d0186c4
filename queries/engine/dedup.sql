-- One leg per call_id, by rerate's rule (src/dedup.rs): of the copies of a call_id the one with the latest timestamp is kept (a missing timestamp counts as oldest), then the fuller copy (more columns set), then the greater value in the first column, by name, where the copies differ (null least); of identical copies the dataset's (from_dataset), then the last read (source_file, source_line, source_offset, descending).
-- Spark SQL over the view `copies` (this run's legs and, under --mode merge, the legs read back from the partitions it rewrites, with from_dataset). Every copy comes out with `kept`, `same_as_first` (identical to the copy ranked first, so to the kept one) and `in_dataset` (the dataset held a copy of its call_id). spark/rerate_spark.py fills in, over every leg column but source_file, source_line and source_offset: `${same}`, `c.<column> <=> w.<column>` ANDed; `${filled}`, how many of the columns are set; `${by_data}`, a struct of the columns sorted by name, DESC (a struct compares field by field, null least). Only the call_ids with copies (few, so joined by broadcast) go through the ranking; the other legs are not shuffled.
WITH counted AS (
    SELECT call_id, MAX(from_dataset) AS in_dataset
    FROM copies
    GROUP BY call_id
    HAVING COUNT(*) > 1
),
several AS (
    SELECT
        c.*,
        n.in_dataset,
        ROW_NUMBER() OVER (
            PARTITION BY c.call_id
            ORDER BY c.timestamp DESC NULLS LAST, (${filled}) DESC, ${by_data}, c.from_dataset DESC, c.source_file DESC NULLS LAST, c.source_line DESC NULLS LAST, c.source_offset DESC NULLS LAST
        ) AS copy_rank
    FROM copies c
    JOIN counted n ON c.call_id = n.call_id
),
judged AS (
    SELECT
        c.*,
        (${same}) AS same_as_first,
        c.copy_rank = 1 AS kept
    FROM several c
    JOIN (SELECT * FROM several WHERE copy_rank = 1) w ON c.call_id = w.call_id
)
SELECT * EXCEPT (copy_rank) FROM judged
UNION ALL
SELECT c.*, c.from_dataset AS in_dataset, TRUE AS same_as_first, TRUE AS kept
FROM copies c
LEFT ANTI JOIN counted n ON c.call_id = n.call_id
