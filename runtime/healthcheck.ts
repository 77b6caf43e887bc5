/**
 * `node dist/runtime/healthcheck.js <url>`: exit 0 when GET <url> answers 2xx within 3 s, 1
 * otherwise. For container health checks: the image has Node but no curl or wget.
 */
async function main(): Promise<void> {
  const url = process.argv[2];
  if (!url) throw new Error('usage: healthcheck.js <url>');
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
}

main().catch((err) => {
  console.error(`healthcheck: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
