import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import {
  clusterConfig,
  clusterDeadLetterStream,
  clusterPrefix,
  commandKey,
  hashTag,
  isClusterUrl,
  keySlot,
  keyTag,
  parseClusterNodes,
  parseRedirection,
  retargetUrl,
} from '../../src/redis/cluster.js';
import { encodeCommand, splitCommands } from '../../src/redis/pipe.js';

describe('hash tags and slots', () => {
  it('a key hashes its tag only: {events}:dead is in the slot of events', () => {
    expect(hashTag('{events}:dead')).toBe('events');
    expect(hashTag('a{}b')).toBeUndefined(); // an empty tag: the whole key is hashed
    expect(hashTag('a{b')).toBeUndefined();
    expect(hashTag('x{a}{b}')).toBe('a');
    expect(keySlot('{events}:dead')).toBe(keySlot('events'));
    expect(keySlot('app:{events}:dead')).toBe(keySlot('{events}'));
    expect(keySlot('a{}b')).not.toBe(keySlot('a'));
  });

  it('keyTag gives a tag in the key\'s own slot, or none when no tag can', () => {
    expect(keyTag('events')).toBe('{events}');
    expect(keyTag('app:{events}')).toBe('{events}');
    expect(keyTag('we}ird')).toBeUndefined();
    expect(keySlot(`${keyTag('t_x:events')}:dead`)).toBe(keySlot('t_x:events'));
  });
});

describe('cluster key naming', () => {
  it('the default dead-letter stream moves beside its stream; one already there is kept', () => {
    expect(clusterDeadLetterStream('events', 'events:dead')).toBe('{events}:dead');
    expect(clusterDeadLetterStream('app:{events}', 'events:dead')).toBe('{events}:dead');
    expect(clusterDeadLetterStream('app:{e}', 'dlq:{e}')).toBe('dlq:{e}');
  });

  it('a dead-letter stream set in another slot is refused with TRIB_ERR_CONFIG_INVALID, naming one that fits', () => {
    let err: unknown;
    try {
      clusterDeadLetterStream('events', 'my-dead-letters');
    } catch (e) {
      err = e;
    }
    expect(isTributaryError(err, 'TRIB_ERR_CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toContain('{events}:dead');
  });

  it('an orders prefix gets a tag unless it has one; a prefix with a } but no tag is refused', () => {
    expect(clusterPrefix('orders')).toBe('{orders}');
    expect(clusterPrefix('shop:{orders}')).toBe('shop:{orders}');
    expect(() => clusterPrefix('or}ders')).toThrow(/TRIB_ERR_CONFIG_INVALID|hash tag/);
  });

  it('clusterConfig renames nothing on a single Redis, and applies the naming once REDIS_CLUSTER_NODES registers the URL', () => {
    const base = { redisUrl: 'redis://10.0.0.9:7000', streamKey: 'events', dlqStream: 'events:dead', ordersPrefix: 'orders' };
    expect(clusterConfig(base)).toEqual(base);
    expect(isClusterUrl(base.redisUrl)).toBe(false);
    const c = clusterConfig({ ...base, redisClusterNodes: '10.0.0.9:7000,redis://10.0.0.10:7000' });
    expect(isClusterUrl(base.redisUrl)).toBe(true);
    expect(c).toMatchObject({ streamKey: 'events', dlqStream: '{events}:dead', ordersPrefix: '{orders}' });
  });

  it('parses node lists with or without a scheme', () => {
    expect(parseClusterNodes(' 127.0.0.1:7000, rediss://h:7001 ,')).toEqual(['redis://127.0.0.1:7000', 'rediss://h:7001']);
  });
});

describe('routing', () => {
  it('the first key of each command Tributary sends', () => {
    expect(commandKey(['XADD', 'k', '*', 'f', 'v'])).toBe('k');
    expect(commandKey(['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '10', 'BLOCK', '100', 'STREAMS', 'k', '>'])).toBe('k');
    expect(commandKey(['EVALSHA', 'abc', '2', 'k1', 'k2', 'a'])).toBe('k1');
    expect(commandKey(['EVALSHA', 'abc', '0', 'a'])).toBeUndefined();
    expect(commandKey(['XINFO', 'GROUPS', 'k'])).toBe('k');
    expect(commandKey(['XGROUP', 'CREATE', 'k', 'g', '$', 'MKSTREAM'])).toBe('k');
    expect(commandKey(['MEMORY', 'USAGE', 'k'])).toBe('k');
    expect(commandKey(['INFO', 'memory'])).toBeUndefined();
    expect(commandKey(['PUBLISH', 'chan', 'm'])).toBeUndefined();
  });

  it('MOVED and ASK replies, and the URL of the node they name', () => {
    expect(parseRedirection(new Error('MOVED 3999 127.0.0.1:6381'))).toEqual({ kind: 'MOVED', slot: 3999, host: '127.0.0.1', port: 6381 });
    expect(parseRedirection('ASK 1 ::1:7000')).toEqual({ kind: 'ASK', slot: 1, host: '::1', port: 7000 });
    expect(parseRedirection(new Error('ERR wrong number of arguments'))).toBeUndefined();
    expect(retargetUrl('rediss://u:p%40ss@a:1/2', 'b', 3)).toBe('rediss://u:p%40ss@b:3/2');
  });

  it('splitCommands cuts a pipeline back into its commands (what the producer sends again after MOVED)', () => {
    const cmds = [['XADD', 'k', '*', 'payload', '{"é":"x\r\n"}'], ['ASKING'], ['XADD', 'k', '*', 'a', '']];
    const parts = splitCommands(Buffer.from(cmds.map(encodeCommand).join('')));
    expect(parts.map((p) => p.toString())).toEqual(cmds.map(encodeCommand));
  });
});
