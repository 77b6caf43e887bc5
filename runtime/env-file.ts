/**
 * Environment files (systemd `EnvironmentFile=`, compose `env_file:`) and the variable names a
 * configuration schema knows. One strict format, so what a checker reads is exactly what systemd
 * and compose pass: `NAME=value` lines, `#` comments, blank lines; values unquoted, without spaces,
 * quotes, backslashes or `$` (each of those is interpreted differently by systemd, compose and a shell).
 */
import type { z } from 'zod';

const LINE = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/;
const UNSAFE_VALUE = /[\s"'\\$`]/;

/** Parse an environment file; throws naming every line it refuses (by number). */
export function parseEnvFile(text: string, name = 'environment file'): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const m = LINE.exec(line);
    if (!m) return problems.push(`  line ${i + 1}: not NAME=value`);
    const [, key, value] = m;
    if (UNSAFE_VALUE.test(value))
      return problems.push(`  line ${i + 1}: ${key}: value holds a space, quote, backslash or $ (write it bare)`);
    if (key in out) return problems.push(`  line ${i + 1}: ${key} is set twice`);
    out[key] = value;
  });
  if (problems.length) throw new Error(`${name}:\n${problems.join('\n')}`);
  return out;
}

/** Render variables as an environment file parseEnvFile reads back (refusing values it would refuse). */
export function formatEnvFile(vars: Record<string, string>, header: string[] = []): string {
  const lines = header.map((h) => `# ${h}`);
  for (const [key, value] of Object.entries(vars)) {
    if (!LINE.test(`${key}=`) || UNSAFE_VALUE.test(value)) throw new Error(`${key}: not writable to an env file`);
    lines.push(`${key}=${value}`);
  }
  return lines.join('\n') + '\n';
}

/** The variables a configuration schema (a zod object of env names) knows, and which of them must be set. */
export function envVariables(schema: z.ZodObject): { name: string; required: boolean }[] {
  return Object.entries(schema.shape).map(([name, field]) => ({
    name,
    // Required = the field refuses "unset" (no default, not optional).
    required: !(field as z.ZodType).safeParse(undefined).success,
  }));
}
