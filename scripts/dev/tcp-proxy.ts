/**
 * A small TCP proxy on loopback, for two jobs:
 *
 * - fail-over in front of several Temporal frontends (scripts/dev/temporal-cluster.ts): the
 *   SDK takes one address, so clients point here and each new connection goes to the next
 *   upstream that accepts it (round robin over those that answer). A frontend that dies
 *   closes its connections; the SDK reconnects and lands on a live one. Production puts a load
 *   balancer that health-checks the frontends there instead (docs/production.md).
 * - fault injection (test/faults/database.test.ts): `cut()` drops every open connection and
 *   refuses new ones, `restore()` lets connections through again.
 */
import net from 'node:net';

export interface Upstream {
  host: string;
  port: number;
}

export interface TcpProxy {
  port: number;
  address: string;
  /** Connections handed to each upstream so far, in the order given. */
  accepted: number[];
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** An upstream that refuses or does not answer within this long is skipped for this connection. */
const CONNECT_TIMEOUT_MS = 2000;

export async function startTcpProxy(upstreams: Upstream[] | Upstream): Promise<TcpProxy> {
  const targets = Array.isArray(upstreams) ? upstreams : [upstreams];
  if (targets.length === 0) throw new Error('a proxy needs at least one upstream');
  let open = true;
  let next = 0;
  const accepted = targets.map(() => 0);
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };

  /** Connect to the first upstream, from the round-robin position, that accepts; null if none does. */
  const connectUpstream = async (): Promise<net.Socket | null> => {
    const start = next;
    next = (next + 1) % targets.length;
    for (let i = 0; i < targets.length; i++) {
      const index = (start + i) % targets.length;
      const socket = await new Promise<net.Socket | null>((resolve) => {
        const s = net.connect(targets[index].port, targets[index].host);
        const timer = setTimeout(() => fail(), CONNECT_TIMEOUT_MS);
        const fail = () => {
          clearTimeout(timer);
          s.destroy();
          resolve(null);
        };
        s.once('error', fail);
        s.once('connect', () => {
          clearTimeout(timer);
          s.removeListener('error', fail);
          resolve(s);
        });
      });
      if (socket) {
        accepted[index]++;
        return socket;
      }
    }
    return null;
  };

  const server = net.createServer((client) => {
    if (!open) return client.destroy();
    track(client);
    client.pause(); // nothing is read until an upstream takes it
    void connectUpstream().then((upstream) => {
      if (!upstream || client.destroyed || !open) {
        upstream?.destroy();
        return client.destroy();
      }
      track(upstream);
      client.pipe(upstream).pipe(client);
      client.resume();
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    accepted,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
