import { describe, expect, it } from 'vitest';
import { InFlight } from '../../src/core/in-flight.js';

describe('InFlight', () => {
  it('grants up to the limit and makes waiters wait for a release', async () => {
    const cap = new InFlight(10);
    expect(cap.tryAcquire(7)).toBe(7);
    expect(cap.tryAcquire(7)).toBe(3);
    expect(cap.tryAcquire(1)).toBe(0);
    let granted = -1;
    const waiting = cap.acquire(5).then((n) => (granted = n));
    await new Promise((r) => setTimeout(r, 10));
    expect(granted).toBe(-1);
    cap.received(10, 6); // a read with 10 reserved returned 6 entries: 4 permits come back
    await waiting;
    expect(granted).toBe(4);
    expect(cap.current).toBe(10);
    expect(cap.held).toBe(6);
  });

  it('a read keeps what it received as held and gives back the rest of its reservation', () => {
    const cap = new InFlight(100);
    expect(cap.tryAcquire(100)).toBe(100);
    cap.received(100, 30);
    expect(cap.current).toBe(30);
    expect(cap.held).toBe(30);
    cap.release(30);
    expect(cap.current).toBe(0);
    expect(cap.held).toBe(0);
    // A reservation with nothing received yet is not "held".
    cap.tryAcquire(50);
    expect(cap.held).toBe(0);
    expect(cap.current).toBe(50);
  });

  it('an aborted wait returns 0 permits', async () => {
    const cap = new InFlight(1);
    cap.tryAcquire(1);
    const controller = new AbortController();
    const p = cap.acquire(1, controller.signal);
    controller.abort();
    expect(await p).toBe(0);
  });
});
