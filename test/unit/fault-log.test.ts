/**
 * The CLI's outage log (issue 11, item 5): a fault that is not an outage is logged once,
 * as an error naming its code — not as "postgres unavailable", and with no
 * "still waiting" reminders — while an outage keeps its wording.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { logOutages } from '../../src/cli/commands/start.js';
import { faultOf } from '../../src/core/faults.js';
import type { Logger } from '../../src/cli/output.js';

function fakeLog() {
  const lines: Array<{ level: string; msg: string }> = [];
  const at = (level: string) => (_fields: unknown, msg: string) => lines.push({ level, msg });
  return { lines, log: { warn: at('warn'), error: at('error'), info: at('info'), debug: at('debug') } as unknown as Logger };
}

describe('logOutages with faults', () => {
  it('logs a fault once with its code and sends no reminders; an outage is still "unavailable"', async () => {
    const emitter = new EventEmitter();
    const { lines, log } = fakeLog();
    const stop = logOutages(emitter, log, { urls: { redis: 'redis://127.0.0.1:1', postgres: 'postgres://u:secret@127.0.0.1:5432/db' }, started: () => true, holding: 'holding work', everyMs: 20 });
    const fault = faultOf('postgres', Object.assign(new Error('permission denied for table events'), { code: '42501' }))!;
    emitter.emit('serverDown', { server: 'postgres', error: fault });
    await new Promise((r) => setTimeout(r, 80)); // several reminder periods
    expect(lines).toEqual([
      {
        level: 'error',
        msg: 'postgres at postgres://u:***@127.0.0.1:5432/db: TRIB_ERR_POSTGRES_PERMISSION: Postgres refused the write for lack of privilege: permission denied for table events [SQLSTATE 42501]; entries stay pending until it is granted; holding work, retrying with backoff',
      },
    ]);
    emitter.emit('serverDown', { server: 'redis', error: new Error('ECONNREFUSED') });
    expect(lines[1]).toEqual({ level: 'warn', msg: 'redis unavailable at redis://127.0.0.1:1 (ECONNREFUSED); holding work, retrying with backoff' });
    stop();
  });
});
