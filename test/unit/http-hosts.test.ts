import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { hostChecker, isWildcardBind, parseHost } from '../../src/http/hosts.js';

describe('parseHost', () => {
  it('reads names, IPv4 and bracketed IPv6 with or without a port, lower-case, without a trailing dot', () => {
    expect(parseHost('LocalHost:8080')).toEqual({ host: 'localhost', port: 8080 });
    expect(parseHost('localhost.')).toEqual({ host: 'localhost' });
    expect(parseHost('localhost.:80')).toEqual({ host: 'localhost', port: 80 });
    expect(parseHost('127.0.0.1:1')).toEqual({ host: '127.0.0.1', port: 1 });
    expect(parseHost('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(parseHost('[::1]')).toEqual({ host: '::1' });
    expect(parseHost('::1')).toEqual({ host: '::1' });
    expect(parseHost('[FE80::A]:9')).toEqual({ host: 'fe80::a', port: 9 });
    expect(parseHost('dash.example.com')).toEqual({ host: 'dash.example.com' });
  });

  it('refuses what no Host header of a real client holds', () => {
    for (const bad of [undefined, '', '   ', ':8080', 'a:', 'a:x', 'a:65536', 'a:123456', '[::1', '[::1]x', '[::1]:', '[evil]:80', 'a b', 'a@b', 'a..b', '.', 'a/b', '1::2::3', 'é.example']) {
      expect(parseHost(bad), String(bad)).toBeUndefined();
    }
  });
});

describe('isWildcardBind', () => {
  it('is 0.0.0.0 and :: in any spelling, nothing else', () => {
    for (const h of ['0.0.0.0', '::', '[::]', '0:0:0:0:0:0:0:0', '::0']) expect(isWildcardBind(h), h).toBe(true);
    for (const h of ['127.0.0.1', '::1', 'localhost', '10.0.0.1', '0.0.0.1']) expect(isWildcardBind(h), h).toBe(false);
  });
});

describe('hostChecker', () => {
  it('bound to 127.0.0.1: loopback names and addresses on any port, nothing else', () => {
    const ok = hostChecker('127.0.0.1', undefined);
    for (const h of ['127.0.0.1:8080', '127.0.0.1', 'localhost:8080', 'LOCALHOST', 'localhost.:8080', '[::1]:8080', '::1']) expect(ok(h), h).toBe(true);
    for (const h of ['evil.example:8080', 'evil.example', 'localhost.evil.example', '127.0.0.1.evil.example', '10.0.0.5:8080', '127.0.0.2', '', undefined, 'localhost:99999'])
      expect(ok(h), String(h)).toBe(false);
  });

  it('bound to an address: that address too', () => {
    const ok = hostChecker('10.1.2.3', undefined);
    expect(ok('10.1.2.3:8080')).toBe(true);
    expect(ok('10.1.2.4:8080')).toBe(false);
    const v6 = hostChecker('fd00::5', undefined);
    expect(v6('[FD00::5]:8080')).toBe(true);
    expect(v6('[fd00::6]:8080')).toBe(false);
  });

  it('bound to 0.0.0.0 or ::: any IP literal and the loopback names, other names only when listed', () => {
    for (const bound of ['0.0.0.0', '::']) {
      const ok = hostChecker(bound, undefined);
      for (const h of ['192.168.1.20:8080', '10.0.0.5', '[fd00::1]:8080', 'localhost:8080']) expect(ok(h), `${bound} ${h}`).toBe(true);
      for (const h of ['evil.example:8080', 'myhost', undefined]) expect(ok(h), `${bound} ${h}`).toBe(false);
      // A list adds names; pod IPs (Kubernetes probes) still pass.
      const listed = hostChecker(bound, ['tributary.internal']);
      expect(listed('tributary.internal:8080')).toBe(true);
      expect(listed('10.0.0.5:8080')).toBe(true);
      expect(listed('evil.example:8080')).toBe(false);
    }
  });

  it('listed names: any port without one, that port only with one; case and trailing dot do not matter', () => {
    const ok = hostChecker('127.0.0.1', ['Dash.Example.com', 'ops.example.com:8443', '[fd00::9]:80', 'dash.example.org.']);
    expect(ok('dash.example.com')).toBe(true);
    expect(ok('DASH.example.com.:8080')).toBe(true);
    expect(ok('ops.example.com:8443')).toBe(true);
    expect(ok('ops.example.com:8080')).toBe(false);
    expect(ok('ops.example.com')).toBe(false);
    expect(ok('[fd00::9]:80')).toBe(true);
    expect(ok('[fd00::9]:81')).toBe(false);
    expect(ok('dash.example.org:8080')).toBe(true);
    expect(ok('sub.dash.example.com')).toBe(false);
    expect(ok('evil.example')).toBe(false);
  });

  it("'*' answers everything, a missing Host too", () => {
    const ok = hostChecker('127.0.0.1', '*');
    for (const h of ['evil.example:8080', '', undefined, 'not a host']) expect(ok(h), String(h)).toBe(true);
  });

  it('a bound name is answered to', () => {
    const ok = hostChecker('myhost.lan', undefined);
    expect(ok('myhost.lan:8080')).toBe(true);
    expect(ok('other.lan:8080')).toBe(false);
  });

  it('refuses a list entry that is not a host with a coded error', () => {
    expect(() => hostChecker('127.0.0.1', ['ok.example', 'bad host'])).toThrow(expect.objectContaining({ code: 'TRIB_ERR_CONFIG_INVALID', message: expect.stringContaining('"bad host"') }));
  });
});

describe('HTTP_ALLOWED_HOSTS setting', () => {
  it('takes *, names, name:port and [IPv6]:port separated by commas', () => {
    for (const v of ['*', 'dash.example.com', 'a.example,b.example:8080', '[fd00::1]:80,localhost.', 'tributary_svc']) {
      expect(configSchema.safeParse({ httpAllowedHosts: v }).success, v).toBe(true);
    }
  });

  it('refuses spaces, empty entries, * among names and a scheme', () => {
    for (const v of ['', 'a, b', 'a,,b', '*,a.example', 'http://a.example', 'a.example/x', ',a']) {
      const parsed = configSchema.safeParse({ httpAllowedHosts: v });
      expect(parsed.success, v).toBe(false);
    }
  });
});
