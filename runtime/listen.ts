/** host:port listen addresses, as every process's configuration names them (zod), and free ports. */
import net from 'node:net';
import { z } from 'zod';

/** A `host:port` setting (IPv6 in brackets), e.g. 127.0.0.1:7280. */
export const hostPort = (name: string) =>
  z
    .string()
    .regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:]+):\d{1,5}$/, `${name} must be host:port, e.g. 127.0.0.1:7280`)
    .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, `${name}: port out of range`);

/** Split host:port (IPv6 in brackets). */
export function splitHostPort(v: string): { host: string; port: number } {
  const i = v.lastIndexOf(':');
  return { host: v.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(v.slice(i + 1)) };
}

/** host:port for a URL or a log line (IPv6 back in brackets). */
export const joinHostPort = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

/** A loopback port free right now (for a listener whose owner cannot report the port it bound). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
