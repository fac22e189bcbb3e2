/**
 * A small typed event emitter: `Events` maps each event name to its listener's
 * argument. A listener that throws does not break the emitter's caller: the
 * exception is re-emitted as 'error' (or dropped if nobody listens for 'error').
 */
export class TypedEmitter<Events extends { error: Error }> {
  private readonly listeners = new Map<keyof Events, Set<(arg: never) => void>>();

  on<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (arg: never) => void);
    return this;
  }

  off<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): this {
    this.listeners.get(event)?.delete(listener as (arg: never) => void);
    return this;
  }

  protected emit<K extends keyof Events>(event: K, arg: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as (a: Events[K]) => void)(arg);
      } catch (err) {
        if (event !== 'error') this.emit('error', err instanceof Error ? err : new Error(String(err)));
      }
    }
  }
}
