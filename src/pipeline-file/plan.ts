/**
 * From a pipeline spec to the parts the runner drives. One rule picks the write path:
 * a spec with the events table's layout (insert keyed on event_id; event_id, event_type,
 * the whole payload as jsonb, stream_id, produced_at; no filter) is written by the
 * events sink — one binary COPY of the bytes Redis sent, the payload's JSON left for
 * Postgres to check — and every other spec by the mapping stage and the table sink.
 * Both follow the same contract and give the same rows; the first is faster.
 */
import type { Sink, Stage } from '../core/contracts.js';
import type { PgPool } from '../postgres/pool.js';
import { EventsTableSink, PostgresEventsSink } from '../sinks/postgres-events.js';
import { TableSink } from '../sinks/postgres-table.js';
import { validateEvents } from '../stages/validate-event.js';
import { mapColumns } from './mapping.js';
import type { PipelineSpec } from './spec.js';

const EVENTS_LAYOUT: ReadonlyArray<readonly [string, string, string]> = [
  ['event_id', 'event_id', 'text'],
  ['event_type', 'event_type', 'text'],
  ['payload', 'payload', 'jsonb'],
  ['stream_id', 'stream_id', 'text'],
  ['produced_at', 'produced_at', 'timestamptz'],
];

/** Whether the spec writes the events table's layout (any column order of the file aside). Pure. */
export function isEventsLayout(spec: PipelineSpec): boolean {
  const k = spec.sink;
  if (spec.filter !== undefined || k.mode !== 'insert' || k.key.length !== 1 || k.key[0] !== 'event_id') return false;
  if (k.columns.length !== EVENTS_LAYOUT.length) return false;
  return EVENTS_LAYOUT.every(([name, from, type]) => {
    const c = k.columns.find((col) => col.name === name);
    return c !== undefined && c.from.text === from && c.type === type;
  });
}

export interface Plan {
  stages: Stage<any, any>[];
  sink: Sink<any>;
  /** Which write path: 'events' (raw binary COPY) or 'table' (mapped columns). */
  path: 'events' | 'table';
}

export function planFor(spec: PipelineSpec, pool: PgPool): Plan {
  if (isEventsLayout(spec)) {
    return {
      stages: [validateEvents(spec.source.stream)],
      sink: new EventsTableSink(new PostgresEventsSink(pool, spec.sink.schema, spec.sink.table), spec.source.stream),
      path: 'events',
    };
  }
  return { stages: [mapColumns(spec)], sink: new TableSink(pool, spec.sink), path: 'table' };
}
