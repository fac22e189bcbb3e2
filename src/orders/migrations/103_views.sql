-- Orders pipeline: dashboard aggregates. Created WITH DATA (populated, if empty) and each
-- with a unique index, so REFRESH MATERIALIZED VIEW CONCURRENTLY works from the start.
-- Hours and days are UTC whatever the refreshing session's TimeZone.

CREATE MATERIALIZED VIEW sales_hourly AS
SELECT date_trunc('hour', order_ts, 'UTC') AS hour,
       category,
       count(*)                            AS order_count,
       sum(total_usd)                      AS revenue_usd
FROM orders
GROUP BY 1, 2
WITH DATA;
CREATE UNIQUE INDEX sales_hourly_key ON sales_hourly (hour, category);

CREATE MATERIALIZED VIEW product_performance_daily AS
SELECT (o.order_ts AT TIME ZONE 'UTC')::date AS day,
       o.product_id,
       p.name,
       p.category,
       count(*)                               AS orders,
       sum(o.quantity)                        AS units,
       sum(o.total_usd)                       AS revenue_usd
FROM orders o
JOIN products p USING (product_id)
GROUP BY 1, 2, 3, 4
WITH DATA;
CREATE UNIQUE INDEX product_performance_daily_key ON product_performance_daily (day, product_id);

-- When each view was last refreshed (written by refreshViews).
CREATE TABLE view_refreshes (
  view_name     text PRIMARY KEY,
  refreshed_at  timestamptz NOT NULL,
  duration_ms   double precision NOT NULL,
  row_count     bigint NOT NULL,
  concurrent    boolean NOT NULL,     -- false: the view was not populated, refreshed plainly
  refreshes     bigint NOT NULL DEFAULT 1
);
