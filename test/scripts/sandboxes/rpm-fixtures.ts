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

/**
 * The fixture repositories' updateinfo (issue 16): pn-alpha 2.0 is a security fix (Important),
 * pn-beta 2.0 a bug fix; the reboot package has no advisory. Real updateinfo.xml, added to a
 * repository with modifyrepo_c as Fedora, RHEL and SUSE publish it.
 */
export const ADVISORIES = {
  security: { id: 'PN-SA-2026:0001', package: 'pn-alpha', type: 'security', severity: 'Important' },
  bugfix: { id: 'PN-BA-2026:0002', package: 'pn-beta', type: 'bugfix', severity: null },
} as const;

export function updateinfoXml(): string {
  const update = (a: (typeof ADVISORIES)[keyof typeof ADVISORIES]) =>
    [
      `  <update from="tests@patchnanny.invalid" status="stable" type="${a.type}" version="1">`,
      `    <id>${a.id}</id>`,
      `    <title>${a.package}: ${a.type} update</title>`,
      ...(a.severity ? [`    <severity>${a.severity}</severity>`] : []),
      '    <issued date="2026-11-30 00:00:00"/>',
      `    <description>patchnanny test advisory for ${a.package} 2.0</description>`,
      '    <pkglist>',
      '      <collection short="pn">',
      '        <name>patchnanny fixtures</name>',
      `        <package name="${a.package}" version="2.0" release="1" epoch="0" arch="noarch">`,
      `          <filename>${a.package}-2.0-1.noarch.rpm</filename>`,
      '        </package>',
      '      </collection>',
      '    </pkglist>',
      '  </update>',
    ].join('\n');
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<updates>',
    update(ADVISORIES.security),
    update(ADVISORIES.bugfix),
    '</updates>',
    '',
  ].join('\n');
}
