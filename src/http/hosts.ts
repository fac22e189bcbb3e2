/**
 * The Host-header check: the defence against DNS rebinding. A page on attacker.example
 * whose name the attacker re-points at 127.0.0.1 can make an operator's browser call
 * this server, same-origin as far as the browser knows; the reads need no token, so it
 * could read them (dead letters' payloads included). The browser still sends
 * `Host: attacker.example`, so answering only the names this server is known by closes
 * it (as Jupyter, webpack-dev-server and Vite do). An IP literal is never a rebinding
 * vector (nobody but the address's owner serves a page from it).
 *
 * Pure: no fastify here (server.ts applies it to every request).
 */
import { isIP } from 'node:net';
import { TributaryError } from '../errors.js';

/** HTTP_ALLOWED_HOSTS as the server takes it: names (`name` or `name:port`), or `'*'` (no check). */
export type AllowedHosts = readonly string[] | '*';

/** A Host header (or an allowlist entry) read: the host lower-case, without brackets or a trailing dot. */
export interface HostPort {
  host: string;
  port?: number;
}

/**
 * `name`, `name:port`, `1.2.3.4:port`, `[v6]:port` (or a bare `v6`) read; undefined when
 * it is none of these (empty, a bad port, characters no host name has).
 */
export function parseHost(value: string | undefined): HostPort | undefined {
  if (value === undefined) return undefined;
  const text = value.trim().toLowerCase();
  if (text === '') return undefined;
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return undefined;
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (isIP(host) !== 6) return undefined;
    if (rest !== '') {
      if (!rest.startsWith(':')) return undefined;
      portText = rest.slice(1);
    }
  } else if (text.indexOf(':') !== text.lastIndexOf(':')) {
    // Several colons without brackets: an IPv6 address alone (no port can follow it).
    if (isIP(text) !== 6) return undefined;
    host = text;
  } else {
    const colon = text.indexOf(':');
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return undefined;
  }
  if (isIP(host) !== 6) {
    if (host.endsWith('.')) host = host.slice(0, -1); // `localhost.` is `localhost`
    if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(host)) return undefined;
  }
  return portText === undefined ? { host } : { host, port: Number(portText) };
}

/** Names of this machine whatever the bind: a browser never reaches them through someone else's DNS. */
const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1']);

/** `0.0.0.0` or `::` (any form): the server answers on every address of the machine. */
export function isWildcardBind(bound: string): boolean {
  const host = bound.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) === 4) return host === '0.0.0.0';
  if (isIP(host) === 6) return /^[0:]+$/.test(host);
  return false;
}

/**
 * The check a server bound to `bound` makes, built once from its allowlist. A Host is
 * accepted when it is `localhost`, `127.0.0.1` or `[::1]`; the bound address (or name);
 * any IP literal when bound to `0.0.0.0` / `::`; or an entry of `allowed` (`name`: any
 * port, `name:port`: that port only). Anything else, and a missing or unreadable Host,
 * is refused. `'*'` accepts everything.
 */
export function hostChecker(bound: string, allowed: AllowedHosts | undefined): (header: string | undefined) => boolean {
  if (allowed === '*') return () => true;
  const entries = (allowed ?? []).map((entry) => {
    const parsed = parseHost(entry);
    if (!parsed) throw new TributaryError('TRIB_ERR_CONFIG_INVALID', ['allowedHosts', `${JSON.stringify(entry)} is not a host name, host:port or [IPv6]:port`]);
    return parsed;
  });
  const self = parseHost(bound.replace(/^\[(.*)\]$/, '$1'))?.host;
  const anyIp = isWildcardBind(bound);
  return (header) => {
    const parsed = parseHost(header);
    if (!parsed) return false;
    const { host, port } = parsed;
    if (LOOPBACK.has(host) || host === self) return true;
    if (anyIp && isIP(host) !== 0) return true;
    return entries.some((e) => e.host === host && (e.port === undefined || e.port === port));
  };
}
