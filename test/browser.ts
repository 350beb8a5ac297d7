// Headless Chromium for the browser tests: Debian's /usr/bin/chromium when present (it starts faster), else the build
// that the @sparticuz/chromium dev dependency ships inside its npm package, unpacked once per version into the temp
// folder. So `npm ci && npm test` needs no apt. KD_CHROMIUM=<path> picks a binary, KD_CHROMIUM=npm forces the npm build.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';

/** Where Debian's package puts Chromium; used when present and KD_CHROMIUM is unset. */
export const SYSTEM_CHROMIUM = '/usr/bin/chromium';

/** How to start one Chromium: binary, flags, extra environment, and where it came from (printed by the tests). */
export interface ChromiumChoice {
  /** `system`: a Chromium installed on the machine (or named by KD_CHROMIUM); `npm`: the @sparticuz/chromium build. */
  source: 'system' | 'npm';
  executablePath: string;
  args: string[];
  /** Variables added to the browser's environment (the npm build's NSS libraries and fonts). */
  env: Record<string, string>;
  /** One line for the test output, e.g. `npm @sparticuz/chromium 153.0.0 (/tmp/kd-chromium-153.0.0/chromium)`. */
  description: string;
}

const SYSTEM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Picks the Chromium the browser tests run: `KD_CHROMIUM` when set (a path, or `npm` for the npm build), else
 * {@link SYSTEM_CHROMIUM} when it exists, else the @sparticuz/chromium build (unpacked on first use).
 * @param env - the environment to read `KD_CHROMIUM` from (the process's by default)
 * @returns the binary, its flags and environment, and a one-line description of which one it is
 * @throws Error when KD_CHROMIUM names a missing file, or the npm build is needed on a machine it does not support
 */
export async function chooseChromium(env: NodeJS.ProcessEnv = process.env): Promise<ChromiumChoice> {
  const wanted = env.KD_CHROMIUM;
  if (wanted && wanted !== 'npm') {
    if (!existsSync(wanted)) throw new Error(`KD_CHROMIUM=${wanted}: no such file (name a Chromium binary, or set KD_CHROMIUM=npm)`);
    return { source: 'system', executablePath: wanted, args: SYSTEM_ARGS, env: {}, description: `system ${wanted} (KD_CHROMIUM)` };
  }
  if (!wanted && existsSync(SYSTEM_CHROMIUM))
    return { source: 'system', executablePath: SYSTEM_CHROMIUM, args: SYSTEM_ARGS, env: {}, description: `system ${SYSTEM_CHROMIUM}` };
  return npmChromium();
}

/**
 * Starts the chosen Chromium headless through playwright-core.
 * @returns the browser and the choice (print `choice.description` so the test output says which Chromium ran)
 */
export async function launchChromium(env: NodeJS.ProcessEnv = process.env): Promise<{ browser: Browser; choice: ChromiumChoice }> {
  const choice = await chooseChromium(env);
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: choice.executablePath,
    args: choice.args,
    headless: true,
    env: { ...process.env, ...choice.env } as Record<string, string>,
  });
  return { browser, choice };
}

/**
 * The @sparticuz/chromium build, unpacked into `<tmp>/kd-chromium-<version>/`. The package's own `executablePath()`
 * writes straight to `<tmp>/chromium` and trusts any file there (a half-written one after an interrupted run, or
 * another version); here it unpacks into a private staging folder that is renamed into place whole, so parallel test
 * processes and interrupted runs cannot see a partial binary.
 */
async function npmChromium(): Promise<ChromiumChoice> {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    throw new Error(
      `@sparticuz/chromium ships Linux x64 only (this is ${process.platform}-${process.arch}); install Chromium and set KD_CHROMIUM to it`,
    );
  const entry = fileURLToPath(import.meta.resolve('@sparticuz/chromium'));
  const packageDir = join(dirname(entry), '..');
  const version = (JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string }).version;
  const { default: Chromium, inflate } = await import('@sparticuz/chromium');
  const dir = join(tmpdir(), `kd-chromium-${version}`);
  const binary = join(dir, 'chromium');
  if (!existsSync(binary)) {
    const staging = mkdtempSync(join(tmpdir(), `kd-chromium-${version}.part-`));
    // The package unpacks into os.tmpdir(), read from TMPDIR at each call: point it at the staging folder meanwhile.
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = staging;
    try {
      await Chromium.executablePath(join(packageDir, 'bin'));
      // NSS, NSPR and expat, which the binary links and a bare machine may lack (the package unpacks them only on AWS).
      await inflate(join(packageDir, 'bin', 'al2023.tar.br'));
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    // The package's fonts.conf lists /tmp/fonts; this one names the final folder and keeps the system's fonts too.
    const fontsConf = [
      '<?xml version="1.0"?>',
      '<!DOCTYPE fontconfig SYSTEM "fonts.dtd">',
      '<fontconfig>',
      '  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>',
      `  <dir>${join(dir, 'fonts', 'fonts')}</dir>`,
      `  <cachedir>${join(dir, 'fonts-cache')}</cachedir>`,
      '</fontconfig>',
      '',
    ].join('\n');
    writeFileSync(join(staging, 'kd-fonts.conf'), fontsConf);
    try {
      renameSync(staging, dir);
    } catch (e) {
      // Another process renamed its copy first: use that one.
      rmSync(staging, { recursive: true, force: true });
      if (!existsSync(binary)) throw e;
    }
  }
  return {
    source: 'npm',
    executablePath: binary,
    args: Chromium.args,
    env: {
      LD_LIBRARY_PATH: [join(dir, 'al2023', 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
      FONTCONFIG_FILE: join(dir, 'kd-fonts.conf'),
    },
    description: `npm @sparticuz/chromium ${version} (${binary})`,
  };
}
