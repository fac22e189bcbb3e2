import { describe, expect, it } from 'vitest';
import { describeCleanPlan, isCleanPlanEmpty, type CleanPlan } from '../../src/ops/clean.js';

const plan = (over: Partial<CleanPlan> = {}): CleanPlan => ({
  stream: { key: 'events', entries: 0, groups: [] },
  deadLetterStream: { key: 'events:dead', entries: 0 },
  statsKeys: [],
  eventRows: 0,
  deadLetterRows: 0,
  eventsTableName: 'public.events',
  deadLetterTableName: 'public.dead_letter_queue',
  ...over,
});

describe('clean plan', () => {
  it('is empty only when nothing at all would go', () => {
    expect(isCleanPlanEmpty(plan())).toBe(true);
    expect(isCleanPlanEmpty(plan({ eventRows: null, deadLetterRows: null }))).toBe(true);
    expect(isCleanPlanEmpty(plan({ stream: { key: 'events', entries: 0, groups: ['g'] } }))).toBe(false);
    expect(isCleanPlanEmpty(plan({ eventRows: 1 }))).toBe(false);
    expect(isCleanPlanEmpty(plan({ statsKeys: ['tributary:stats:events:g'] }))).toBe(false);
  });

  it('names every item with singular and plural counts', () => {
    expect(describeCleanPlan(plan({ stream: { key: 'events', entries: 1, groups: ['a', 'b'] }, eventRows: 1200, deadLetterRows: 1 }))).toEqual([
      'the stream events (1 entry, groups a, b)',
      'the dead-letter stream events:dead (0 entries)',
      'every row of public.events (1,200 rows)',
      'the 1 row of public.dead_letter_queue from stream events',
    ]);
    expect(describeCleanPlan(plan({ eventRows: null, deadLetterRows: null, statsKeys: ['k'] })).slice(2)).toEqual([
      'no rows of public.events (no such table)',
      'no rows of public.dead_letter_queue (no such table)',
      'the batch counters k',
    ]);
  });
});
