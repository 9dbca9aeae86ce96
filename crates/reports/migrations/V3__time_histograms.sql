-- The time from touch to conversion as one histogram per day and group, not one row per bucket:
-- a daily series over half a year of two dozen campaigns read some 330,000 bucket rows and
-- aggregated them in SQL (over a second at 1,000,000 conversions); it now reads one row per day,
-- group and tier and adds the buckets up in the reader.
--
-- Bucket b of the arrays (0-based) is as report_times had it: b = 0 holds waits under a second,
-- b >= 1 waits in [1.5^(b-1), 1.5^b) seconds, and the last bucket (47, from about four years on)
-- every longer wait. An array ends at the group's last bucket that ever held a wait; `weights`
-- holds the touches' shares, `seconds` the sums of share times wait.
CREATE TABLE report_histograms (
    workspace_id uuid     NOT NULL,
    model        smallint NOT NULL,
    dim          smallint NOT NULL,
    day          date     NOT NULL,
    key          text     NOT NULL,
    tier         text     NOT NULL,
    weights      float8[] NOT NULL,
    seconds      float8[] NOT NULL,
    PRIMARY KEY (workspace_id, model, dim, day, key, tier)
);

INSERT INTO report_histograms (workspace_id, model, dim, day, key, tier, weights, seconds)
SELECT k.workspace_id, k.model, k.dim, k.day, k.key, k.tier,
       array_agg(coalesce(t.weight, 0) ORDER BY b.bucket),
       array_agg(coalesce(t.seconds, 0) ORDER BY b.bucket)
FROM (
    SELECT workspace_id, model, dim, day, key, tier, least(max(bucket), 47) AS top
    FROM report_times
    GROUP BY workspace_id, model, dim, day, key, tier
) AS k
CROSS JOIN LATERAL generate_series(0, k.top) AS b(bucket)
LEFT JOIN LATERAL (
    SELECT sum(weight) AS weight, sum(seconds) AS seconds FROM report_times r
    WHERE r.workspace_id = k.workspace_id AND r.model = k.model AND r.dim = k.dim
      AND r.day = k.day AND r.key = k.key AND r.tier = k.tier
      AND least(r.bucket, 47) = b.bucket
) AS t ON true
GROUP BY k.workspace_id, k.model, k.dim, k.day, k.key, k.tier;

DROP TABLE report_times;
