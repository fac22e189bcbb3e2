/**
 * The runner's RecoverFirst hook (src/core/runner.ts, Worker.readLoop): a source's read
 * may ask that the consumer's pending work be finished before anything new (a partition
 * just taken over). What the worker buffered is written first, then the recovered work
 * (one more delivery each; past maxDeliveries dead-lettered), then new reads — in order.
 */
import { describe, expect, it } from 'vitest';
import { RecoverFirst, type DeadLetter, type Message, type Recovered, type Source } from '../../src/core/contracts.js';
import { Runner } from '../../src/core/runner.js';

const msg = (id: string, deliveries = 1): Message<string> => ({ id, body: id, deliveries, bytes: 10 });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class ScriptedSource implements Source<string> {
  readonly server = 'redis' as const;
  readonly log: string[] = [];
  private reads = 0;
  private recovering = false;
  private resumed = 0;

  async start(): Promise<void> {}
  async read(_c: string, _count: number, blockMs: number | undefined): Promise<Message<string>[]> {
    this.reads++;
    if (this.reads === 1) return [msg('1'), msg('2')];
    if (this.reads === 2) {
      this.recovering = true;
      this.log.push('read: recover first');
      throw new RecoverFirst('taken over');
    }
    if (this.reads === 3) return [msg('6')];
    await sleep(Math.min(blockMs ?? 5, 20));
    return [];
  }
  async resume(_c: string, _max: number, after: string | undefined): Promise<Recovered<string>> {
    this.log.push(`resume after ${after ?? '-'}`);
    if (!this.recovering) return { messages: [], deleted: [], more: false };
    if (this.resumed++ === 0) return { messages: [msg('3', 2), msg('4', 9), msg('5', 2)], deleted: [], more: true, cursor: '5' };
    this.recovering = false;
    return { messages: [], deleted: [], more: false };
  }
  async ack(_c: string, messages: readonly Message<string>[]): Promise<void> {
    this.log.push(`ack ${messages.map((m) => m.id).join(',')}`);
  }
  async keepAlive(): Promise<void> {}
  async deadLetter(_c: string, letters: readonly DeadLetter<string>[]): Promise<void> {
    this.log.push(`dead ${letters.map((l) => `${l.message.id}:${l.code}`).join(',')}`);
  }
  async interrupt(): Promise<void> {}
  async release(): Promise<void> {}
  describe(m: Message<string>): Record<string, string> {
    return { id: m.id };
  }
  async close(): Promise<void> {}
}

describe('runner: RecoverFirst', () => {
  it('writes what was buffered, then the recovered work (poison dead-lettered), then new reads', async () => {
    const source = new ScriptedSource();
    const runner = new Runner<string>({
      source,
      sink: {
        write: async (batch) => {
          source.log.push(`write ${batch.map((m) => m.id).join(',')}`);
          await sleep(5);
          return { written: batch.length, duplicates: 0, rejected: [] };
        },
      },
      consumers: ['w'],
      // Never flushed by time or by catching up: only RecoverFirst sends the buffered batch out.
      batch: { maxCount: 10, periodMs: 60_000, flushWhenCaughtUp: false },
      blockMs: 20,
      maxDeliveries: 5,
    });
    await runner.start();
    const until = Date.now() + 3000;
    while (!source.log.includes('ack 6') && Date.now() < until) await sleep(5);
    await runner.close();
    // The worker starts with its own pending work (none yet).
    expect(source.log[0]).toBe('resume after -');
    expect(source.log.slice(1)).toEqual([
      'read: recover first',
      'write 1,2',
      'ack 1,2',
      'resume after -',
      'write 3,5',
      'ack 3,5',
      'dead 4:TRIB_ERR_ENTRY_MAX_DELIVERIES',
      'resume after 5',
      'write 6',
      'ack 6',
    ]);
    expect(runner.stats()).toMatchObject({ written: 5, deadLettered: 1 });
  });
});
