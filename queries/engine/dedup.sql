-- One leg per call_id, by rerate's rules (src/dedup.rs): of the copies of a call_id the one with the latest timestamp is kept (a missing timestamp counts as oldest), then the later input: this run's copy before the dataset's (from_dataset), then the last read (source_file, source_line, source_offset, descending); when the kept copy is this run's and the dataset holds a copy identical to it, the dataset's copy stays instead.
-- Spark SQL over the view `copies` (this run's legs and, under --mode merge, the legs read back from the partitions it rewrites, with from_dataset). Every copy comes out with `kept`, `same_as_first` (identical to the copy ranked first, so to the kept one) and `in_dataset` (the dataset held a copy of its call_id). `${same}` stands for `c.<column> <=> w.<column>` over every leg column but source_file, source_line and source_offset, ANDed; spark/rerate_spark.py fills it in from the legs' schema. Only the call_ids with copies (few, so joined by broadcast) go through the ranking; the other legs are not shuffled.
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
            ORDER BY c.timestamp DESC NULLS LAST, c.from_dataset ASC, c.source_file DESC NULLS LAST, c.source_line DESC NULLS LAST, c.source_offset DESC NULLS LAST
        ) AS copy_rank
    FROM copies c
    JOIN counted n ON c.call_id = n.call_id
),
judged AS (
    SELECT
        c.*,
        (${same}) AS same_as_first,
        c.from_dataset AND NOT w.from_dataset AND (${same}) AS swap
    FROM several c
    JOIN (SELECT * FROM several WHERE copy_rank = 1) w ON c.call_id = w.call_id
),
decided AS (
    SELECT
        *,
        MAX(swap) OVER (PARTITION BY call_id) AS any_swap,
        ROW_NUMBER() OVER (PARTITION BY call_id ORDER BY swap DESC, copy_rank ASC) AS swap_rank
    FROM judged
)
SELECT
    * EXCEPT (copy_rank, swap, any_swap, swap_rank),
    CASE WHEN any_swap THEN swap AND swap_rank = 1 ELSE copy_rank = 1 END AS kept
FROM decided
UNION ALL
SELECT c.*, c.from_dataset AS in_dataset, TRUE AS same_as_first, TRUE AS kept
FROM copies c
LEFT ANTI JOIN counted n ON c.call_id = n.call_id
