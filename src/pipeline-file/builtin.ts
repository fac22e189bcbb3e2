/**
 * The built-in events pipeline is a pipeline file (builtin/events.yaml, shipped next to
 * the compiled code): `tributary start` reads it and lays the settings over it.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TributaryConfig } from '../config/schema.js';
import { parsePipelineFile, type PipelineSpec } from './spec.js';

/** Where the built-in events pipeline file is. */
export const EVENTS_PIPELINE_FILE = fileURLToPath(new URL('./builtin/events.yaml', import.meta.url));

let shipped: PipelineSpec | undefined;

/** The shipped file as it is (its values are the settings' defaults). */
export function shippedEventsSpec(): PipelineSpec {
  shipped ??= parsePipelineFile(readFileSync(EVENTS_PIPELINE_FILE, 'utf8'), EVENTS_PIPELINE_FILE);
  return structuredClone(shipped);
}

/** The events pipeline `tributary start` runs: the shipped file with the settings laid over it. */
export function eventsPipelineSpec(c: TributaryConfig): PipelineSpec {
  const spec = shippedEventsSpec();
  spec.source = { stream: c.streamKey, group: c.group, start: c.groupStartId };
  spec.batch = { count: c.batchSize, bytes: c.batchMaxBytes, periodMs: c.batchTimeoutMs };
  spec.workers = c.numWorkers;
  spec.maxDeliveries = c.maxDeliveries;
  spec.sink.schema = c.pgSchema;
  spec.sink.table = c.eventsTable;
  spec.deadLetters = { stream: c.dlqStream };
  return spec;
}
