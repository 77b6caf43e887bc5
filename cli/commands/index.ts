/**
 * The command table: every `patchnanny` command is a module here and a row below. A new command
 * (e.g. `reviews`) is one file exporting a Command and one line in COMMANDS.
 */
import type { Command } from '../command';
import { agents } from './agents';
import { approve } from './approve';
import { compliance } from './compliance';
import { exceptions } from './exceptions';
import { hooks } from './hooks';
import { keygen, signApprovalCommand } from './keys';
import { label } from './label';
import { logs } from './logs';
import { plan } from './plan';
import { reject } from './reject';
import { reviews } from './reviews';
import { rollout, rollouts } from './rollouts';
import { run } from './run';
import { runs } from './runs';
import { windows } from './windows';

export const COMMANDS: Command[] = [
  agents,
  label,
  compliance,
  reviews,
  runs,
  run,
  logs,
  plan,
  approve,
  reject,
  exceptions,
  windows,
  hooks,
  rollouts,
  rollout,
  keygen,
  signApprovalCommand,
];
