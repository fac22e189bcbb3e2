/** Redis key names Tributary owns (besides the streams you name), in one place. */

/** Hash of cumulative batch counters the engine publishes for `tributary monitor`. */
export function statsKey(streamKey: string, group: string): string {
  return `tributary:stats:${streamKey}:${group}`;
}
