/**
 * The events pipeline's first stage: checks each stream entry against the stream
 * contract (event_type, payload, optional event_id and produced_at) and turns it into a
 * row for the events table. Entries read for the first time (the bytes Redis sent)
 * become RawEventRows for the COPY path, their JSON left for Postgres to check;
 * redeliveries become EventRows, whose payload is checked here. An entry that breaks
 * the contract is rejected with its coded problem: it goes to the dead letters.
 */
import type { Message, Rejected, Stage, StageResult } from '../core/contracts.js';
import { parseEntry, parseRawEntry, type EntryProblem, type EventRow, type RawEventRow } from '../core/entry.js';
import { TributaryError } from '../errors.js';
import { RawStreamEntry, type StreamEntry } from '../redis/commands.js';

export type EventRowBody = EventRow | RawEventRow;

export function rejection(id: string, problem: EntryProblem): Rejected {
  const err = new TributaryError(problem.code, problem.args);
  return { id, code: err.code, error: err.message };
}

/** The validate-event stage for entries read from `streamKey` (event_id defaults to `<key>/<entry ID>`). */
export function validateEvents(streamKey: string): Stage<StreamEntry, EventRowBody> {
  return {
    name: 'validate',
    run(batch: Message<StreamEntry>[]): StageResult<EventRowBody> {
      const keep: Message<EventRowBody>[] = [];
      const rejected: Rejected[] = [];
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i]!;
        const entry = m.body;
        if (m.deliveries <= 1 && entry instanceof RawStreamEntry) {
          // The hot path: the row is its own message (no wrapper per entry).
          const parsed = parseRawEntry(entry, streamKey);
          if (parsed.ok) keep.push(parsed.row);
          else rejected.push(rejection(m.id, parsed.problem));
          continue;
        }
        const parsed = parseEntry(entry, streamKey);
        if (parsed.ok) keep.push({ id: m.id, body: parsed.row, deliveries: m.deliveries, bytes: m.bytes, producedAt: parsed.row.producedAt });
        else rejected.push(rejection(m.id, parsed.problem));
      }
      return { keep, rejected };
    },
  };
}
