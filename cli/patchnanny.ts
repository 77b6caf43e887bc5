#!/usr/bin/env node
/**
 * `patchnanny`: the admin and approver CLI (issues 10 and 18). Commands are rows of the table in
 * cli/commands/index.ts; this file parses the command line, runs one, and maps the result to
 * the exit codes of cli/command.ts (0 ok, 1 refused or failed, 2 usage, 3 API unreachable).
 *
 * The API is named by --api-url / PATCHNANNY_API_URL and the caller by --token / PATCHNANNY_TOKEN.
 * Keys are made and used here, on the approver's machine; only the public key ever leaves it.
 */
import { parseArgs } from 'node:util';
import { API_OPTIONS, apiClient, CliError, EXIT, type Command, type CommandContext } from './command';
import { COMMANDS } from './commands';

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const err = (text: string): void => {
  process.stderr.write(text);
};

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'patchnanny <command> [options]   (patchnanny <command> --help for each)',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'API commands take --api-url <url> (PATCHNANNY_API_URL), --token <token> (PATCHNANNY_TOKEN) and',
    '--json (one JSON document on stdout). Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 API unreachable.',
  ].join('\n');
}

function helpOf(c: Command): string {
  return c.api
    ? `${c.usage}\n  Also: --api-url <url> (PATCHNANNY_API_URL), --token <t> (PATCHNANNY_TOKEN), --json.`
    : c.usage;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? out : err)(overview());
    return name ? EXIT.ok : EXIT.usage;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    err(`patchnanny: unknown command ${name}\n\n${overview()}\n`);
    return EXIT.usage;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: command.positionals ?? false,
      options: { help: { type: 'boolean', short: 'h' }, ...(command.api ? API_OPTIONS : {}), ...command.options },
    });
  } catch (e) {
    err(`patchnanny ${name}: ${(e as Error).message}\n\n${helpOf(command)}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(helpOf(command));
    return EXIT.ok;
  }
  const json = values.json === true;
  const ctx: CommandContext = {
    values,
    positionals,
    json,
    out,
    err,
    api: apiClient(
      typeof values['api-url'] === 'string' ? values['api-url'] : process.env.PATCHNANNY_API_URL,
      typeof values.token === 'string' ? values.token : process.env.PATCHNANNY_TOKEN,
    ),
  };
  try {
    return (await command.run(ctx)) ?? EXIT.ok;
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    if (json) out(JSON.stringify({ error: { message: e.message, exitCode: e.exitCode, api: e.body ?? null } }));
    err(`patchnanny ${name}: ${e.message}\n`);
    if (e.exitCode === EXIT.usage) err(`\n${helpOf(command)}\n`);
    return e.exitCode;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    err(`patchnanny: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = EXIT.failed;
  },
);
