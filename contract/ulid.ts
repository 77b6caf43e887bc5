/**
 * ULIDs from a given clock and random source, so workflow code (deterministic `Date.now` and
 * `Math.random`) names child runs the same way the API does: `patch-run.<agent>.<ulid>`.
 */
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function ulidFrom(timeMs: number, random: () => number): string {
  let time = '';
  let t = Math.floor(timeMs);
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let rand = '';
  for (let i = 0; i < 16; i++) rand += CROCKFORD[Math.floor(random() * 32)];
  return time + rand;
}
