import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { must } from '../sandbox';

/** A noarch test rpm with one file, /usr/share/<owner>/version (another package's dir to conflict). */
export interface RpmFixture {
  name: string;
  version: string;
  owner?: string;
  provides?: string;
}

export const rpmFileName = (f: RpmFixture) => `${f.name}-${f.version}-1.noarch.rpm`;

function spec(f: RpmFixture): string {
  const dir = `/usr/share/${f.owner ?? f.name}`;
  return [
    `Name: ${f.name}`,
    `Version: ${f.version}`,
    'Release: 1',
    'Summary: patchnanny test fixture',
    'License: Apache-2.0',
    'BuildArch: noarch',
    ...(f.provides ? [`Provides: ${f.provides}`] : []),
    '%global debug_package %{nil}',
    '%define _build_id_links none',
    '%description',
    'patchnanny test fixture',
    '%install',
    `mkdir -p %{buildroot}${dir}`,
    `echo '${f.name} ${f.version}' > %{buildroot}${dir}/version`,
    '%files',
    `${dir}/version`,
    '',
  ].join('\n');
}

/**
 * Build the fixtures with rpmbuild into one temp folder (removed when the process exits) and
 * return it. rpmbuild is confined there, its own rpm database included, so the host's is never
 * opened.
 */
export async function buildRpmFixtures(prefix: string, fixtures: RpmFixture[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const top = join(dir, 'rpmbuild');
  await mkdir(top);
  await Promise.all(
    fixtures.map(async (f) => {
      const specFile = join(top, `${f.name}-${f.version}.spec`);
      await writeFile(specFile, spec(f));
      await must('rpmbuild', [
        '--quiet',
        '-bb',
        '--define',
        `_topdir ${top}/${f.name}-${f.version}`,
        '--define',
        `_tmppath ${top}`,
        '--define',
        `_dbpath ${top}/rpmdb`,
        '--define',
        `_rpmdir ${dir}`,
        '--define',
        '_build_name_fmt %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm',
        specFile,
      ]);
    }),
  );
  return dir;
}
